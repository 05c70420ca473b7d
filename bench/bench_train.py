#!/usr/bin/env python3
"""Benchmark of the train stage's ML core on synthetic data, side by side on the same time split and holdout:

  (a) baseline: LightGBM with its default parameters (100 rounds, lr 0.1, 31 leaves) on the raw columns (numbers as
      they are, strings as pandas categories), trained on the whole train window (train + valid);
  (b) ours:     ``features.FeatureState`` fitted on the train window + ``modeling.train_booster`` with early
      stopping on the valid slice, the job's default ``TrainParams``.

Both see the same curated Parquet the job reads (the synthetic CSVs run through the ingest core,
``curate.curate_file``), cached under .cache/bench-data/<rows>-<seed>[-x<K>]/ so nothing is regenerated. Each model
is trained in a fresh child process: wall time of train + evaluate (features, training, holdout scoring, metrics;
plus plots for (b)) excluding the Parquet read, and the child's peak RSS (wait4 rusage).

Scaling (issue 13): ``--scale K`` trains on K times the data as K times the months (``fraud-demo-generate --scale``);
``--memory-max 7.5G`` runs each model under that memory cap (a t3.large's 8 GiB minus the OS; ``memcap.py``) and
reports an OOM kill at the cap as a result, not an error; ``--prepare-memory-max`` caps the generate + curate child.

    .venv/bin/python bench/bench_train.py [--rows 590540] [--seed 42] [--scale 1] [--only a|b] [--repeat 1]
        [--memory-max SIZE] [--prepare-memory-max SIZE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import memcap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "bench-data")

PREPARE = """
import json, os, sys
from fraud_demo_jobs import curate, synthetic, ieee_schema as S
raw, out = sys.argv[1], sys.argv[2]
scale = float(sys.argv[5])
summary = synthetic.generate(raw, rows=int(sys.argv[3]), seed=int(sys.argv[4]), force=False, workers=2,
                             scale=int(scale) if scale.is_integer() else scale)
state = S.KeyState()
for table in ("train_transaction", "train_identity"):
    spec = S.BY_NAME[table]
    curate.curate_file(spec, os.path.join(raw, spec.file), out, state)
print(json.dumps({"oracle_auc_last20pct": summary["oracle_auc_last20pct"], "files": summary["files"]}))
"""

COMMON = """
import json, os, sys, time
import numpy as np, pandas as pd
from fraud_demo_jobs import features as F, modeling as M
curated = sys.argv[1]
tx = pd.read_parquet(os.path.join(curated, "train_transaction.parquet"))
ident = pd.read_parquet(os.path.join(curated, "train_identity.parquet"))
t0 = time.perf_counter()
frame = F.model_frame(tx, ident)
del tx, ident
split = F.time_split(frame, F.SplitSpec())
del frame
"""

BASELINE = (
    COMMON
    + """
import lightgbm as lgb
history = split.history
raw = [c for c in history.columns if c not in F.NOT_FEATURES]
def raw_frame(df, cats=None):
    out = df[raw].copy()
    for c in raw:
        if not pd.api.types.is_numeric_dtype(out[c]):
            text = out[c].astype(object).where(out[c].notna(), None)
            out[c] = pd.Categorical(text, categories=cats[c] if cats else None)
        elif str(out[c].dtype) == "Int64":
            out[c] = out[c].astype("float64")
    return out
X = raw_frame(history)
cats = {c: X[c].cat.categories for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
params = {"objective": "binary", "seed": 42, "num_threads": 2, "deterministic": True, "force_row_wise": True,
          "verbosity": -1}
booster = lgb.train(params, lgb.Dataset(X, label=history[F.C.LABEL].to_numpy()))
scores = booster.predict(raw_frame(split.holdout, cats), num_threads=2)
m = M.holdout_metrics(split.holdout[F.C.LABEL].to_numpy(), scores)
m.update(seconds=time.perf_counter() - t0, rounds=booster.current_iteration(), features=X.shape[1])
print(json.dumps(m))
"""
)

OURS = (
    COMMON
    + """
import tempfile
params = M.TrainParams(**json.loads(sys.argv[2]))
history = split.history
t1 = time.perf_counter()
state = F.FeatureState.fit(history)
del history
Xt, Xv, Xh = (state.transform(p) for p in (split.train, split.valid, split.holdout))
t_feat = time.perf_counter() - t1
booster = M.train_booster(Xt, split.train[F.C.LABEL].to_numpy(), Xv, split.valid[F.C.LABEL].to_numpy(), params,
                          categorical=state.categorical_features, train_time=split.train[F.DT].to_numpy())
t_train = time.perf_counter() - t1 - t_feat
scores = M.predict(booster, Xh, threads=params.threads)
y = split.holdout[F.C.LABEL].to_numpy()
m = M.holdout_metrics(y, scores)
with tempfile.TemporaryDirectory() as d:
    M.write_plots(y, scores, booster, d)
m.update(seconds=time.perf_counter() - t0, feature_seconds=t_feat, train_seconds=t_train,
         rounds=booster.best_iteration, features=Xt.shape[1], bounds=split.bounds())
print(json.dumps(m))
"""
)


def child(code: str, *args: str, memory_max: str | None = None) -> dict:
    """Run a Python child (under ``memory_max`` when given); returns its last JSON line plus its peak RSS (from
    wait4's rusage), the load average before and after, and, when capped, ``oom_killed`` (then no metrics)."""
    t = time.perf_counter()
    load = os.getloadavg()[0]
    proc, cap = memcap.run([sys.executable, "-c", code, *args], memory_max, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    capped = cap.report() if cap else {}
    killed = capped.get("oom_killed", False) or (
        cap is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    )
    if status != 0 and not killed:
        raise SystemExit(f"child failed (status {status}):\n{out}")
    result = {"oom_killed": True} if killed else json.loads(out.strip().splitlines()[-1])
    result |= capped | {"oom_killed": killed}
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["process_seconds"] = time.perf_counter() - t
    result["load_before"], result["load_after"] = load, os.getloadavg()[0]
    return result


def data_dir(rows: int, seed: int, scale: float) -> str:
    """The cache directory of (rows, seed, scale); 1x keeps its old name, so its cached data is reused."""
    return os.path.join(CACHE, f"{rows}-{seed}" + ("" if scale == 1 else f"-x{scale:g}"))


def prepare(rows: int, seed: int, scale: float = 1.0, memory_max: str | None = None) -> str:
    """Curated Parquet of the synthetic train tables, generated and curated once per (rows, seed, scale)."""
    base = data_dir(rows, seed, scale)
    curated = os.path.join(base, "curated")
    done = os.path.join(base, "prepared.json")
    if not os.path.exists(done):
        os.makedirs(base, exist_ok=True)
        info = child(PREPARE, os.path.join(base, "raw"), base, str(rows), str(seed), str(scale), memory_max=memory_max)
        if info["oom_killed"]:
            raise SystemExit(f"generating/curating {base} was OOM-killed at {memory_max}")
        with open(done, "w") as f:
            json.dump(info, f)
    return curated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=590540)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--only", choices=("a", "b"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--params", default="{}", help="JSON overrides of TrainParams for (b)")
    ap.add_argument("--scale", type=float, default=1.0, help="K times the data as K times the months (default 1)")
    ap.add_argument("--memory-max", help="memory cap of each model's process, e.g. 7.5G (an OOM kill is a result)")
    ap.add_argument("--prepare-memory-max", help="memory cap of the generate + curate process, e.g. 12G")
    ap.add_argument("--json", help="append one JSON line per model run to this file")
    args = ap.parse_args()
    curated = prepare(args.rows, args.seed, args.scale, args.prepare_memory_max)
    with open(os.path.join(os.path.dirname(curated), "prepared.json")) as f:
        oracle = json.load(f)["oracle_auc_last20pct"]
    print(
        f"data: {curated} ({args.rows} rows x scale {args.scale:g}, seed {args.seed}; "
        f"generator oracle AUC last 20 %: {oracle:.4f})"
    )
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    for _ in range(args.repeat):
        for kind, code, extra in (("a", BASELINE, ()), ("b", OURS, (args.params,))):
            if args.only in (None, kind):
                r = child(code, curated, *extra, memory_max=args.memory_max)
                runs[kind].append(r)
                print(kind, json.dumps({k: v for k, v in r.items() if k != "bounds"}), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({"model": kind, "rows_1x": args.rows, "scale": args.scale, **r}) + "\n")
    runs = {kind: [r for r in results if not r["oom_killed"]] for kind, results in runs.items()}
    print()
    print(
        "| model | holdout ROC-AUC | PR-AUC | recall@1%FPR | precision@top1% | rounds | features | "
        "train+evaluate s | peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"a": "(a) LightGBM defaults, raw columns", "b": "(b) fraud-demo-train features + params"}
    for kind, results in runs.items():
        for r in results:
            print(
                f"| {names[kind]} | {r['roc_auc']:.4f} | {r['pr_auc']:.4f} | {r['recall_at_1pct_fpr']:.4f} | "
                f"{r['precision_at_top_1pct']:.4f} | {r['rounds']} | {r['features']} | {r['seconds']:.1f} | "
                f"{r['peak_rss_mib']:.0f} |"
            )
    if runs["a"] and runs["b"]:
        gain = runs["b"][0]["roc_auc"] - runs["a"][0]["roc_auc"]
        b = runs["b"][0]
        print(f"\n(b) - (a) holdout AUC: {gain:+.4f}; holdout {b['rows']} rows, {b['frauds']} frauds")
    if runs["b"]:
        print("split:", json.dumps(runs["b"][0]["bounds"]))


if __name__ == "__main__":
    main()
