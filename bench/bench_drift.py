#!/usr/bin/env python3
"""Benchmark of ``fraud-demo-drift``'s core at full scale: wall time and peak RSS of one drift report comparing
the champion's train window (the synthetic train table, ~472k rows inside the default split's train window) with
the test table (506,691 rows), each sampled to ``--reference-rows`` / ``--current-rows`` and scored by the model.

Data and model: bench_score.py's cache (``.cache/bench-data/<rows>-<seed>/``: raw CSVs generated once, train and
test tables curated once, one model trained once with the job's default split and parameters).

Measured in a fresh child process (wall time, and the child's peak RSS from wait4's rusage), the job's own steps
in its order: load the Booster and feature state, the train window (``drift_data.reference_window``), the
compared columns (``drift_data.drift_columns``), both samples read and scored (``drift_data.curated_sample``),
Evidently's report (``drift_report.run_report``), its dict parsed (``drift_report.parse_result``), the HTML and
JSON written. Not included: the S3 download of the curated tables and the model, and the upload (see the
README's transfer figures). Prints the drift share (the normal dataset's own later data: its baseline).

    .venv/bin/python bench/bench_drift.py [--rows 590540] [--seed 42] [--reference-rows 50000]
                                          [--current-rows 50000] [--columns 50] [--curated DIR]

``--curated DIR`` compares against another curated directory's test tables instead (e.g. a drifted batch:
``fraud-demo-generate --drift`` curated the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_score import prepare_scoring  # noqa: E402  (the same data, model and child measurement)
from bench_train import child  # noqa: E402
from fraud_demo_jobs.drift import DEFAULT_COLUMNS  # noqa: E402

DRIFT = """
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import lightgbm as lgb
from fraud_demo_jobs import drift_data as D, drift_report as R, features as F
from fraud_demo_jobs.model_store import LoadedModel, ModelLineage
t_import = time.perf_counter() - t0
curated, current, model_dir = sys.argv[1], sys.argv[2], sys.argv[3]
ref_rows, cur_rows, n_columns = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
lineage = ModelLineage("bench", "0", "", None, None, {}, None)
model = LoadedModel(lineage, lgb.Booster(model_file=os.path.join(model_dir, "model.lgb")),
                    F.FeatureState.load(os.path.join(model_dir, "feature_state")))
t = time.perf_counter()
ref_paths = {n: os.path.join(curated, n + ".parquet") for n in ("train_transaction", "train_identity")}
cur_paths = {n: os.path.join(current, n + ".parquet") for n in ("test_transaction", "test_identity")}
window = D.reference_window(ref_paths["train_transaction"], F.SplitSpec())
columns = D.drift_columns(model, n_columns)
ref = D.curated_sample(model, ref_paths, ("train_transaction", "train_identity"), columns, ref_rows, 42, window[1], 2)
cur = D.curated_sample(model, cur_paths, ("test_transaction", "test_identity"), columns, cur_rows, 42, None, 2)
t_sample = time.perf_counter() - t
t = time.perf_counter()
import evidently.presets  # noqa: F401  (its import is part of the report's cost)
t_evidently_import = time.perf_counter() - t
t = time.perf_counter()
schema, skipped = R.Schema(*D.column_kinds(list(ref.frame.columns))).comparable(ref.frame, cur.frame)
snapshot = R.run_report(ref.frame, cur.frame, schema)
report = snapshot.dict()
result = R.parse_result(report, R.DEFAULT_DRIFT_SHARE)
t_report = time.perf_counter() - t
t = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    snapshot.save_html(os.path.join(d, "report.html"))
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(report, f, default=str)
    sizes = {n: os.path.getsize(os.path.join(d, n)) for n in ("report.html", "report.json")}
t_write = time.perf_counter() - t
top = [(c.column, round(c.score, 4)) for c in result.top(5, exclude=("prediction",))]
pred = result.column("prediction")
print(json.dumps({"seconds": time.perf_counter() - t0, "import_seconds": t_import, "sample_seconds": t_sample,
                  "evidently_import_seconds": t_evidently_import, "report_seconds": t_report,
                  "write_seconds": t_write, "bytes": sizes, "reference_available": ref.available,
                  "current_available": cur.available, "reference_rows": len(ref.frame), "current_rows": len(cur.frame),
                  "columns": len(result.columns), "skipped": skipped, "drifted_columns": result.drifted_columns,
                  "drift_share": result.drift_share, "drift_detected": result.drift_detected,
                  "prediction_psi": pred.score if pred else None, "top": top}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=590540, help="train rows of the synthetic dataset (full scale)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reference-rows", type=int, default=50_000, help="the job's --reference-rows (its default)")
    ap.add_argument("--current-rows", type=int, default=50_000, help="the job's --current-rows (its default)")
    ap.add_argument("--columns", type=int, default=DEFAULT_COLUMNS, help="the job's --columns (its default)")
    ap.add_argument("--curated", help="directory with test_transaction/test_identity Parquet to compare instead")
    args = ap.parse_args()
    curated, model_dir = prepare_scoring(args.rows, args.seed)
    current = args.curated or curated
    load = os.getloadavg()
    print(f"data: {curated}; current: {current}; model: {model_dir}; load average before: {load[0]:.2f}")
    r = child(DRIFT, curated, current, model_dir, str(args.reference_rows), str(args.current_rows), str(args.columns))
    print(json.dumps(r), flush=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f}\n")
    print("| ref rows | cur rows | columns | wall s (child) | sample+score s | evidently import s | report s | "
          "write s | peak RSS MiB | HTML MiB | drift share |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {r['reference_rows']:,} | {r['current_rows']:,} | {r['columns']} | {r['process_seconds']:.1f} | "
        f"{r['sample_seconds']:.1f} | {r['evidently_import_seconds']:.1f} | {r['report_seconds']:.1f} | "
        f"{r['write_seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['bytes']['report.html'] / 2**20:.1f} | "
        f"{r['drift_share']:.3f} |"
    )


if __name__ == "__main__":
    main()
