"""The two samples ``fraud-demo-drift`` compares, each scored by the same model version.

    reference   rows of the model's curated version (train_transaction + train_identity) inside its train window:
                TransactionDT up to the split's ``train_end``, computed by ``features.SplitSpec.edges`` from the
                split parameters the version's MLflow run logged (what the model and its feature state learned
                from, the validation slice included; never the gap or the holdout)
    current     ``latest``: the test tables of the curated version ``curated/<dataset>/latest`` names, or of a
                named curated version; ``inference``: the scoring service's samples under ``inference/<date>/``
                of the last ``days`` days

Each is a seeded uniform sample of at most ``rows`` rows, read in Parquet row batches (only the columns the
model's feature state reads) so memory is bounded by the sample, not the table. The ``prediction`` column is the
model version's fraud probability of each sampled row (``LoadedModel.predict_frame``, as the batch job scores).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import features as F
from . import ieee_contract as C
from . import layout
from .aws import S3Bucket
from .errors import JobError
from .model_store import LoadedModel

PREDICTION = "prediction"
BATCH_ROWS = 65_536
# Split parameters train_run logs on its MLflow run (features.SplitSpec's fields with this prefix).
SPLIT_PARAM_PREFIX = "split_"


@dataclass
class Sample:
    """A scored sample: the model's raw input columns (TransactionID/TransactionDT dropped) and ``prediction``."""

    frame: pd.DataFrame
    available: int  # rows it was drawn from
    dt_range: tuple[int, int] | None  # TransactionDT of the rows it was drawn from (None: not known)


def split_spec(params: dict[str, str]) -> F.SplitSpec:
    """The SplitSpec of a training run from its logged params (``split_holdout_days`` ...); a run that logged
    none of them used the defaults of its time, which are SplitSpec's."""
    fields = {}
    for name in ("holdout_days", "gap_days", "valid_days"):
        value = params.get(SPLIT_PARAM_PREFIX + name)
        if value is not None:
            try:
                fields[name] = float(value)
            except ValueError as e:
                raise JobError(f"the training run's param {SPLIT_PARAM_PREFIX}{name}={value!r} is not a number") from e
    return F.SplitSpec(**fields)


def drift_columns(model: LoadedModel, limit: int) -> list[str]:
    """The raw columns compared: the model's input columns (its feature state's, minus the key and the absolute
    time), the ``limit`` it relies on most (0: all of them), in that order. A column's weight is the total gain
    of the model's features built from it: the raw column itself, its frequency encoding and its key aggregates
    (``uid_mean_C1`` -> C1); ties by name."""
    inputs = [c for c in model.state.input_columns if c not in (C.KEY, F.DT)]
    if limit <= 0 or limit >= len(inputs):
        return inputs
    booster = model.booster
    gains = booster.feature_importance(importance_type="gain", iteration=booster.best_iteration or None)
    weight = dict.fromkeys(inputs, 0.0)
    for name, gain in zip(booster.feature_name(), gains, strict=True):
        source = _source_column(name, weight)
        if source is not None:
            weight[source] += float(gain)
    return sorted(inputs, key=lambda c: (-weight[c], c))[:limit]


def _source_column(feature: str, columns: dict) -> str | None:
    """The raw column a feature is built from, when it is one column (see features.FeatureState)."""
    if feature in columns:
        return feature
    if feature.startswith("freq_") and feature[5:] in columns:
        return feature[5:]
    for key in F.AGG_KEYS:  # <key>_<stat>_<value>: mean, last3, dev, vs_first
        for stat in ("mean", f"last{F.LAST_ROWS}", "dev", "vs_first"):
            prefix = f"{key}_{stat}_"
            if feature.startswith(prefix) and feature[len(prefix) :] in columns:
                return feature[len(prefix) :]
    return None


def column_kinds(columns: list[str]) -> tuple[list[str], list[str]]:
    """(numerical, categorical) by the contract's kinds; ``prediction`` is numerical."""
    kinds = {c.name: c.kind for t in C.TABLES for c in t.columns}
    categorical = [c for c in columns if kinds.get(c) == "str"]
    numerical = [c for c in columns if c not in categorical]
    return numerical, categorical


def sample_positions(n: int, rows: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded uniform sample of min(rows, n) out of n."""
    if rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


def read_rows(path: str, columns: list[str], positions: np.ndarray) -> pd.DataFrame:
    """The rows at sorted ``positions`` of a Parquet file, in ``columns`` it has, read a row batch at a time."""
    pf = pq.ParquetFile(path)
    cols = [c for c in pf.schema_arrow.names if c in set(columns)]
    parts, start = [], 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=cols):
        lo, hi = np.searchsorted(positions, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(positions[lo:hi] - start)))
        start += batch.num_rows
    table = pa.Table.from_batches(parts) if parts else None
    if table is None:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    return table.to_pandas()


def curated_sample(
    model: LoadedModel,
    paths: dict[str, str],
    tables: tuple[str, str],
    columns: list[str],
    rows: int,
    seed: int,
    dt_max: int | None,
    threads: int,
) -> Sample:
    """A scored sample of a curated transaction table (``tables`` = (transaction, identity)), restricted to
    TransactionDT <= ``dt_max`` when given."""
    tx, ident = (paths[t] for t in tables)
    dt = pq.read_table(tx, columns=[F.DT]).column(0).to_numpy()
    eligible = np.flatnonzero(dt <= dt_max) if dt_max is not None else np.arange(len(dt))
    if len(eligible) == 0:
        return Sample(pd.DataFrame(), 0, None)
    positions = eligible[sample_positions(len(eligible), rows, seed)]
    wanted = [*model.state.input_columns, C.KEY, F.DT]
    frame = read_rows(tx, wanted, positions)
    identity = pd.read_parquet(ident, columns=[c for c in pq.ParquetFile(ident).schema_arrow.names if c in wanted])
    identity = identity[identity[C.KEY].isin(frame[C.KEY])]
    frame = F.model_frame(frame, identity)
    span = (int(dt[eligible].min()), int(dt[eligible].max()))
    return Sample(scored(model, frame, columns, threads), len(eligible), span)


def reference_window(dt_path: str, spec: F.SplitSpec) -> tuple[int, int]:
    """[first TransactionDT, train_end] of the train table at ``dt_path`` under ``spec``: the train window."""
    dt = pq.read_table(dt_path, columns=[F.DT]).column(0).to_numpy()
    if len(dt) == 0:
        raise JobError(f"{dt_path} has no rows: the curated version has no training data")
    return int(dt.min()), spec.edges(int(dt.max()))["train_end"]


def scored(model: LoadedModel, frame: pd.DataFrame, columns: list[str], threads: int) -> pd.DataFrame:
    """The compared ``columns`` of ``frame`` and the model's scores of its rows."""
    out = frame[columns].copy()
    out[PREDICTION] = model.predict_frame(frame, threads)
    return out


# ---- inference samples --------------------------------------------------------------------------------------


def inference_keys(bucket: S3Bucket, today: date, days: int) -> list[str]:
    """The Parquet keys the scoring service wrote under inference/<date>/ for the last ``days`` days (today
    included), sorted: the identity of the current data."""
    out: list[str] = []
    for back in range(days):
        day = today - timedelta(days=back)
        out += [k for k in bucket.list_keys(layout.inference_prefix(f"{day:%Y-%m-%d}")) if k.endswith(".parquet")]
    return sorted(out)


def inference_sample(
    model: LoadedModel, bucket: S3Bucket, keys: list[str], columns: list[str], rows: int, seed: int, threads: int
) -> Sample:
    """A scored sample of the inference rows in ``keys`` (the service's input rows, re-scored by ``model``)."""
    parts = []
    for key in keys:
        obj = bucket.call(f"GetObject {key}", bucket.client.get_object, Key=key)
        parts.append(pd.read_parquet(io.BytesIO(obj["Body"].read())))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if frame.empty:
        return Sample(frame, 0, None)
    available = len(frame)
    frame = frame.iloc[sample_positions(available, rows, seed)].reset_index(drop=True)
    frame = _contract_typed(frame, model.state.input_columns)
    span = None
    if F.DT in frame and frame[F.DT].notna().any():
        span = (int(frame[F.DT].min()), int(frame[F.DT].max()))
    return Sample(scored(model, frame, columns, threads), available, span)


def _contract_typed(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """JSON-born columns as the curated tables type them: numbers as float64, text as object (None missing)."""
    kinds = {c.name: c.kind for t in C.TABLES for c in t.columns}
    out = {}
    for c in dict.fromkeys([*columns, C.KEY, F.DT]):
        if c not in frame:
            out[c] = pd.Series([None] * len(frame), dtype=object) if kinds.get(c) == "str" else np.nan
        elif kinds.get(c) == "str":
            out[c] = frame[c].astype(object).where(frame[c].notna(), None)
        else:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index)
