"""The fitted rows of one client key (``uid`` or ``card1``), for "aggregates over this key's earlier rows".

``KeyHistory`` keeps the rows sorted by (key, TransactionDT) with running sums and counts of each aggregated value,
so the mean of a value over any run of a key's rows is two lookups. The sums and counts are one 2-D array each
(row x value): a query row's windows for every value come out of one gather, which keeps a one-row lookup (the
scoring service) to a few dozen numpy calls; ``sums``/``counts`` give each value's column by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# Queries of at most this many rows binary-search each row's slice on its own (one call per row); larger ones run
# the vectorised search below, whose cost per call is a handful of numpy operations per halving.
SMALL_QUERY = 16


@dataclass
class KeyHistory:
    """The fitted rows of one key, sorted by (key, TransactionDT), with running sums for O(log n) lookups of
    "aggregates over this key's rows strictly earlier than t"."""

    keys: np.ndarray  # int64 sorted unique keys
    starts: np.ndarray  # int64 position of each key's first row in the sorted rows
    dt: np.ndarray  # int64 TransactionDT of the sorted rows
    sums: dict[str, np.ndarray]  # value -> cumulative sum (NaN as 0), length rows + 1
    counts: dict[str, np.ndarray]  # value -> cumulative count of non-NaN, length rows + 1
    names: tuple[str, ...] = field(init=False)  # the values, in the column order of sum_table / count_table
    sum_table: np.ndarray = field(init=False, repr=False)  # (rows + 1, values) float64
    count_table: np.ndarray = field(init=False, repr=False)  # (rows + 1, values) int64
    stops: np.ndarray = field(init=False, repr=False)  # int64 end of each key's rows (the next key's start)

    def __post_init__(self) -> None:
        self.stops = np.append(self.starts, len(self.dt))[1:]
        # One 2-D array per kind; the per-name entries become views of its columns (no second copy).
        self.names = tuple(self.sums)
        rows = len(self.dt) + 1
        self.sum_table = np.empty((rows, len(self.names)), dtype=np.float64)
        self.count_table = np.empty((rows, len(self.names)), dtype=np.int64)
        for j, name in enumerate(self.names):
            self.sum_table[:, j] = self.sums[name]
            self.count_table[:, j] = self.counts[name]
        self.sums = {name: self.sum_table[:, j] for j, name in enumerate(self.names)}
        self.counts = {name: self.count_table[:, j] for j, name in enumerate(self.names)}

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

    def extend(self, key: np.ndarray, dt: np.ndarray, values: dict[str, np.ndarray]) -> KeyHistory:
        """A new history with these rows added (the stored rows' values are recovered from the running sums)."""
        key_rows = np.repeat(self.keys, np.diff(np.append(self.starts, len(self.dt))))
        merged = {}
        for name in self.sums:
            ok = np.diff(self.counts[name]) > 0
            merged[name] = np.concatenate([np.where(ok, np.diff(self.sums[name]), np.nan), values[name]])
        return KeyHistory.build(np.concatenate([key_rows, key]), np.concatenate([self.dt, dt]), merged)

    def lookup(self, key: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each query row: (start, end) of its key's rows with TransactionDT < dt, and whether the key is known."""
        i = np.searchsorted(self.keys, key)
        i_c = np.minimum(i, len(self.keys) - 1)
        known = (i < len(self.keys)) & (self.keys[i_c] == key)
        start = self.starts[i_c] * known  # 0 for an unknown key (an empty slice)
        stop = self.stops[i_c] * known
        # Within [start, stop) the dt are sorted: binary search each row's slice.
        end = start + count_below(self.dt, start, stop, dt)
        return start, end * known, known

    def window_means(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(*lo.shape, values): mean of each value over the sorted rows [lo, hi) (NaN values skipped; NaN when
        none). ``lo``/``hi`` may stack several windows per row (one gather for all of them)."""
        s = self.sum_table[hi] - self.sum_table[lo]
        c = self.count_table[hi] - self.count_table[lo]
        mean = s / np.maximum(c, 1)
        mean[c == 0] = np.nan
        return mean

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


def count_below(sorted_dt: np.ndarray, start: np.ndarray, stop: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Number of entries of sorted_dt[start:stop] that are < dt, per row (a per-slice binary search)."""
    if len(dt) <= SMALL_QUERY:
        found = [np.searchsorted(sorted_dt[a:b], t, side="left") for a, b, t in zip(start, stop, dt, strict=True)]
        return np.array(found, dtype=np.int64).reshape(len(dt))
    lo, hi = start.copy(), stop.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo - start
        mid = (lo + hi) // 2
        below = active & (sorted_dt[np.minimum(mid, len(sorted_dt) - 1)] < dt)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)
