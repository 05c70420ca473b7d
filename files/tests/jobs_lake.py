"""A data lake for the jobs' tests: a moto server with a versioned bucket and the log group, a curated version
made by the ingest job from generated data, and a real MLflow tracking server (SQLite backend, artifacts
proxied to the bucket's models/). Shared by the test modules of the jobs that read models (train, score)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import lightgbm as lgb
import numpy as np
import requests
from fraud_demo_jobs import ingest, synthetic
from fraud_demo_jobs import train as tj

BUCKET = "fraud-demo-train-test"
DATASET = "ieee-fraud-detection"
MODEL = "fraud-detector"
ROWS = 8000
# Small but real: enough rounds for a useful model on 8,000 rows, few enough to keep each training short.
FAST = ["--max-rounds", "120", "--learning-rate", "0.15", "--early-stopping-rounds", "20"]
MLFLOW = Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(tmp: Path, artifacts: str, env: dict[str, str]) -> tuple[subprocess.Popen, str, object]:
    """A tracking server (SQLite ``tmp/mlflow.db``, artifacts proxied to ``artifacts``) on a free loopback port,
    answering /health: (process, URI, its log file). Stop it with os.killpg(process.pid, SIGTERM)."""
    mport = free_port()
    server_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server_env |= env
    cmd = [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--workers", "1"]
    cmd += ["--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(mport)]
    log = open(tmp / "mlflow.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
    uri = f"http://127.0.0.1:{mport}"
    # Generous: in CI the unit tests share two cores with the Molecule scenarios (Dask workers included), and the
    # server once took over 90 s to answer there.
    deadline = time.monotonic() + 240
    while True:
        try:
            if requests.get(f"{uri}/health", timeout=2).text == "OK":
                return server, uri, log
        except requests.RequestException:
            pass
        assert server.poll() is None and time.monotonic() < deadline, (tmp / "mlflow.log").read_text()[-3000:]
        time.sleep(0.5)


@contextlib.contextmanager
def running_lake(tmp: Path) -> Iterator[dict]:
    """The lake, torn down on the way out: {"s3", "endpoint", "uri", "db", "raw", "tmp"}."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}
    env |= {"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("logs").create_log_group(logGroupName="fraud-demo-logs")
    raw = tmp / "raw"
    synthetic.generate(str(raw), rows=ROWS, seed=7)
    _land_and_ingest(s3, raw, tmp / "ingest")

    db = tmp / "mlflow.db"
    server, uri, log = start_mlflow(tmp, f"s3://{BUCKET}/models", {"MLFLOW_S3_ENDPOINT_URL": endpoint})
    try:
        yield {"s3": s3, "endpoint": endpoint, "uri": uri, "db": db, "raw": raw, "tmp": tmp}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
        moto.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _land_and_ingest(s3, raw: Path, work: Path) -> str:
    for f in sorted(raw.glob("*.csv")):
        s3.put_object(Bucket=BUCKET, Key=f"raw/{DATASET}/{f.name}", Body=f.read_bytes())
    code = ingest.ingest_main(["--bucket", BUCKET, "--work-dir", str(work), "--no-cloudwatch"])
    assert code == 0
    return s3_json(s3, f"curated/{DATASET}/latest")["version"]


def aws_args(lake) -> list[str]:
    """The emulator, named on the command line (the jobs' conftest clears AWS_* before every test)."""
    return ["--endpoint-url", lake["endpoint"], "--region", "us-east-1"]


def s3_json(s3, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def client(lake):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=lake["uri"], registry_uri=lake["uri"])


def log_version(lake, booster: lgb.Booster, extra_files: list[str] | None, with_id: bool = False):
    """Register ``booster`` (with ``extra_files``) as a new version of MODEL, outside the training job."""
    import mlflow
    import mlflow.lightgbm

    mlflow.set_tracking_uri(lake["uri"])
    mlflow.set_registry_uri(lake["uri"])
    with mlflow.start_run():
        info = mlflow.lightgbm.log_model(booster, name="model", extra_files=extra_files)
    version = str(mlflow.register_model(info.model_uri, MODEL).version)
    return (version, info.model_id) if with_id else version


def tiny_booster(n_features: int = 3) -> lgb.Booster:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, n_features)), rng.integers(0, 2, 200)
    return lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=3)


def train_model(lake) -> dict:
    """Train with the real job (FAST settings, no CloudWatch); its JSON summary."""
    argv = ["--bucket", BUCKET, "--tracking-uri", lake["uri"], *aws_args(lake), "--no-cloudwatch"]
    argv += ["--work-dir", str(lake["tmp"] / "train-work"), *FAST]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tj.train_main(argv) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])
