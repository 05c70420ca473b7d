"""The raw columns a ``FeatureState`` reads, from a pandas frame or from the rows of a JSON request.

Every feature is computed from a few reads of the input: ``num`` (one column as float64, NaN for missing, absent or
not a number), ``text`` (one column as an object array of values, None for missing or absent), ``numeric_block``
(many numeric columns at once as float32) and ``text_positions`` (where each value of some text columns sits in
its fitted ``ValueTable``; -1 for missing or not in the table).
``FrameColumns`` reads a DataFrame (training, batch scoring); ``RecordColumns`` reads a list of dicts as they come
out of a request body, without building a DataFrame (``pd.DataFrame`` of one 400-field row alone costs ~10 ms).
For the same rows both give the same values, so ``transform`` and ``transform_records`` share one definition of
each feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Up to this many values are looked up one by one in a dict (no pandas call overhead); more go through pd.Index.
SMALL_LOOKUP = 64


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    """A numeric column as float64 (NaN for missing or absent)."""
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _coerced(values: list) -> np.ndarray:
    """Python values as float64 the way ``pd.to_numeric(errors="coerce")`` reads them."""
    series = pd.Series(values, dtype=object)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class FrameColumns:
    """The input columns of a DataFrame."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.n = len(frame)

    def num(self, col: str) -> np.ndarray:
        return _num(self.frame, col)

    def text(self, col: str) -> np.ndarray:
        """A text column as an object array (None for missing or absent), whatever its pandas dtype."""
        if col not in self.frame:
            return np.full(self.n, None, dtype=object)
        s = self.frame[col]
        out = s.astype(object).to_numpy(dtype=object, copy=True)
        out[pd.isna(s).to_numpy()] = None
        return out

    def numeric_block(self, cols: list[str]) -> np.ndarray:
        """Many numeric columns at once as float32 (NaN for missing or absent): one conversion, not one per column;
        columns of another dtype (e.g. text from JSON) go one by one."""
        sub = self.frame.reindex(columns=cols)
        try:
            return sub.to_numpy(dtype=np.float32, na_value=np.nan)
        except (TypeError, ValueError):
            return np.column_stack([_num(sub, c) for c in cols]).astype(np.float32) if cols else np.empty((self.n, 0))

    def text_positions(self, tables: dict[str, ValueTable]) -> np.ndarray:
        """(rows, tables): each text column's values looked up in its table."""
        return _stacked([table.positions(self.text(col)) for col, table in tables.items()], self.n)


class RecordColumns:
    """The input columns of rows given as dicts (a field absent from a row is missing)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        self.n = len(rows)

    def num(self, col: str) -> np.ndarray:
        values = [r.get(col) for r in self.rows]
        try:
            return np.array(values, dtype=np.float64).reshape(self.n)
        except (TypeError, ValueError):
            return _coerced(values)

    def text(self, col: str) -> np.ndarray:
        out = np.empty(self.n, dtype=object)
        out[:] = [None if _is_missing(v) else v for v in (r.get(col) for r in self.rows)]
        return out

    def numeric_block(self, cols: list[str]) -> np.ndarray:
        data = [[r.get(c) for c in cols] for r in self.rows]
        try:
            return np.array(data, dtype=np.float32).reshape(self.n, len(cols))
        except (TypeError, ValueError):
            return np.column_stack([self.num(c) for c in cols]).astype(np.float32) if cols else np.empty((self.n, 0))

    def text_positions(self, tables: dict[str, ValueTable]) -> np.ndarray:
        # The row's own value is looked up: None and NaN are never in a table, so they give -1 as text() would.
        if self.n > SMALL_LOOKUP:
            return _stacked([table.positions(self.text(col)) for col, table in tables.items()], self.n)
        found = [[table.where.get(r.get(col), -1) for col, table in tables.items()] for r in self.rows]
        return np.array(found, dtype=np.intp).reshape(self.n, len(tables))


def _stacked(columns: list[np.ndarray], n: int) -> np.ndarray:
    return np.column_stack(columns) if columns else np.empty((n, 0), dtype=np.intp)


class ValueTable:
    """The distinct values of a fitted table (categories, frequency-table values) and their positions."""

    def __init__(self, values: list):
        self.index = pd.Index(values)
        self.where = {v: i for i, v in enumerate(values)}

    def positions(self, values: np.ndarray) -> np.ndarray:
        """Each value's position in the table, -1 where it is missing or not in the table."""
        if len(values) <= SMALL_LOOKUP:
            return np.array([self.where.get(v, -1) for v in values], dtype=np.intp).reshape(len(values))
        return self.index.get_indexer(values)
