"""fraud-demo-serve as a process: a real MLflow tracking server with two registered versions of real small models,
the service started the way systemd's socket activation starts it (the test holds the listening socket and passes
it as fd 3), SIGHUP picking up a moved alias, and SIGTERM under a concurrent load: the old process drains and exits
0, a new one takes over the same socket, and not one request fails. Also the refusals at startup (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import serve_kit as K
from fraud_demo_jobs import tracking as T
from jobs_lake import start_mlflow
from serve_kit import AUTH, TOKEN

SERVE = Path(sys.executable).parent / "fraud-demo-serve"
MODEL = "fraud-detector"


def _register(uri: str, model, tmp: Path) -> str:
    """Log and register ``model`` as fraud-demo-train does (Booster + feature state as extra files + lineage tags)."""
    import mlflow
    import mlflow.lightgbm

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    files = model.state.save(str(tmp / f"state-{model.lineage.model_version}"))
    with mlflow.start_run():
        info = mlflow.lightgbm.log_model(model.booster, name="model", extra_files=files, pip_requirements=["lightgbm"])
    lin = model.lineage
    tags = {
        T.TAG_DATASET: lin.dataset,
        T.TAG_DATASET_VERSION: lin.dataset_version,
        T.TAG_RAW_VERSIONS: json.dumps(lin.raw_version_ids),
        T.TAG_CODE_VERSION: lin.code_version,
    }
    return str(mlflow.register_model(info.model_uri, MODEL, tags=tags).version)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-cli")
    data = K.make_data(tmp / "data")
    server, uri, log = start_mlflow(tmp, f"file://{tmp}/artifacts", {})
    models = {
        "1": K.train_model(data, "1", "dsA", leaves=7, rounds=20),
        "2": K.train_model(data, "2", "dsB", leaves=15, rounds=40),
    }
    versions = {key: _register(uri, m, tmp) for key, m in models.items()}
    try:
        yield {"uri": uri, "tmp": tmp, "data": data, "models": models, "versions": versions}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def _set_champion(uri: str, version: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(MODEL, "champion", version)


def _start(reg, listener: socket.socket, name: str) -> subprocess.Popen:
    """fraud-demo-serve as systemd starts a socket-activated service: the listening socket as fd 3, LISTEN_FDS=1,
    LISTEN_PID its own pid (set by the shell it execs from)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FRAUD_DEMO_"))}
    env |= {"FRAUD_DEMO_SCORING_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": reg["uri"], "LISTEN_FDS": "1"}
    args = ["--no-cloudwatch", "--sample-rate", "0", "--reload-interval", "0", "--model-dir", str(reg["tmp"] / name)]
    out = open(reg["tmp"] / f"{name}.log", "w")
    fd = listener.fileno()
    return subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', str(SERVE), *args], env=env, stdout=out,
        stderr=subprocess.STDOUT, preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(3,),
    )  # fmt: skip


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 (loopback)
        return json.loads(r.read())


def _wait_health(base: str, version: str, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the service exited {proc.returncode}"
        try:
            health = _get(f"{base}/health")
            if health["model_version"] == version:
                return health
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"the service did not serve v{version} within 60 s")


def test_sighup_swaps_and_sigterm_under_load_drains_into_a_restart_without_a_failed_request(registry):
    reg = registry
    v1, v2 = reg["versions"]["1"], reg["versions"]["2"]
    _set_champion(reg["uri"], v1)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    first = _start(reg, listener, "first")
    second = None
    try:
        assert _wait_health(base, v1, first)["status"] == "ok"
        version = _get(f"{base}/version")
        assert version["model_version"] == v1 and version["dataset_version"] == "dsA"
        assert version["raw_version_ids"] == {"train_transaction.csv": "raw1"} and version["run_id"]

        _set_champion(reg["uri"], v2)
        first.send_signal(signal.SIGHUP)
        assert _wait_health(base, v2, first)["last_reload"]["outcome"] == "swapped"

        rows = reg["data"]["records"][:50]
        want = K.expected(reg["models"]["2"], rows)

        def post(row: dict) -> tuple[int, dict]:
            headers = {**AUTH, "Content-Type": "application/json"}
            req = urllib.request.Request(f"{base}/predict", json.dumps(row).encode(), headers)  # noqa: S310
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 (loopback)
                return r.status, json.loads(r.read())

        load = K.Load(post, rows)
        time.sleep(1.0)
        before = len(load.results)
        first.send_signal(signal.SIGTERM)
        # systemd restarts the service on the socket it keeps; connections made meanwhile wait in its backlog.
        assert first.wait(timeout=30) == 0
        second = _start(reg, listener, "second")
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        while len(load.results) < before + 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        load.stop()
        assert load.errors == []
        assert len(load.results) >= before + 200
        for i, status, body in load.results:
            assert status == 200 and body["model_version"] == v2
            assert body["fraud_probability"] == pytest.approx(want[i], rel=1e-6)
        log = [json.loads(x) for x in (reg["tmp"] / "first.log").read_text().splitlines() if x.startswith("{")]
        events = [x["event"] for x in log]
        assert "model_swapped" in events and events[-2:] == ["stopped", "sink_closed"]
        assert log[-2]["signal"] == signal.SIGTERM
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        listener.close()


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["--sample-rate", "0"], "no bearer token"),
        ({"FRAUD_DEMO_SCORING_TOKEN": "short"}, ["--sample-rate", "0"], "at least 16"),
        ({"FRAUD_DEMO_SCORING_TOKEN": TOKEN}, ["--sample-rate", "0.5"], "needs --bucket"),
        ({"FRAUD_DEMO_SCORING_TOKEN": TOKEN}, ["--max-batch-rows", "0"], "--max-batch-rows 0 is outside"),
    ],
)
def test_startup_refusals_exit_2_with_one_message(env, args, message, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FRAUD_DEMO_", "MLFLOW_"))}
    cmd = [str(SERVE), "--tracking-uri", "http://127.0.0.1:9", "--no-cloudwatch", *args]
    r = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.splitlines()[-1] and r.stderr.splitlines()[-1].startswith("fraud-demo-serve: error:")


def test_a_token_file_is_read_and_no_auth_must_be_explicit(tmp_path):
    from fraud_demo_jobs.serve import parse_serve_args, read_token

    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert read_token(parse_serve_args(["--token-file", str(path)])) == TOKEN
    assert read_token(parse_serve_args(["--no-auth"])) is None
