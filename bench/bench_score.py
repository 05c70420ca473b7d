#!/usr/bin/env python3
"""Benchmark of ``fraud-demo-score``'s core on the full-scale synthetic test table (506,691 rows): wall time and
peak RSS of scoring it with a model trained by the job's code on the full-scale train window.

Data: the same cache as bench_train.py (``.cache/bench-data/<rows>-<seed>/``: raw CSVs generated once, the train
tables curated once); this bench curates the test tables (test_transaction, test_identity, sample_submission)
into it once more, and trains one model once (``features.FeatureState`` + ``modeling.train_booster`` with the
job's default split and ``TrainParams``), kept as a Booster file + the saved feature state under ``model/``.

Measured, each in a fresh child process (wall time, and the child's peak RSS from wait4's rusage): load the
Booster and the feature state, then ``score_batch.score_tables`` (ID check against sample_submission, chunked
read + join + transform + predict) and ``score_batch.write_outputs`` (predictions.parquet, submission.csv), with
``--chunk-rows`` rows per chunk (the job's default 100,000) and, for comparison, the whole table as one chunk.
Not included: the S3 download of the curated tables and the model, and the upload (see the README's ingest and
upload figures for the transfer rates).

    .venv/bin/python bench/bench_score.py [--rows 590540] [--seed 42] [--chunk-rows 100000] [--threads 2]
                                          [--repeat 1] [--no-whole]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_train import child, prepare  # noqa: E402  (the same cache and the same child-process measurement)

WHOLE = 10**9  # --chunk-rows larger than any table: the whole table in one chunk

CURATE_TEST = """
import json, os, sys
from fraud_demo_jobs import curate, ieee_schema as S
raw, out = sys.argv[1], sys.argv[2]
state = S.KeyState()
rows = {}
for table in ("test_transaction", "test_identity", "sample_submission"):
    spec = S.BY_NAME[table]
    rows[table] = curate.curate_file(spec, os.path.join(raw, spec.file), out, state).rows_valid
print(json.dumps(rows))
"""

TRAIN = """
import json, os, sys, time
import pandas as pd
from fraud_demo_jobs import features as F, modeling as M
curated, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
frame = F.model_frame(pd.read_parquet(os.path.join(curated, "train_transaction.parquet")),
                      pd.read_parquet(os.path.join(curated, "train_identity.parquet")))
spec, params = F.SplitSpec(), M.TrainParams()
split = F.time_split(frame, spec)
del frame
state = F.FeatureState.fit(split.history, lag_days=spec.scoring_lag_days())
booster = M.train_booster(state.transform(split.train), split.train[F.C.LABEL].to_numpy(),
                          state.transform(split.valid), split.valid[F.C.LABEL].to_numpy(), params,
                          categorical=state.categorical_features, train_time=split.train[F.DT].to_numpy())
state.save(os.path.join(out, "feature_state"))
booster.save_model(os.path.join(out, "model.lgb"))
print(json.dumps({"seconds": time.perf_counter() - t0, "best_iteration": booster.best_iteration,
                  "features": len(state.feature_names)}))
"""

SCORE = """
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import lightgbm as lgb
from fraud_demo_jobs.features import FeatureState
from fraud_demo_jobs.model_store import LoadedModel, ModelLineage
from fraud_demo_jobs.score_batch import score_tables, write_outputs
t_import = time.perf_counter() - t0
curated, model_dir, chunk_rows, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lineage = ModelLineage("bench", "0", "", None, None, {}, None)
model = LoadedModel(lineage, lgb.Booster(model_file=os.path.join(model_dir, "model.lgb")),
                    FeatureState.load(os.path.join(model_dir, "feature_state")))
t_load = time.perf_counter() - t0 - t_import
paths = {t: os.path.join(curated, f"{t}.parquet") for t in ("test_transaction", "test_identity", "sample_submission")}
t1 = time.perf_counter()
scored = score_tables(model, paths, chunk_rows, threads)
t_score = time.perf_counter() - t1
with tempfile.TemporaryDirectory() as d:
    t2 = time.perf_counter()
    files = write_outputs(scored, d)
    sizes = {name: os.path.getsize(path) for name, path in files.items()}
    t_write = time.perf_counter() - t2
print(json.dumps({"rows": len(scored.ids), "seconds": time.perf_counter() - t0, "import_seconds": t_import,
                  "load_seconds": t_load,
                  "score_seconds": t_score, "write_seconds": t_write, "bytes": sizes,
                  "mean_probability": float(scored.probabilities.mean())}))
"""


def prepare_scoring(rows: int, seed: int) -> tuple[str, str]:
    """The curated test tables and the trained model, made once per (rows, seed) next to bench_train's cache."""
    curated = prepare(rows, seed)
    base = os.path.dirname(curated)
    done = os.path.join(base, "test-curated.json")
    if not os.path.exists(done):
        info = child(CURATE_TEST, os.path.join(base, "raw"), base)
        with open(done, "w") as f:
            json.dump(info, f)
        print("curated the test tables:", json.dumps(info), flush=True)
    model_dir = os.path.join(base, "model")
    if not os.path.exists(os.path.join(model_dir, "model.lgb")):
        os.makedirs(model_dir, exist_ok=True)
        print("training the model once (the job's default split and parameters) ...", flush=True)
        print("trained:", json.dumps(child(TRAIN, curated, model_dir)), flush=True)
    return curated, model_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=590540, help="train rows of the synthetic dataset (full scale)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--chunk-rows", type=int, default=100_000, help="the job's --chunk-rows (its default)")
    ap.add_argument("--threads", type=int, default=2, help="the job's --threads (its default)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-table-in-one-chunk comparison")
    args = ap.parse_args()
    curated, model_dir = prepare_scoring(args.rows, args.seed)
    load = os.getloadavg()
    print(f"data: {curated}; model: {model_dir}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    chunks = [args.chunk_rows] + ([] if args.no_whole else [WHOLE])
    results = []
    for _ in range(args.repeat):
        for chunk in chunks:
            r = child(SCORE, curated, model_dir, str(chunk), str(args.threads))
            r["chunk_rows"] = chunk
            results.append(r)
            print(json.dumps(r), flush=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| chunk rows | rows | wall s (child) | imports s | load model s | score s | write s | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        chunk = "whole table" if r["chunk_rows"] == WHOLE else f"{r['chunk_rows']:,}"
        print(
            f"| {chunk} | {r['rows']:,} | {r['process_seconds']:.1f} | {r['import_seconds']:.1f} | "
            f"{r['load_seconds']:.1f} | {r['score_seconds']:.1f} | {r['write_seconds']:.1f} | {r['peak_rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
