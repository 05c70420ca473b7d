"""Model features of the train stage: the time split and the label-free ``FeatureState``.

Everything a model in service could know: the state is fitted on the train window only (never the holdout), holds
no labels, and turns any later frame -- the holdout, a newer dataset's holdout, one JSON transaction in a scoring
service -- into features by lookups alone (no refitting, no groupby over the frame being scored).

Client-key aggregates use the competition winners' ``uid = card1 + addr1 + (day - D1)`` (the card's start day),
only through aggregates (the uid itself is never a feature). A row's aggregates are computed over the fitted rows
of its key that are *strictly earlier* than the row (``TransactionDT`` smaller): for a training row that is its
causal past, for a holdout row every fitted row (all of them earlier). One definition, one code path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import ieee_contract as C
from .errors import JobError

DAY = 86400
DT = "TransactionDT"
FEATURES_VERSION = "1"
STATE_FILE = "feature_state.json"

# Columns never used as raw features: the key, the label, and the absolute time (it only says "when", which
# does not carry over to a later period; the hour of day does).
NOT_FEATURES = (C.KEY, C.LABEL, DT)
# Frequency encodings (share of the fitted rows with the same value).
FREQUENCY_COLUMNS = (
    "card1", "card2", "card3", "card5", "addr1", "addr2", "P_emaildomain", "R_emaildomain",
    "DeviceInfo", "id_30", "id_31", "id_33",
)  # fmt: skip
# Values aggregated per key over the key's earlier rows (mean; amount also std and recent windows).
AGG_VALUES = ("TransactionAmt", "C1", "C2", "C13", "C14", "dist1", "D15", "V258", "V294", "email_mismatch", "m4_m2")
# Keys: name -> the columns they combine ("uid" is built from card1, addr1 and the card's start day).
AGG_KEYS = ("uid", "card1", "card1_addr1")
RECENT_DAYS = (1.0, 7.0)


@dataclass(frozen=True)
class SplitSpec:
    """Sizes of the time split, in days of TransactionDT: holdout at the end, a dropped gap before it, and the
    validation slice (early stopping only) at the end of the train window."""

    holdout_days: float = 30.0
    gap_days: float = 7.0
    valid_days: float = 14.0

    def validate(self) -> str | None:
        for name, low in (("holdout_days", 1.0), ("gap_days", 0.0), ("valid_days", 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < low or value > 365:
                flag = "--" + name.replace("_", "-")
                return f"{flag} must be a number of days between {low:g} and 365, got {value!r}"
        return None


@dataclass
class TimeSplit:
    """The parts of a time split (frames with their original columns, index reset)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    edges: dict[str, int]

    @property
    def history(self) -> pd.DataFrame:
        """The whole train window (train + valid): what a FeatureState is fitted on."""
        return pd.concat([self.train, self.valid], ignore_index=True)

    def bounds(self) -> dict:
        parts = {"train": self.train, "valid": self.valid, "holdout": self.holdout}
        out: dict = {"edges": dict(self.edges)}
        for name, part in parts.items():
            frauds = int(part[C.LABEL].sum()) if C.LABEL in part else None
            out[name] = {
                "rows": len(part),
                "frauds": frauds,
                "dt_min": int(part[DT].min()) if len(part) else None,
                "dt_max": int(part[DT].max()) if len(part) else None,
            }
        return out


def model_frame(transaction: pd.DataFrame, identity: pd.DataFrame) -> pd.DataFrame:
    """Transactions with their identity row (left join on TransactionID), in time order (stable), index reset."""
    ident = identity.drop(columns=[c for c in identity.columns if c in transaction.columns and c != C.KEY])
    frame = transaction.merge(ident, on=C.KEY, how="left", sort=False, validate="one_to_one")
    frame = frame.sort_values([DT, C.KEY], kind="stable").reset_index(drop=True)
    return frame


def time_split(frame: pd.DataFrame, spec: SplitSpec) -> TimeSplit:
    """Split a time-ordered frame: train | valid | (gap, dropped) | holdout, by TransactionDT."""
    problem = spec.validate()
    if problem:
        raise JobError(problem)
    dt = frame[DT].to_numpy(dtype=np.int64)
    if len(dt) == 0:
        raise JobError("the dataset has no transactions to split")
    end = int(dt.max())
    holdout_start = end - round(spec.holdout_days * DAY)
    train_end = holdout_start - round(spec.gap_days * DAY)
    valid_start = train_end - round(spec.valid_days * DAY)
    edges = {"valid_start": valid_start, "train_end": train_end, "holdout_start": holdout_start, "end": end}
    parts = {
        "train": frame[dt <= valid_start],
        "valid": frame[(dt > valid_start) & (dt <= train_end)],
        "holdout": frame[dt > holdout_start],
    }
    hints = {
        "train": "--holdout-days, --gap-days or --valid-days",
        "valid": "--valid-days",
        "holdout": "--holdout-days",
    }
    for name, part in parts.items():
        if len(part) == 0:
            raise JobError(f"the {name} part of the time split is empty; change {hints[name]}")
        if name != "train" and C.LABEL in part and int(part[C.LABEL].sum()) == 0:
            raise JobError(
                f"the {name} part of the time split ({len(part)} rows) has no fraud rows to evaluate on; "
                f"make it larger with {hints[name]}"
            )
    parts = {k: v.reset_index(drop=True) for k, v in parts.items()}
    return TimeSplit(parts["train"], parts["valid"], parts["holdout"], edges)


# ---- derived columns (row-local, no state) ----------------------------------------------------------------------


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    """A numeric column as float64 (NaN for missing or absent)."""
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _text(frame: pd.DataFrame, col: str) -> np.ndarray:
    """A text column as an object array of str (None for missing or absent), whatever its pandas dtype."""
    if col not in frame:
        return np.full(len(frame), None, dtype=object)
    s = frame[col]
    out = s.astype(object).to_numpy(dtype=object, copy=True)
    out[pd.isna(s).to_numpy()] = None
    return out


def _row_values(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Derived row-local values the aggregates and features use."""
    p, r = _text(frame, "P_emaildomain"), _text(frame, "R_emaildomain")
    m4 = _text(frame, "M4")
    r_present = np.array([x is not None for x in r], dtype=bool)
    mismatch = (r_present & (r != p)).astype(np.float64)
    m4_m2 = np.array([np.nan if x is None else float(x == "M2") for x in m4])
    amt = _num(frame, "TransactionAmt")
    cents = np.round(amt * 1000) % 10
    values = {name: _num(frame, name) for name in AGG_VALUES if name in _CONTRACT_NUMERIC}
    values["email_mismatch"] = mismatch
    values["m4_m2"] = m4_m2
    values["amt_decimals3"] = (cents != 0).astype(np.float64)
    values["amt_log"] = np.log1p(amt)
    return values


def _uid_parts(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Integer keys per row; NaN parts get their own code. Packed into one int64 per key."""
    card1 = np.nan_to_num(_num(frame, "card1"), nan=-1).astype(np.int64) + 1  # < 2**20
    addr1 = np.nan_to_num(_num(frame, "addr1"), nan=-1).astype(np.int64) + 1  # < 2**12
    day = _num(frame, DT) // DAY
    start = np.nan_to_num(day - _num(frame, "D1"), nan=-(2**15)).astype(np.int64) + 2**15  # < 2**17
    return {
        "uid": (card1 << 30) | (addr1 << 17) | start,
        "card1": card1,
        "card1_addr1": (card1 << 12) | addr1,
    }


_CONTRACT_KIND = {
    c.name: c.kind for t in C.TABLES if t.name in ("train_transaction", "train_identity") for c in t.columns
}
_CONTRACT_NUMERIC = {n for n, k in _CONTRACT_KIND.items() if k in ("int", "float")}


# ---- the fitted state -------------------------------------------------------------------------------------------


@dataclass
class KeyHistory:
    """The fitted rows of one key, sorted by (key, TransactionDT), with running sums for O(log n) lookups of
    "aggregates over this key's rows strictly earlier than t"."""

    keys: np.ndarray  # int64 sorted unique keys
    starts: np.ndarray  # int64 position of each key's first row in the sorted rows
    dt: np.ndarray  # int64 TransactionDT of the sorted rows
    sums: dict[str, np.ndarray]  # value -> cumulative sum (NaN as 0), length rows + 1
    counts: dict[str, np.ndarray]  # value -> cumulative count of non-NaN, length rows + 1

    @classmethod
    def build(cls, key: np.ndarray, dt: np.ndarray, values: dict[str, np.ndarray]) -> KeyHistory:
        order = np.lexsort((dt, key))
        k, t = key[order], dt[order]
        keys, starts = np.unique(k, return_index=True)
        sums, counts = {}, {}
        for name, v in values.items():
            v = v[order]
            ok = ~np.isnan(v)
            sums[name] = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
            counts[name] = np.concatenate([[0], np.cumsum(ok)]).astype(np.int64)
        return cls(keys.astype(np.int64), starts.astype(np.int64), t.astype(np.int64), sums, counts)

    def lookup(self, key: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query row: (start, end) of its key's rows with TransactionDT < dt, and whether the key is known."""
        i = np.searchsorted(self.keys, key)
        i_c = np.minimum(i, len(self.keys) - 1)
        known = (i < len(self.keys)) & (self.keys[i_c] == key)
        start = np.where(known, self.starts[i_c], 0)
        stop = np.where(known, np.append(self.starts, len(self.dt))[i_c + 1], 0)
        # Within [start, stop) the dt are sorted: binary search each row's slice, vectorised through an offset key.
        end = start + _count_below(self.dt, start, stop, dt)
        return start, np.where(known, end, 0), known

    def to_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = {"dt": self.dt}
        rows.update({f"sum_{k}": v[1:] for k, v in self.sums.items()})
        rows.update({f"n_{k}": v[1:] for k, v in self.counts.items()})
        return pd.DataFrame({"key": self.keys, "start": self.starts}), pd.DataFrame(rows)

    @classmethod
    def from_frames(cls, keys: pd.DataFrame, rows: pd.DataFrame) -> KeyHistory:
        names = [c[4:] for c in rows.columns if c.startswith("sum_")]
        sums = {n: np.concatenate([[0.0], rows[f"sum_{n}"].to_numpy(np.float64)]) for n in names}
        counts = {n: np.concatenate([[0], rows[f"n_{n}"].to_numpy(np.int64)]) for n in names}
        return cls(
            keys["key"].to_numpy(np.int64),
            keys["start"].to_numpy(np.int64),
            rows["dt"].to_numpy(np.int64),
            sums,
            counts,
        )


def _count_below(sorted_dt: np.ndarray, start: np.ndarray, stop: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Number of entries of sorted_dt[start:stop] that are < dt, per row (a vectorised per-slice binary search)."""
    lo, hi = start.copy(), stop.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo - start
        mid = (lo + hi) // 2
        below = active & (sorted_dt[np.minimum(mid, len(sorted_dt) - 1)] < dt)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)


@dataclass
class FeatureState:
    """Label-free state fitted on the train window: category codes, frequency tables and key histories."""

    categories: dict[str, list[str]]
    frequencies: dict[str, dict[str, list]]  # column -> {"values": sorted values, "shares": share of rows}
    histories: dict[str, KeyHistory] = field(repr=False)
    raw_numeric: list[str]
    fitted_rows: int
    fitted_dt_max: int

    # ---- fitting ----

    @classmethod
    def fit(cls, history: pd.DataFrame) -> FeatureState:
        """Fit on the train window (train + valid rows); labels, if present, are never read."""
        text_cols = [c for c in history.columns if _CONTRACT_KIND.get(c) == "str"]
        raw_numeric = [c for c in history.columns if c in _CONTRACT_NUMERIC and c not in NOT_FEATURES]
        categories = {}
        for col in text_cols:
            values = pd.unique(_text(history, col))
            categories[col] = sorted(str(v) for v in values if v is not None)
        frequencies = {}
        for col in FREQUENCY_COLUMNS:
            if col in history:
                counts = _freq_values(history, col).value_counts(dropna=True, sort=False).sort_index()
                frequencies[col] = {"values": counts.index.tolist(), "shares": (counts / max(len(history), 1)).tolist()}
        dt = _num(history, DT).astype(np.int64)
        values = _row_values(history)
        agg = {v: values[v] for v in AGG_VALUES}
        histories = {name: KeyHistory.build(key, dt, agg) for name, key in _uid_parts(history).items()}
        return cls(categories, frequencies, histories, raw_numeric, len(history), int(dt.max()) if len(dt) else 0)

    # ---- transforming ----

    @property
    def categorical_features(self) -> list[str]:
        return sorted(self.categories)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns transform reads (everything else in a frame is ignored)."""
        cols = set(self.raw_numeric) | set(self.categories) | set(FREQUENCY_COLUMNS)
        cols |= {DT, "TransactionAmt", "card1", "addr1", "D1", "P_emaildomain", "R_emaildomain", "M4"}
        cols |= {v for v in AGG_VALUES if v in _CONTRACT_NUMERIC}
        return sorted(c for c in cols if c in _CONTRACT_KIND)

    @property
    def feature_names(self) -> list[str]:
        return list(self._derived_names()) + self.raw_numeric + self.categorical_features

    def _derived_names(self) -> list[str]:
        names = ["hour", "amt_decimals3", "amt_cents", "email_mismatch", "m4_m2"]
        names += [f"freq_{c}" for c in FREQUENCY_COLUMNS if c in self.frequencies]
        for key in self.histories:
            names += [f"{key}_n_prev", f"{key}_days_since_first", f"{key}_hours_since_last"]
            names += [f"{key}_n_{d:g}d" for d in RECENT_DAYS]
            names += [f"{key}_mean_{v}" for v in AGG_VALUES]
            names += [f"{key}_amt_ratio", f"{key}_amt_ratio_{RECENT_DAYS[-1]:g}d", f"{key}_c1_diff"]
        return names

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Features of any frame with the contract's columns (one row or many), float32, in feature_names order.

        Aggregates use only fitted rows strictly earlier than each row; nothing is computed across the rows of
        ``frame`` itself, so a row's features do not depend on which other rows are scored with it."""
        n = len(frame)
        out: dict[str, np.ndarray] = {}
        dt = _num(frame, DT)
        values = _row_values(frame)
        amt = _num(frame, "TransactionAmt")
        out["hour"] = (dt % DAY) // 3600
        out["amt_decimals3"] = values["amt_decimals3"]
        out["amt_cents"] = np.round(amt - np.floor(amt), 3)
        out["email_mismatch"] = values["email_mismatch"]
        out["m4_m2"] = values["m4_m2"]
        for col, table in self.frequencies.items():
            pos = pd.Index(table["values"]).get_indexer(_freq_values(frame, col))
            out[f"freq_{col}"] = np.where(pos >= 0, np.asarray(table["shares"] + [0.0])[pos], 0.0)
        dt_i = np.nan_to_num(dt, nan=0).astype(np.int64)
        for name, key in _uid_parts(frame).items():
            out.update(self._key_features(name, self.histories[name], key, dt_i, values))
        for col in self.raw_numeric:
            out[col] = _num(frame, col)
        for col in self.categorical_features:
            codes = pd.Categorical(_text(frame, col), categories=self.categories[col]).codes  # -1: missing/unknown
            out[col] = np.where(codes >= 0, codes, np.nan)
        names = self.feature_names
        return pd.DataFrame({k: np.asarray(out[k], dtype=np.float32) for k in names}, index=pd.RangeIndex(n))

    def _key_features(self, name: str, hist: KeyHistory, key, dt, values) -> dict[str, np.ndarray]:
        start, end, _ = hist.lookup(key, dt)
        n_prev = (end - start).astype(np.float64)
        has = n_prev > 0
        first_dt = hist.dt[np.minimum(start, len(hist.dt) - 1)] if len(hist.dt) else np.zeros(len(dt))
        last_dt = hist.dt[np.maximum(end - 1, 0)] if len(hist.dt) else np.zeros(len(dt))
        out = {
            f"{name}_n_prev": n_prev,
            f"{name}_days_since_first": np.where(has, (dt - first_dt) / DAY, np.nan),
            f"{name}_hours_since_last": np.where(has, (dt - last_dt) / 3600, np.nan),
        }
        means = {}
        for v in AGG_VALUES:
            s = hist.sums[v][end] - hist.sums[v][start]
            c = hist.counts[v][end] - hist.counts[v][start]
            means[v] = np.where(c > 0, s / np.maximum(c, 1), np.nan)
            out[f"{name}_mean_{v}"] = means[v]
        for d in RECENT_DAYS:
            _, r_end, _ = hist.lookup(key, dt - int(d * DAY))
            out[f"{name}_n_{d:g}d"] = (end - np.maximum(r_end, start)).astype(np.float64)
        r_end_last = r_end  # window of the longest recent period
        lo = np.maximum(r_end_last, start)
        s = hist.sums["TransactionAmt"][end] - hist.sums["TransactionAmt"][lo]
        c = hist.counts["TransactionAmt"][end] - hist.counts["TransactionAmt"][lo]
        recent_mean = np.where(c > 0, s / np.maximum(c, 1), np.nan)
        amt = values["TransactionAmt"]
        out[f"{name}_amt_ratio"] = amt / means["TransactionAmt"]
        out[f"{name}_amt_ratio_{RECENT_DAYS[-1]:g}d"] = recent_mean / means["TransactionAmt"]
        out[f"{name}_c1_diff"] = values["C1"] - means["C1"]
        return out

    # ---- persistence ----

    def settings(self) -> dict:
        return {
            "version": FEATURES_VERSION,
            "not_features": list(NOT_FEATURES),
            "frequency_columns": list(FREQUENCY_COLUMNS),
            "agg_values": list(AGG_VALUES),
            "agg_keys": list(AGG_KEYS),
            "recent_days": list(RECENT_DAYS),
        }

    def fingerprint(self) -> str:
        """Stable hash of the feature code's settings (not of the fitted values): equal code, equal fingerprint."""
        text = json.dumps(self.settings(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def save(self, directory: str) -> list[str]:
        """Write the state as JSON + Parquet (no pickle) into ``directory``; returns the file paths written."""
        os.makedirs(directory, exist_ok=True)
        paths = []
        for name, hist in self.histories.items():
            keys, rows = hist.to_frames()
            for part, df in (("keys", keys), ("rows", rows)):
                path = os.path.join(directory, f"history_{name}_{part}.parquet")
                df.to_parquet(path, index=False)
                paths.append(path)
        meta = {
            "settings": self.settings(),
            "categories": self.categories,
            "frequencies": self.frequencies,
            "raw_numeric": self.raw_numeric,
            "histories": list(self.histories),
            "fitted_rows": self.fitted_rows,
            "fitted_dt_max": self.fitted_dt_max,
        }
        path = os.path.join(directory, STATE_FILE)
        with open(path, "w") as f:
            json.dump(meta, f, sort_keys=True)
        return [path, *paths]

    @classmethod
    def load(cls, directory: str) -> FeatureState:
        with open(os.path.join(directory, STATE_FILE)) as f:
            meta = json.load(f)
        if meta["settings"]["version"] != FEATURES_VERSION:
            raise JobError(
                f"feature state in {directory} is version {meta['settings']['version']}, this code reads "
                f"version {FEATURES_VERSION}; retrain the model"
            )
        histories = {}
        for name in meta["histories"]:
            keys = pd.read_parquet(os.path.join(directory, f"history_{name}_keys.parquet"))
            rows = pd.read_parquet(os.path.join(directory, f"history_{name}_rows.parquet"))
            histories[name] = KeyHistory.from_frames(keys, rows)
        return cls(
            meta["categories"],
            meta["frequencies"],
            histories,
            meta["raw_numeric"],
            meta["fitted_rows"],
            meta["fitted_dt_max"],
        )


def _freq_values(frame: pd.DataFrame, col: str) -> pd.Series:
    """A column's values for the frequency tables: str for text columns, float for numbers (NaN: missing)."""
    if _CONTRACT_KIND.get(col) == "str":
        return pd.Series(_text(frame, col), dtype=object)
    return pd.Series(_num(frame, col))
