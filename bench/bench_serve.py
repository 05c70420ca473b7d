#!/usr/bin/env python3
"""Benchmark of the scoring service on loopback: ``fraud-demo-serve`` beside ``mlflow models serve`` of the same
registered model, in the same run, under the same open-loop load (``scripts/sandboxlib/loadgen.py``).

Setup, all under --work (default .cache/bench-serve/<rows>-<seed>/), nothing from the sandbox:
  1. synthetic data (the offline generator, --rows train rows), a FeatureState fitted on its train window and a
     LightGBM Booster trained with the job's settings (``modeling.train_booster``, up to --rounds rounds);
  2. a local MLflow tracking server (SQLite + proxied local artifacts) where the Booster is logged as
     ``fraud-train`` logs it (feature state as extra files), registered and aliased ``champion``, with the
     lineage tags;
  3. ``fraud-demo-serve`` (one uvicorn worker, bearer token, no CloudWatch, no inference sample) and
     ``mlflow models serve -m models:/fraud-detector@champion --env-manager local`` (one worker), both on
     127.0.0.1. The MLflow server is sent the model's *features* of the same rows (``dataframe_split``), since
     that is the logged model's signature; ours is sent the raw transactions and validates and builds the
     features itself. Both answers are checked to be the same probabilities before any load.

Scenarios, one server under load at a time: single rows at fixed rates (--rates), batches of 100 rows, and a
saturation run (more offered than served, bounded concurrency) for each server's throughput. Latency counts from
each request's scheduled send time. The load generator runs in this process: its CPU seconds are reported
(``client_cpu_s``) beside each server's (``server_cpu_s``, the server's process tree, from /proc), since both
share the machine's cores.

    .venv/bin/python bench/bench_serve.py [--rows 30000] [--seconds 10] [--rates 100,500] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
sys.path.insert(0, os.path.join(ROOT, "scripts", "sandboxlib"))

import loadgen  # noqa: E402  (scripts/sandboxlib is not a package)

MODEL = "fraud-detector"
TOKEN = secrets.token_hex(16)  # the service requires one; made up per run
BATCH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, seconds: float, check=lambda body: True) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench_serve: {proc.args[0]} exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback http)
                if resp.status == 200 and check(resp.read()):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"bench_serve: {url} did not answer within {seconds:.0f} s")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo += children.get(p, [])
    return total


def build_model(work: str, rows: int, seed: int, rounds: int):
    """Data, feature state and Booster; returns (state, booster, test records)."""
    import pandas as pd
    from fraud_demo_jobs import features as F
    from fraud_demo_jobs import ieee_contract as C
    from fraud_demo_jobs import modeling as M
    from fraud_demo_jobs import synthetic

    raw = os.path.join(work, "raw")
    synthetic.generate(raw, rows=rows, seed=seed, workers=2)

    def read(name: str) -> pd.DataFrame:
        frame = pd.read_csv(os.path.join(raw, f"{name}.csv"))
        frame.columns = C.normalise(C.BY_NAME[name], list(frame.columns))
        return frame

    split = F.time_split(F.model_frame(read("train_transaction"), read("train_identity")), F.SplitSpec())
    state = F.FeatureState.fit(split.history)
    params = M.TrainParams(max_rounds=rounds)
    booster = M.train_booster(
        state.transform(split.train), split.train[C.LABEL], state.transform(split.valid), split.valid[C.LABEL],
        params, categorical=state.categorical_features,
    )  # fmt: skip
    test = F.model_frame(read("test_transaction"), read("test_identity")).head(2000)
    kinds = {c.name: c.kind for t in C.TABLES if t.name in ("test_transaction", "test_identity") for c in t.columns}
    records = []
    for row in test.to_dict("records"):
        rec = {}
        for name, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue  # a client leaves missing fields out
            kind = kinds[name]
            rec[name] = int(value) if kind == "int" else float(value) if kind == "float" else str(value)
        records.append(rec)
    return state, booster, records


def register(uri: str, work: str, state, booster) -> str:
    """Log the Booster as fraud-demo-train does (feature state as extra files), register it, alias champion."""
    import lightgbm
    import mlflow
    import mlflow.lightgbm
    import numpy as np
    import pandas as pd
    from fraud_demo_jobs import tracking as T
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    files = state.save(os.path.join(work, "feature_state"))
    example = pd.DataFrame(np.zeros((2, len(state.feature_names)), dtype=np.float32), columns=state.feature_names)
    signature = infer_signature(example, booster.predict(example))
    reqs = [f"lightgbm=={lightgbm.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]
    with mlflow.start_run():
        info = mlflow.lightgbm.log_model(
            booster, name="model", signature=signature, pip_requirements=reqs, extra_files=files
        )
    mv = mlflow.register_model(info.model_uri, MODEL)
    client = MlflowClient(uri)
    tags = {
        T.TAG_DATASET: "ieee-fraud-detection",
        T.TAG_DATASET_VERSION: "bench",
        T.TAG_RAW_VERSIONS: "{}",
        T.TAG_CODE_VERSION: "bench",
    }
    for key, value in tags.items():
        client.set_model_version_tag(MODEL, mv.version, key, value)
    client.set_registered_model_alias(MODEL, "champion", mv.version)
    return str(mv.version)


def mlflow_body(state, rows: list[dict]) -> bytes:
    """The same rows as the MLflow server takes them: the model's features, dataframe_split, null for NaN."""
    import pandas as pd

    X = state.transform(pd.DataFrame(rows))
    data = [[None if math.isnan(v) else v for v in row] for row in X.to_numpy().astype(float).tolist()]
    return json.dumps({"dataframe_split": {"columns": list(X.columns), "data": data}}).encode()


def post(url: str, body: bytes, headers: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 (loopback http)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        return json.loads(resp.read())


def check_same_scores(ours: str, theirs: str, state, records: list[dict]) -> float:
    """Largest |difference| of the two servers' probabilities over a batch of rows (they serve one model)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    a = [p["fraud_probability"] for p in post(ours, json.dumps(records).encode(), auth)["predictions"]]
    out = post(theirs, mlflow_body(state, records))
    b = out["predictions"] if isinstance(out, dict) else out
    b = [x[0] if isinstance(x, list) else x for x in b]
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def scenario(name: str, url: str, pid: int, rate: float, n: int, bodies: list[bytes], concurrency: int, auth: bool):
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth else {}
    cpu0 = tree_cpu(pid)
    result = loadgen.run_load(
        url, rate, requests=n, body=lambda i: bodies[i % len(bodies)], headers=headers,
        field="model_version" if auth else None, concurrency=concurrency, timeout=30,
    )  # fmt: skip
    out = {"scenario": name, **result.summary(), "server_cpu_s": round(tree_cpu(pid) - cpu0, 3)}
    out["server_cpu_ms_per_request"] = round(out["server_cpu_s"] / max(out["sent"], 1) * 1000, 3)
    print(json.dumps(out, sort_keys=True), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=30000, help="synthetic train rows (default 30000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=300, help="most boosting rounds (default 300)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each fixed-rate run (default 10)")
    p.add_argument("--rates", default="100,500", help="single-row rates for fraud-demo-serve (default 100,500)")
    p.add_argument("--mlflow-rate", type=float, default=5.0, help="single-row rate for the MLflow server (5)")
    p.add_argument("--work", help="work directory (default .cache/bench-serve/<rows>-<seed>)")
    p.add_argument("--json", help="write all results here too")
    a = p.parse_args()
    work = os.path.abspath(a.work or os.path.join(ROOT, ".cache", "bench-serve", f"{a.rows}-{a.seed}"))
    os.makedirs(work, exist_ok=True)
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    for key in [k for k in env if k.startswith(("AWS_", "MLFLOW_", "FRAUD_DEMO_"))]:
        del env[key]
    procs: list[subprocess.Popen] = []
    logs = {}

    def start(name: str, args: list[str], extra: dict) -> subprocess.Popen:
        logs[name] = open(os.path.join(work, f"{name}.log"), "w")
        proc = subprocess.Popen(
            args, env={**env, **extra}, stdout=logs[name], stderr=subprocess.STDOUT, cwd=work, start_new_session=True
        )  # its own process group: mlflow's servers run their workers as children
        procs.append(proc)
        return proc

    try:
        t0 = time.monotonic()
        state, booster, records = build_model(work, a.rows, a.seed, a.rounds)
        print(f"model: {booster.num_trees()} trees, {len(state.feature_names)} features, "
              f"{time.monotonic() - t0:.0f} s to build", flush=True)  # fmt: skip
        db = os.path.join(work, "mlflow.db")
        for stale in (db, os.path.join(work, "artifacts")):
            subprocess.run(["rm", "-rf", stale], check=True)
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        tracking = start("tracking", [os.path.join(BIN, "mlflow"), "server", "--host", "127.0.0.1", "--port",
                                      str(port), "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination",
                                      os.path.join(work, "artifacts"), "--workers", "1"], {})  # fmt: skip
        wait_http(f"{uri}/health", tracking, 120)
        version = register(uri, work, state, booster)
        ours_port, theirs_port = free_port(), free_port()
        ours_proc = start("fraud-demo-serve", [os.path.join(BIN, "fraud-demo-serve"), "--port", str(ours_port),
                                                "--tracking-uri", uri, "--model-dir", os.path.join(work, "models"),
                                                "--sample-rate", "0", "--no-cloudwatch", "--reload-interval", "0"],
                          {"FRAUD_DEMO_SCORING_TOKEN": TOKEN})  # fmt: skip
        theirs_proc = start("mlflow-models-serve", [os.path.join(BIN, "mlflow"), "models", "serve", "-m",
                                                    f"models:/{MODEL}@champion", "--env-manager", "local", "-h",
                                                    "127.0.0.1", "-p", str(theirs_port), "-w", "1"],
                            {"MLFLOW_TRACKING_URI": uri})  # fmt: skip
        ours = f"http://127.0.0.1:{ours_port}"
        theirs = f"http://127.0.0.1:{theirs_port}"
        wait_http(f"{ours}/health", ours_proc, 120, lambda b: json.loads(b).get("model_version") == version)
        wait_http(f"{theirs}/ping", theirs_proc, 180)
        diff = check_same_scores(f"{ours}/predict", f"{theirs}/invocations", state, records[:BATCH])
        print(f"same model: largest |p_ours - p_mlflow| over {BATCH} rows = {diff:.2e}", flush=True)
        if diff > 1e-6:
            raise SystemExit("bench_serve: the two servers disagree; not the same model?")

        singles = [json.dumps(r).encode() for r in records]
        batches = [json.dumps(records[i : i + BATCH]).encode() for i in range(0, len(records), BATCH)]
        mlflow_singles = [mlflow_body(state, [r]) for r in records[:200]]
        mlflow_batches = [mlflow_body(state, records[i : i + BATCH]) for i in range(0, 1000, BATCH)]
        scenario("warmup ours", f"{ours}/predict", ours_proc.pid, 50, 100, singles, 4, True)
        scenario("warmup mlflow", f"{theirs}/invocations", theirs_proc.pid, 5, 10, mlflow_singles, 4, False)

        results = []
        s = a.seconds
        for rate in [float(r) for r in a.rates.split(",")]:
            n = int(rate * s)
            results.append(scenario(f"ours single @{rate:g}/s", f"{ours}/predict", ours_proc.pid, rate, n, singles,
                                    64, True))  # fmt: skip
        results.append(scenario("ours batch100 @10/s", f"{ours}/predict", ours_proc.pid, 10, int(10 * s), batches,
                                16, True))  # fmt: skip
        results.append(scenario("ours single saturated", f"{ours}/predict", ours_proc.pid, 5000, int(1500 * s / 2),
                                singles, 8, True))  # fmt: skip
        results.append(scenario(f"mlflow single @{a.mlflow_rate:g}/s", f"{theirs}/invocations", theirs_proc.pid,
                                a.mlflow_rate, int(a.mlflow_rate * s), mlflow_singles, 64, False))  # fmt: skip
        results.append(scenario("mlflow batch100 @1/s", f"{theirs}/invocations", theirs_proc.pid, 1, int(s),
                                mlflow_batches, 16, False))  # fmt: skip
        results.append(scenario("mlflow single saturated", f"{theirs}/invocations", theirs_proc.pid, 500,
                                int(20 * s), mlflow_singles, 8, False))  # fmt: skip
        by = {r["scenario"]: r for r in results}
        theirs_rps = max(by["mlflow single saturated"]["throughput_rps"], 1e-9)
        ratio = by["ours single saturated"]["throughput_rps"] / theirs_rps
        summary = {
            "single_p99_ms_at_500": by.get("ours single @500/s", {}).get("p99_ms"),
            "single_errors_at_500": by.get("ours single @500/s", {}).get("failed"),
            "throughput_ratio_single": round(ratio, 1),
            "rows": a.rows, "trees": booster.num_trees(), "features": len(state.feature_names),
            "cores": os.cpu_count(), "loadavg_end": os.getloadavg(),
        }  # fmt: skip
        print(json.dumps({"summary": summary}, sort_keys=True), flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"summary": summary, "scenarios": results}, f, indent=2, sort_keys=True)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for f in logs.values():
            f.close()


if __name__ == "__main__":
    sys.exit(main())
