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
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import ieee_contract as C
from .errors import JobError
from .feature_input import FrameColumns, RecordColumns, ValueTable
from .key_history import KeyHistory

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
AGG_VALUES = (
    "TransactionAmt", "amt_log", "C1", "C2", "C13", "C14", "dist1", "V45", "V87", "V258", "V294", "id_01",
    "email_mismatch", "m4_m2", "m6_f", "proxy", "id15_new",
)  # fmt: skip
# Keys ("uid" is built from card1, addr1 and the card's start day); card1 alone gets counts and amounts only.
AGG_KEYS = ("uid", "card1")
CARD_VALUES = ("TransactionAmt",)
# Rows inside the fitted window see the key's rows up to this many days before them, not up to the row: rows
# scored later (the holdout, the service) miss the key's rows since the fit (the gap, and the holdout so far:
# 7 + 30/2 days on average with the default split), so training rows are given the same staleness.
DEFAULT_LAG_DAYS = 22.0
LAST_ROWS = 3  # "recent behaviour": the key's last few earlier rows, against all its earlier rows
KEY_CHUNK_ROWS = 65536  # rows per pass of the key aggregates (their temporaries grow with rows x values x 3)


@dataclass(frozen=True)
class SplitSpec:
    """Sizes of the time split, in days of TransactionDT: holdout at the end, a dropped gap before it, and the
    validation slice (early stopping only) at the end of the train window."""

    holdout_days: float = 30.0
    gap_days: float = 7.0
    valid_days: float = 14.0

    def scoring_lag_days(self) -> float:
        """How stale, on average, the key history is for a holdout row: the gap plus half the holdout (the
        FeatureState's lag_days for training rows)."""
        return self.gap_days + self.holdout_days / 2

    def edges(self, end: int) -> dict[str, int]:
        """The split's boundaries in TransactionDT for data ending at ``end``: the train window is up to
        ``train_end`` (its last ``valid_days`` are the validation slice), the holdout after ``holdout_start``."""
        holdout_start = end - round(self.holdout_days * DAY)
        train_end = holdout_start - round(self.gap_days * DAY)
        valid_start = train_end - round(self.valid_days * DAY)
        return {"valid_start": valid_start, "train_end": train_end, "holdout_start": holdout_start, "end": end}

    def validate(self) -> str | None:
        for name, low in (("holdout_days", 1.0), ("gap_days", 0.0), ("valid_days", 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < low or value > 365:
                flag = "--" + name.replace("_", "-")
                return f"{flag} must be a number of days between {low:g} and 365, got {value!r}"
        return None


@dataclass
class TimeSplit:
    """The parts of a time split: row slices of the model frame (its columns, each with a fresh 0..n-1 index)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    edges: dict[str, int]
    history: pd.DataFrame  # the whole train window (train + valid): what a FeatureState is fitted on

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
    # Sort the transactions (only when they are not in order already: the raw files are) before the join, whose
    # left order it keeps: one copy of the wide table fewer at the peak (11.4 -> ~6 GiB at full scale).
    if not _in_time_order(transaction):
        transaction = transaction.sort_values([DT, C.KEY], kind="stable", ignore_index=True)
    ident = identity.drop(columns=[c for c in identity.columns if c in transaction.columns and c != C.KEY])
    return transaction.merge(ident, on=C.KEY, how="left", sort=False, validate="one_to_one")


def _in_time_order(frame: pd.DataFrame) -> bool:
    """Whether rows are sorted by (TransactionDT, TransactionID)."""
    dt = np.diff(frame[DT].to_numpy(dtype=np.int64))
    key = np.diff(frame[C.KEY].to_numpy(dtype=np.int64))
    return bool(np.all((dt > 0) | ((dt == 0) & (key > 0))))


def time_split(frame: pd.DataFrame, spec: SplitSpec) -> TimeSplit:
    """Split a time-ordered frame: train | valid | (gap, dropped) | holdout, by TransactionDT."""
    problem = spec.validate()
    if problem:
        raise JobError(problem)
    dt = frame[DT].to_numpy(dtype=np.int64)
    if len(dt) == 0:
        raise JobError("the dataset has no transactions to split")
    edges = spec.edges(int(dt.max()))
    valid_start, train_end, holdout_start = edges["valid_start"], edges["train_end"], edges["holdout_start"]
    # The frame is in time order (model_frame), so each part is a contiguous row range: positional slices, which
    # pandas can share with the frame instead of copying ~2 GB at full scale.
    if np.any(np.diff(dt) < 0):
        raise JobError("the frame is not sorted by TransactionDT; build it with model_frame()")
    cut = np.searchsorted(dt, [valid_start, train_end, holdout_start], side="right")
    parts = {
        "train": frame.iloc[: cut[0]],
        "valid": frame.iloc[cut[0] : cut[1]],
        "holdout": frame.iloc[cut[2] :],
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
    history = frame.iloc[: cut[1]]
    for part in (*parts.values(), history):
        part.index = pd.RangeIndex(len(part))  # the slice's own index object; the frame's is untouched
    return TimeSplit(parts["train"], parts["valid"], parts["holdout"], edges, history)


# ---- derived columns (row-local, no state) ----------------------------------------------------------------------


Columns = FrameColumns | RecordColumns


def _row_values(src: Columns) -> dict[str, np.ndarray]:
    """Derived row-local values the aggregates and features use."""
    p, r = src.text("P_emaildomain"), src.text("R_emaildomain")
    m4, m6, id23, id15 = (src.text(c) for c in ("M4", "M6", "id_23", "id_15"))
    r_present = np.array([x is not None for x in r], dtype=bool)
    mismatch = (r_present & (r != p)).astype(np.float64)
    amt = src.num("TransactionAmt")
    cents = np.round(amt * 1000) % 10
    values = {name: src.num(name) for name in AGG_VALUES if name in _CONTRACT_NUMERIC}
    values["email_mismatch"] = mismatch
    values["m4_m2"] = _flag(m4, "M2")
    values["m6_f"] = _flag(m6, "F")
    values["id15_new"] = _flag(id15, "New")
    values["proxy"] = np.array([x is not None for x in id23], dtype=np.float64)
    values["amt_decimals3"] = (cents != 0).astype(np.float64)
    values["amt_log"] = np.log1p(amt)
    return values


# Small helpers instead of np.where/np.nan_to_num with a scalar, which cost 5-15 us each on a one-row array.
def _nan_as(x: np.ndarray, fill: float) -> np.ndarray:
    """x with NaN replaced by fill."""
    out = x.copy()
    out[np.isnan(out)] = fill
    return out


def _masked(x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """x (a fresh array) with NaN where ``missing``."""
    x[missing] = np.nan
    return x


def _flag(text: np.ndarray, value: str) -> np.ndarray:
    """1.0 where text == value, 0.0 where it differs, NaN where missing."""
    return np.array([np.nan if x is None else float(x == value) for x in text])


def _uid_parts(src: Columns) -> dict[str, np.ndarray]:
    """Integer keys per row; NaN parts get their own code. Packed into one int64 per key."""
    card1 = _nan_as(src.num("card1"), -1).astype(np.int64) + 1  # < 2**20
    addr1 = _nan_as(src.num("addr1"), -1).astype(np.int64) + 1  # < 2**12
    day = src.num(DT) // DAY
    start = _nan_as(day - src.num("D1"), -(2**15)).astype(np.int64) + 2**15  # < 2**17
    return {"uid": (card1 << 30) | (addr1 << 17) | start, "card1": card1}


_CONTRACT_KIND = {
    c.name: c.kind for t in C.TABLES if t.name in ("train_transaction", "train_identity") for c in t.columns
}
_CONTRACT_NUMERIC = {n for n, k in _CONTRACT_KIND.items() if k in ("int", "float")}


# ---- the fitted state -------------------------------------------------------------------------------------------


def _key_values(key: str) -> tuple[str, ...]:
    return AGG_VALUES if key == "uid" else CARD_VALUES


@dataclass
class FeatureState:
    """Label-free state fitted on the train window: category codes, frequency tables and key histories."""

    categories: dict[str, list[str]]
    frequencies: dict[str, dict[str, list]]  # column -> {"values": sorted values, "shares": share of rows}
    histories: dict[str, KeyHistory] = field(repr=False)
    raw_numeric: list[str]
    fitted_rows: int
    fitted_dt_max: int
    lag_days: float = DEFAULT_LAG_DAYS
    _lookup: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # built once per state

    # ---- fitting ----

    @classmethod
    def fit(cls, history: pd.DataFrame, lag_days: float = DEFAULT_LAG_DAYS) -> FeatureState:
        """Fit on the train window (train + valid rows); labels, if present, are never read.

        ``lag_days``: rows at or before the last fitted time (the training rows) aggregate the key's rows more than
        this many days earlier; later rows aggregate every fitted row of their key (all earlier than them)."""
        src = FrameColumns(history)
        text_cols = [c for c in history.columns if _CONTRACT_KIND.get(c) == "str"]
        raw_numeric = [c for c in history.columns if c in _CONTRACT_NUMERIC and c not in NOT_FEATURES]
        categories = {}
        for col in text_cols:
            values = pd.unique(src.text(col))
            categories[col] = sorted(str(v) for v in values if v is not None)
        frequencies = {}
        for col in FREQUENCY_COLUMNS:
            if col in history:
                counts = pd.Series(_freq_values(src, col)).value_counts(dropna=True, sort=False).sort_index()
                frequencies[col] = {"values": counts.index.tolist(), "shares": (counts / max(len(history), 1)).tolist()}
        dt = src.num(DT).astype(np.int64)
        values = _row_values(src)
        histories = {
            name: KeyHistory.build(key, dt, {v: values[v] for v in _key_values(name)})
            for name, key in _uid_parts(src).items()
        }
        dt_max = int(dt.max()) if len(dt) else 0
        return cls(categories, frequencies, histories, raw_numeric, len(history), dt_max, float(lag_days))

    def extend(self, frame: pd.DataFrame) -> FeatureState:
        """The state with ``frame``'s rows added to the key histories (label-free: what a scoring service learns
        from the transactions it sees). Encoders stay as fitted; the lag still applies only to rows inside the
        fitted window, so a later row now aggregates every earlier row of its key, the added ones included."""
        src = FrameColumns(frame)
        dt = src.num(DT).astype(np.int64)
        values = _row_values(src)
        histories = {
            name: self.histories[name].extend(key, dt, {v: values[v] for v in _key_values(name)})
            for name, key in _uid_parts(src).items()
        }
        return replace(self, histories=histories)

    # ---- transforming ----

    @property
    def categorical_features(self) -> list[str]:
        return sorted(self.categories)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns transform reads (everything else in a frame is ignored)."""
        cols = set(self.raw_numeric) | set(self.categories) | set(FREQUENCY_COLUMNS)
        cols |= {DT, "TransactionAmt", "card1", "addr1", "D1", "P_emaildomain", "R_emaildomain"}
        cols |= {"M4", "M6", "id_15", "id_23"}
        cols |= {v for v in AGG_VALUES if v in _CONTRACT_NUMERIC}
        return sorted(c for c in cols if c in _CONTRACT_KIND)

    @property
    def feature_names(self) -> list[str]:
        return list(self._derived_names()) + self.raw_numeric + self.categorical_features

    def _derived_names(self) -> list[str]:
        names = ["hour", "amt_decimals3", "amt_cents", "email_mismatch", "m4_m2"]
        names += [f"freq_{c}" for c in FREQUENCY_COLUMNS if c in self.frequencies]
        for key in self.histories:
            names += self._key_feature_names(key)
        return names

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Features of any frame with the contract's columns (one row or many), float32, in feature_names order.

        Aggregates use only fitted rows strictly earlier than each row; nothing is computed across the rows of
        ``frame`` itself, so a row's features do not depend on which other rows are scored with it."""
        return pd.DataFrame(self._features(FrameColumns(frame)), columns=self.feature_names, copy=False)

    def transform_records(self, rows: list[dict]) -> np.ndarray:
        """``transform(pd.DataFrame(rows)).to_numpy()`` without pandas: the scoring service's path (one JSON row in
        well under a millisecond). Fields absent from a row, None and NaN are missing values."""
        return self._features(RecordColumns(rows))

    def _features(self, src: Columns) -> np.ndarray:
        """The feature block of any column source, (rows, feature_names) float32."""
        layout = self._layout()
        # One float32 block filled a group of columns at a time: no float64 copy of the whole input at any time.
        block = np.empty((src.n, len(layout["names"])), dtype=np.float32, order="F")
        src.prefetch(layout["numeric_reads"])
        dt = src.num(DT)
        values = _row_values(src)
        amt = values["TransactionAmt"]
        row_local = [
            (dt % DAY) // 3600,
            values["amt_decimals3"],
            np.round(amt - np.floor(amt), 3),
            values["email_mismatch"],
            values["m4_m2"],
        ]
        block[:, layout["row_local"]] = np.array(row_local).T
        text_freq, num_freq = layout["text_frequencies"], layout["num_frequencies"]
        pos = src.text_positions({col: table for col, (table, _) in text_freq.items()})
        # shares[-1] is 0.0: a value not in the table (or missing) has share 0.
        freq = [shares[pos[:, j]] for j, (_, shares) in enumerate(text_freq.values())]
        freq += [shares[table.positions(src.num(col))] for col, (table, shares) in num_freq.items()]
        block[:, layout["freq"]] = np.array(freq).T
        dt_i = _nan_as(dt, 0).astype(np.int64)
        seen_before = np.where(dt_i <= self.fitted_dt_max, dt_i - round(self.lag_days * DAY), dt_i)
        for name, key in _uid_parts(src).items():
            if src.n <= KEY_CHUNK_ROWS:
                block[:, layout["key", name]] = self._key_features(name, key, dt_i, seen_before, values)
                continue
            for lo in range(0, src.n, KEY_CHUNK_ROWS):  # bounded temporaries: (3, rows, values) float64 per chunk
                rows = slice(lo, lo + KEY_CHUNK_ROWS)
                part = {v: values[v][rows] for v in _key_values(name)}
                x = self._key_features(name, key[rows], dt_i[rows], seen_before[rows], part)
                block[rows, layout["key", name]] = x
        block[:, layout["raw"]] = src.numeric_block(self.raw_numeric)
        codes = src.text_positions(layout["categories"])  # -1: missing or not seen in the fit
        block[:, layout["cat"]] = _masked(codes.astype(np.float64), codes < 0)
        return block

    def _layout(self) -> dict:
        """Column positions of each feature group and the lookup tables, built once per state."""
        if not self._lookup:
            column = {name: i for i, name in enumerate(self.feature_names)}

            def at(names: list[str]) -> np.ndarray:
                return np.array([column[n] for n in names], dtype=np.intp)

            layout: dict = {"names": self.feature_names}
            layout["row_local"] = at(["hour", "amt_decimals3", "amt_cents", "email_mismatch", "m4_m2"])
            layout["text_frequencies"], layout["num_frequencies"] = {}, {}
            for col, table in self.frequencies.items():
                group = "text_frequencies" if _CONTRACT_KIND.get(col) == "str" else "num_frequencies"
                layout[group][col] = (ValueTable(table["values"]), np.asarray(table["shares"] + [0.0]))
            layout["freq"] = at([f"freq_{c}" for c in (*layout["text_frequencies"], *layout["num_frequencies"])])
            for name, hist in self.histories.items():
                layout["key", name] = at(self._key_feature_names(name))
                order = [hist.names.index(v) for v in _key_values(name)]
                layout["values", name] = None if order == list(range(len(hist.names))) else np.array(order)
            layout["raw"] = at(self.raw_numeric)
            layout["categories"] = {col: ValueTable(self.categories[col]) for col in self.categorical_features}
            layout["cat"] = at(self.categorical_features)
            reads = [DT, "TransactionAmt", "card1", "addr1", "D1", *layout["num_frequencies"]]
            reads += [v for v in AGG_VALUES if v in _CONTRACT_NUMERIC]
            layout["numeric_reads"] = list(dict.fromkeys(reads))
            self._lookup.update(layout)
        return self._lookup

    def _key_feature_names(self, name: str) -> list[str]:
        names = [f"{name}_n_prev", f"{name}_days_since_first"]
        for v in _key_values(name):
            names += [f"{name}_mean_{v}", f"{name}_last{LAST_ROWS}_{v}", f"{name}_dev_{v}", f"{name}_vs_first_{v}"]
        return [*names, f"{name}_amt_ratio"]

    def _key_features(self, name: str, key, dt, seen_before, values) -> np.ndarray:
        """(rows, _key_feature_names) of one key: every aggregated value at once, one gather per window."""
        hist = self.histories[name]
        start, end, _ = hist.lookup(key, seen_before)
        n_prev = (end - start).astype(np.float64)
        has = n_prev > 0
        first_dt = hist.dt[np.minimum(start, len(hist.dt) - 1)] if len(hist.dt) else np.zeros(len(dt))
        # No "time since the last row" or "rows in the last days": for rows scored after the state was fitted
        # (the holdout, the service) the key's latest rows are not in the state, so those would be stale.
        days_since_first = _masked((dt - first_dt) / DAY, ~has)
        last = np.maximum(end - LAST_ROWS, start)
        first = np.minimum(start + LAST_ROWS, end)  # the key's first rows: its behaviour before any compromise
        # np.array of a list of arrays rather than np.stack/np.column_stack: one call, not one per array.
        own = np.array([values[v] for v in _key_values(name)]).T  # (rows, values)
        # The three windows of every row in one gather: all earlier rows, the last few, the first few.
        means = hist.window_means(np.array([start, last, start]), np.array([end, end, first]))
        order = self._lookup["values", name]
        if order is not None:
            means = means[:, :, order]
        mean = means[0]
        recent = means[1] - mean
        early = own - means[2]
        # Per value: mean, last rows, deviation, against the first rows (the order of _key_feature_names).
        per_value = np.array([mean, recent, own - mean, early]).transpose(1, 2, 0).reshape(len(dt), 4 * own.shape[1])
        amt_ratio = values["TransactionAmt"] / mean[:, _key_values(name).index("TransactionAmt")]
        return np.column_stack([n_prev, days_since_first, per_value, amt_ratio])

    # ---- persistence ----

    def settings(self) -> dict:
        return {
            "version": FEATURES_VERSION,
            "not_features": list(NOT_FEATURES),
            "frequency_columns": list(FREQUENCY_COLUMNS),
            "agg_values": list(AGG_VALUES),
            "agg_keys": list(AGG_KEYS),
            "card_values": list(CARD_VALUES),
            "last_rows": LAST_ROWS,
            "lag_days": self.lag_days,
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
            meta["settings"]["lag_days"],
        )


def _freq_values(src: Columns, col: str) -> np.ndarray:
    """A column's values for the frequency tables: str for text columns, float for numbers (NaN: missing)."""
    if _CONTRACT_KIND.get(col) == "str":
        return src.text(col)
    return src.num(col)
