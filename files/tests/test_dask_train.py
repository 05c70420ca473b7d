"""fraud-demo-train --backend dask against a real TLS Dask cluster (scheduler + two workers, each its own nanny and
process, on 127.0.0.1), a moto S3 and a real MLflow server: the same feature state as the local backend, a model
registered and gated like a local one, a worker lost mid-training, bad flags."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from dask_kit import kill, running_cluster, start_worker, wait_listening
from fraud_demo_jobs import features as F
from fraud_demo_jobs import train as tj
from fraud_demo_jobs.aws import S3Bucket, make_client
from fraud_demo_jobs.curated_read import fetch_tables, resolve_curated
from fraud_demo_jobs.dask_train import DaskTraining
from fraud_demo_jobs.errors import JobError
from fraud_demo_jobs.telemetry import EventLog
from fraud_demo_jobs.train_backend import DaskSettings
from jobs_lake import BUCKET, DATASET, FAST, MODEL, ROWS, aws_args, client, free_port, running_lake, train_model

WORKERS = ["w1", "w2"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    with running_lake(tmp_path_factory.mktemp("dask-lake")) as lake:
        yield lake


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, lake):  # after the lake: the workers inherit its AWS settings (s3fs)
    with running_cluster(tmp_path_factory.mktemp("dask-cluster"), free_port(), WORKERS) as c:
        yield c


def dask_args(cluster, workers=WORKERS) -> list[str]:
    tls = cluster["tls"]
    out = ["--backend", "dask", "--dask-scheduler", cluster["scheduler"], "--dask-wait", "30"]
    out += ["--dask-workers", ",".join(f"{w}=127.0.0.1" for w in workers)]
    return [*out, "--dask-tls-ca", tls["ca"], "--dask-tls-cert", tls["cert"], "--dask-tls-key", tls["key"]]


def run_train(argv: list[str]) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tj.train_main(argv)
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def base_args(lake, work: str) -> list[str]:
    return ["--bucket", BUCKET, "--tracking-uri", lake["uri"], *aws_args(lake), "--no-cloudwatch", "--work-dir", work]


def test_backend_dask_without_workers_is_a_usage_error(capsys):
    argv = ["--bucket", BUCKET, "--tracking-uri", "http://127.0.0.1:9", "--backend", "dask"]
    argv += ["--dask-scheduler", "tls://127.0.0.1:8786"]
    assert tj.train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fraud-demo-train: error: --backend dask needs at least one worker")
    assert "--backend local" in err


def test_an_unknown_backend_is_a_usage_error(capsys):
    assert tj.train_main(["--bucket", BUCKET, "--tracking-uri", "http://127.0.0.1:9", "--backend", "spark"]) == 2
    assert "--backend 'spark' is not one of local, dask" in capsys.readouterr().err


def test_the_dask_feature_state_equals_the_local_one(lake, cluster, tmp_path):
    """Fitted from the workers' narrow projection, the state is the local backend's state on the same version."""
    bucket = S3Bucket(make_client("s3", lake["endpoint"], "us-east-1"), BUCKET)
    cv = resolve_curated(bucket, DATASET, None)
    paths = fetch_tables(bucket, cv, ["train_transaction", "train_identity"], str(tmp_path / "local"))
    frame = F.model_frame(pd.read_parquet(paths["train_transaction"]), pd.read_parquet(paths["train_identity"]))
    spec = F.SplitSpec()
    local_split = F.time_split(frame, spec)
    local = F.FeatureState.fit(local_split.history, lag_days=spec.scoring_lag_days())

    tls = cluster["tls"]
    dask = DaskSettings(cluster["scheduler"], {w: "127.0.0.1" for w in WORKERS}, tls["ca"], tls["cert"], tls["key"])
    settings = tj.TrainSettings(
        bucket=BUCKET, dataset=DATASET, version=None, tracking_uri="", experiment="", model_name=MODEL,
        registry_db=None, split=spec, params=tj.TrainParams(), gate=tj.GateSettings(), work_dir=str(tmp_path),
        log_group="", namespace="", cloudwatch=False, check=False, endpoint_url=lake["endpoint"],
        region="us-east-1", backend="dask", dask=dask,
    )  # fmt: skip
    st = tj.TrainRunState(job_run_id="t")
    with DaskTraining(settings, st, bucket, cv, EventLog("t", "train", "t", DATASET)) as backend:
        assert backend.split() == local_split.bounds()
        remote = backend.fit_state()
        holdout = backend.parts.holdout
    assert st.dask["partitions"] >= 2 * len(WORKERS)
    pd.testing.assert_frame_equal(holdout, local_split.holdout)

    a, b = local.save(str(tmp_path / "a")), remote.save(str(tmp_path / "b"))
    assert [p.rsplit("/", 1)[1] for p in a] == [p.rsplit("/", 1)[1] for p in b]
    assert json.loads(open(a[0]).read()) == json.loads(open(b[0]).read())
    for pa, pb in zip(a[1:], b[1:], strict=True):
        pd.testing.assert_frame_equal(pd.read_parquet(pa), pd.read_parquet(pb))
    # And so are the features of the holdout (the same lookups on the same histories).
    np.testing.assert_array_equal(local.transform(holdout).to_numpy(), remote.transform(holdout).to_numpy())


def test_a_dask_training_is_registered_and_gated_like_a_local_one(lake, cluster, tmp_path):
    local = train_model(lake)
    assert local["action"] == "trained" and local["model_version"] == "1" and "backend" not in local

    code, s = run_train([*base_args(lake, str(tmp_path / "w")), *FAST, *dask_args(cluster)])
    assert code == 0, s.get("msg")
    assert s["action"] == "trained" and s["model_version"] == "2" and s["backend"] == "dask"
    assert s["training_key"] != local["training_key"]
    assert s["split"] == local["split"]
    # The champion (the local model) re-scored on the Dask run's holdout: the very AUC it had on its own.
    assert s["champion_auc"] == pytest.approx(local["metrics"]["roc_auc"], abs=1e-12)
    # Data-parallel LightGBM on two workers is not the same model; on 1,335 holdout rows with 51 frauds the AUC's
    # standard error is ~0.04, so the two agree to within the noise (measured gap ~0.014 at these settings).
    assert abs(s["metrics"]["roc_auc"] - local["metrics"]["roc_auc"]) < 0.03
    gain = s["metrics"]["roc_auc"] - local["metrics"]["roc_auc"]
    assert s["decision"] == ("champion" if gain >= 0 else "challenger") and s["promoted"] == (gain >= 0)
    assert s["reason"].startswith(f"holdout AUC {s['metrics']['roc_auc']:.4f}")
    d = s["dask"]
    assert d["scheduler"] == cluster["scheduler"] and d["partitions"] >= 4 and d["client_peak_rss_mb"] > 50
    assert [w["name"] for w in d["workers"]] == WORKERS
    # Every worker holds a share of the table (the scheduler says where each partition is), and together all of it.
    assert sorted(d["rows_per_worker"]) == WORKERS and min(d["rows_per_worker"].values()) > 0, d
    assert sum(d["rows_per_worker"].values()) == ROWS, d  # the lake's generated (and all valid) transactions
    assert all(w["address"].startswith("tls://127.0.0.1:") and w["peak_rss_mb"] > 50 for w in d["workers"])

    mv = client(lake).get_model_version(MODEL, "2")
    run = client(lake).get_run(mv.run_id)
    assert run.data.tags["fraud_demo.backend"] == "dask" and run.data.params["backend"] == "dask"
    assert run.info.status == "FINISHED"

    code, again = run_train([*base_args(lake, str(tmp_path / "w")), *FAST, *dask_args(cluster)])
    assert code == 0 and again["action"] == "unchanged" and again["model_version"] == "2"


def test_a_worker_lost_mid_training_fails_the_run_and_the_next_run_trains(lake, cluster, tmp_path):
    versions = {v.version for v in client(lake).search_model_versions(f"name='{MODEL}'")}
    slow = ["--max-rounds", "4000", "--learning-rate", "0.01", "--early-stopping-rounds", "4000", "--seed", "7"]
    argv = [*base_args(lake, str(tmp_path / "w")), *slow, *dask_args(cluster)]
    log = tmp_path / "train.log"
    with open(log, "w") as err:
        job = subprocess.Popen(
            [sys.executable, "-m", "fraud_demo_jobs.train", *argv], stdout=subprocess.PIPE, stderr=err, text=True
        )
    deadline = time.monotonic() + 120
    while "dask_fit_started" not in log.read_text():
        assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(1)
    kill(cluster["procs"]["w2"], signal.SIGKILL)  # the whole worker node: nanny and worker process
    out, _ = job.communicate(timeout=120)
    summary = json.loads(out.strip().splitlines()[-1])
    last = log.read_text().strip().splitlines()[-1]
    assert job.returncode == 1
    assert last.startswith("fraud-demo-train: error: Dask worker w2 (tls://127.0.0.1:"), last
    assert "left the cluster during training" in last and "nothing is registered" in last
    assert summary["model_version"] is None
    assert {v.version for v in client(lake).search_model_versions(f"name='{MODEL}'")} == versions
    assert client(lake).get_run(summary["run_id"]).info.status == "FAILED"

    wlog = cluster["tmp"] / "worker-w2-again.log"
    cluster["procs"]["w2"] = start_worker(cluster["tls"], cluster["scheduler"], "w2", wlog)
    wait_listening(cluster["procs"]["w2"], wlog, "Registered to:")
    code, s = run_train([*base_args(lake, str(tmp_path / "w")), *FAST, "--seed", "7", *dask_args(cluster)])
    assert code == 0 and s["action"] == "trained", s.get("msg")
    assert s["model_version"] not in versions


def test_a_read_error_on_the_workers_names_s3_and_the_version(monkeypatch):
    # s3fs raises OSError on the workers (here: the emulator's 500 when its disk was full), which the job would
    # otherwise report as a local file error in its work directory.
    def failing(self):
        raise OSError(121, "Internal Server Error")

    training = DaskTraining.__new__(DaskTraining)
    training.s, training.cv = SimpleNamespace(bucket="b"), SimpleNamespace(version="v1")
    monkeypatch.setattr(DaskTraining, "_split", failing)
    with pytest.raises(JobError) as e:
        training.split()
    msg = str(e.value)
    assert msg.startswith("the Dask workers could not read curated version v1 from s3://b/ ([Errno 121] Internal")
    assert msg.endswith("and run the job again")
