"""The scoring itself for ``fraud-demo-score``: the test table in chunks through a loaded model, and the two
output files. Imported only when something is scored, so ``unchanged`` and ``--check`` never load LightGBM.

Memory is bounded by a chunk: the identity table (about a quarter of the test rows, ~40 columns) is read whole,
the transaction table ``chunk_rows`` rows at a time and only in the columns the feature state reads; each chunk is
joined with its identity rows (``features.model_frame``, as in training), transformed and scored, and only its
probabilities are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import features as F
from . import ieee_contract as C
from . import layout
from .errors import JobError
from .model_store import LoadedModel

EXAMPLE_IDS = 5  # how many differing TransactionIDs a message names


@dataclass
class Scored:
    ids: np.ndarray  # TransactionID, in the test table's order
    probabilities: np.ndarray  # float64, aligned with ids
    submission_ids: np.ndarray  # sample_submission's TransactionIDs, in its order (the same set as ids)


def check_ids(test_ids: np.ndarray, sample_ids: np.ndarray) -> None:
    """The test table's TransactionIDs must be sample_submission's, each once: a Kaggle submission has one row per
    test transaction. JobError naming how many differ (and a few of them) otherwise."""
    problems = []
    for name, ids in (("test_transaction", test_ids), ("sample_submission", sample_ids)):
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            problems.append(f"{name} repeats {int((counts > 1).sum())} TransactionIDs (e.g. {_some(uniq[counts > 1])})")
    missing = np.setdiff1d(sample_ids, test_ids)
    extra = np.setdiff1d(test_ids, sample_ids)
    if len(missing):
        problems.append(
            f"{len(missing)} of sample_submission's TransactionIDs are not in test_transaction (e.g. "
            f"{_some(missing)}; rows the ingest stage quarantined?)"
        )
    if len(extra):
        problems.append(f"{len(extra)} test_transaction TransactionIDs are not in sample_submission ({_some(extra)})")
    if problems:
        raise JobError(
            "the submission would not match sample_submission: "
            + "; ".join(problems)
            + ": fix the raw files (see quarantine/ of the curated version) and run the ingest stage again"
        )


def _some(ids: np.ndarray) -> str:
    return ", ".join(str(int(i)) for i in ids[:EXAMPLE_IDS])


def score_tables(
    model: LoadedModel,
    paths: dict[str, str],
    chunk_rows: int,
    threads: int,
    progress: Callable[[int], None] | None = None,
) -> Scored:
    """Fraud probabilities of every row of test_transaction (joined with test_identity), ``chunk_rows`` at a time;
    the IDs are checked against sample_submission first."""
    tx_file = pq.ParquetFile(paths["test_transaction"])
    test_ids = tx_file.read(columns=[C.KEY]).column(0).to_numpy()
    sample_ids = pq.read_table(paths["sample_submission"], columns=[C.KEY]).column(0).to_numpy()
    check_ids(test_ids, sample_ids)

    wanted = set(model.state.input_columns) | {C.KEY, F.DT}
    tx_cols = [c for c in tx_file.schema_arrow.names if c in wanted]
    id_names = pq.ParquetFile(paths["test_identity"]).schema_arrow.names
    identity = pd.read_parquet(paths["test_identity"], columns=[c for c in id_names if c in wanted])
    ids, probabilities = [], []
    for batch in tx_file.iter_batches(batch_size=chunk_rows, columns=tx_cols):
        frame = F.model_frame(batch.to_pandas(), identity)
        ids.append(frame[C.KEY].to_numpy(dtype=np.int64))
        probabilities.append(np.asarray(model.predict_frame(frame, threads), dtype=np.float64))
        del frame
        if progress is not None:
            progress(sum(len(p) for p in probabilities))
    if not ids:
        raise JobError("test_transaction of the curated version has no rows: nothing to score")
    return Scored(np.concatenate(ids), np.concatenate(probabilities), sample_ids.astype(np.int64))


def write_outputs(scored: Scored, out_dir: str) -> dict[str, str]:
    """predictions.parquet and submission.csv in ``out_dir``; file name -> path. The same scores give the same
    bytes (no timestamps inside), so a re-run after a failed upload re-sends nothing S3 already has."""
    import os

    os.makedirs(out_dir, exist_ok=True)
    predictions = os.path.join(out_dir, layout.PREDICTIONS_FILE)
    table = pa.table(
        {C.KEY: pa.array(scored.ids, pa.int64()), "fraud_probability": pa.array(scored.probabilities, pa.float64())}
    )
    pq.write_table(table, predictions, compression="zstd")
    order = np.argsort(scored.ids, kind="stable")
    at = order[np.searchsorted(scored.ids, scored.submission_ids, sorter=order)]
    submission = os.path.join(out_dir, layout.SUBMISSION_FILE)
    frame = pd.DataFrame({C.KEY: scored.submission_ids, C.LABEL: scored.probabilities[at]})
    frame.to_csv(submission, index=False, lineterminator="\n")
    return {layout.PREDICTIONS_FILE: predictions, layout.SUBMISSION_FILE: submission}
