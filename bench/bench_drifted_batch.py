#!/usr/bin/env python3
"""Does the drifted batch (``fraud-demo-generate --drift``) make the train job's gate promote a retrained model?

The gate (``train_run``) compares, on the holdout of the dataset being trained on, the candidate's AUC with the
champion's AUC re-scored through the champion's own feature state. This script does exactly that outside MLflow:

  champion:  FeatureState + booster trained on the NORMAL batch (its own time split, the job's defaults);
  candidate: the same trained on the DRIFTED batch;
  both scored on the drifted batch's holdout (and the champion also on its own holdout, for reference).

Both batches go through the ingest core (``curate.curate_file``) like the job's data, cached under
.cache/bench-data/<rows>-<seed>[-drift]/.

    .venv/bin/python bench/bench_drifted_batch.py [--rows 50000] [--seed 42]
"""

from __future__ import annotations

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "bench-data")


def prepare(rows: int, seed: int, drift: bool) -> tuple[str, dict]:
    from fraud_demo_jobs import curate, synthetic
    from fraud_demo_jobs import ieee_schema as S

    base = os.path.join(CACHE, f"{rows}-{seed}" + ("-drift" if drift else ""))
    raw, out = os.path.join(base, "raw"), os.path.join(base, "curated")
    summary = synthetic.generate(raw, rows=rows, seed=seed, drift=drift)
    done = os.path.join(out, ".done")
    if summary["changed"] or not os.path.exists(done):
        os.makedirs(out, exist_ok=True)
        state = S.KeyState()
        for table in ("train_transaction", "train_identity"):
            spec = S.BY_NAME[table]
            curate.curate_file(spec, os.path.join(raw, spec.file), out, state)
        open(done, "w").close()
    return out, summary


def load_split(out: str):
    import pandas as pd
    from fraud_demo_jobs import features as F

    def read(table: str) -> pd.DataFrame:
        return pd.read_parquet(os.path.join(out, "curated", f"{table}.parquet"))

    frame = F.model_frame(read("train_transaction"), read("train_identity"))
    return F.time_split(frame, F.SplitSpec())


def fit(split):
    from fraud_demo_jobs import features as F
    from fraud_demo_jobs import ieee_contract as C
    from fraud_demo_jobs import modeling as M

    spec = F.SplitSpec()
    state = F.FeatureState.fit(split.history, lag_days=spec.scoring_lag_days())
    booster = M.train_booster(
        state.transform(split.train),
        split.train[C.LABEL].to_numpy(),
        state.transform(split.valid),
        split.valid[C.LABEL].to_numpy(),
        M.TrainParams(),
        categorical=state.categorical_features,
    )
    return state, booster


def auc(model, holdout) -> float:
    import numpy as np
    from fraud_demo_jobs import ieee_contract as C
    from fraud_demo_jobs import modeling as M

    state, booster = model
    scores = M.predict(booster, state.transform(holdout), 2)
    return float(M.holdout_metrics(holdout[C.LABEL].to_numpy(), np.nan_to_num(scores, nan=0.0))["roc_auc"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    t0 = time.monotonic()
    normal_dir, normal = prepare(args.rows, args.seed, False)
    drift_dir, drifted = prepare(args.rows, args.seed, True)
    normal_split, drift_split = load_split(normal_dir), load_split(drift_dir)
    champion, candidate = fit(normal_split), fit(drift_split)
    hold = drift_split.holdout
    result = {
        "rows": args.rows,
        "seed": args.seed,
        "oracle_auc_last20pct": {"normal": normal["oracle_auc_last20pct"], "drifted": drifted["oracle_auc_last20pct"]},
        "holdout_rows": len(hold),
        "holdout_frauds": int(hold["isFraud"].sum()),
        "champion_auc_on_own_holdout": round(auc(champion, normal_split.holdout), 4),
        "champion_auc_on_drifted_holdout": round(auc(champion, hold), 4),
        "candidate_auc_on_drifted_holdout": round(auc(candidate, hold), 4),
        "seconds": round(time.monotonic() - t0, 1),
    }
    result["gain"] = round(result["candidate_auc_on_drifted_holdout"] - result["champion_auc_on_drifted_holdout"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
