#!/usr/bin/env python3
"""Benchmark of the train stage's ML core on synthetic data, side by side on the same time split and holdout:

  (a) baseline: LightGBM with its default parameters (100 rounds, lr 0.1, 31 leaves) on the raw columns (numbers as
      they are, strings as pandas categories), trained on the whole train window (train + valid);
  (b) ours:     ``features.FeatureState`` fitted on the train window + ``modeling.train_booster`` with early
      stopping on the valid slice, the job's default ``TrainParams``.

Both see the same curated Parquet the job reads (the synthetic CSVs run through the ingest core,
``curate.curate_file``), cached under .cache/bench-data/<rows>-<seed>/ so nothing is regenerated. Each model is
trained in a fresh child process: wall time of train + evaluate (features, training, holdout scoring, metrics;
plus plots for (b)) excluding the Parquet read, and the child's peak RSS (wait4 rusage).

    .venv/bin/python bench/bench_train.py [--rows 590540] [--seed 42] [--only a|b] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "bench-data")

PREPARE = """
import json, os, sys
from fraud_demo_jobs import curate, synthetic, ieee_schema as S
raw, out = sys.argv[1], sys.argv[2]
summary = synthetic.generate(raw, rows=int(sys.argv[3]), seed=int(sys.argv[4]), force=False, workers=2)
state = S.KeyState()
for table in ("train_transaction", "train_identity"):
    spec = S.BY_NAME[table]
    curate.curate_file(spec, os.path.join(raw, spec.file), out, state)
print(json.dumps({"oracle_auc_last20pct": summary["oracle_auc_last20pct"]}))
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
                          categorical=state.categorical_features)
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


def child(code: str, *args: str) -> dict:
    """Run a Python child; returns its last JSON line plus its peak RSS (bytes) from wait4's rusage."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child failed (status {status}):\n{out}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["process_seconds"] = time.perf_counter() - t
    return result


def prepare(rows: int, seed: int) -> str:
    """Curated Parquet of the synthetic train tables, generated and curated once per (rows, seed)."""
    base = os.path.join(CACHE, f"{rows}-{seed}")
    curated = os.path.join(base, "curated")
    done = os.path.join(base, "prepared.json")
    if not os.path.exists(done):
        os.makedirs(base, exist_ok=True)
        info = child(PREPARE, os.path.join(base, "raw"), base, str(rows), str(seed))
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
    args = ap.parse_args()
    curated = prepare(args.rows, args.seed)
    with open(os.path.join(os.path.dirname(curated), "prepared.json")) as f:
        oracle = json.load(f)["oracle_auc_last20pct"]
    print(f"data: {curated} ({args.rows} rows, seed {args.seed}; generator oracle AUC last 20 %: {oracle:.4f})")
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    for _ in range(args.repeat):
        if args.only != "b":
            runs["a"].append(child(BASELINE, curated))
            print("a", json.dumps(runs["a"][-1]), flush=True)
        if args.only != "a":
            runs["b"].append(child(OURS, curated, args.params))
            print("b", json.dumps({k: v for k, v in runs["b"][-1].items() if k != "bounds"}), flush=True)
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
