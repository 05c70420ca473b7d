"""Curate one raw IEEE-CIS file: parse, validate against the ``ieee_schema`` contract, write the valid rows
to Parquet and the rejected ones to a quarantine CSV (``curate_file``). No AWS here: the ingest job downloads
the files and publishes what this writes.

Rows and files
    A *file* is rejected, and the job fails before anything is written to the bucket, when it is empty, not
    text, compressed, truncated (no line break at the end), or its header does not match the contract (missing,
    unexpected, duplicated or reordered columns), or when more than ``--max-bad-fraction`` of its rows are bad
    (bad / rows > the fraction: a file with exactly 5 % bad rows passes the default 0.05).
    A *row* is quarantined when it has the wrong number of fields, a value that is not a number in a numeric
    column, an empty required value, a value outside its domain, a ``TransactionID`` seen earlier in the file,
    or (identity and submission rows) a ``TransactionID`` that is not a valid row of the matching transaction
    file, or a byte sequence that is not UTF-8 in any field (``<column>: not valid UTF-8``; the quarantine CSV
    shows the bytes as ``\\xNN`` escapes).

Speed and memory
    Each file is streamed: ``pyarrow.csv.open_csv`` parses 16 MiB blocks straight into the contract's types
    (single-threaded, so malformed rows keep their line numbers); the file's structure, column order and dtypes
    are checked by the full pandera schema once, and every block's rows by the schema's row rules (the columns
    that have any); valid rows go to a Parquet writer thread. Peak memory is a few blocks, not the file. A
    column holding a value that cannot be parsed as its type is re-read as text (the file is parsed again) and
    converted per row, so one bad value costs one row, not the file. Text is parsed without the reader's UTF-8
    check, which would refuse the whole file; each block's text columns are checked instead (one vectorised pass,
    as fast as the reader's), and only a column that fails is looked at row by row.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from . import ieee_schema as S
from .checksums import MIB
from .errors import JobError
from .sinks import ParquetSink, QuarantineWriter

BLOCK_SIZE = 16 * MIB
DEFAULT_MAX_BAD_FRACTION = 0.05
REASON_EXAMPLES = 5
_CONVERSION = re.compile(r"In CSV column #(\d+): .*?CSV conversion error to (\w+): invalid value '(.*)'", re.S)


class FileRejected(JobError):
    """A raw file whose structure is wrong: the whole dataset version is refused."""


@dataclass
class TableResult:
    name: str
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)  # "column: rule" -> rows
    examples: list[str] = field(default_factory=list)
    label_sum: int | None = None
    text_columns: list[str] = field(default_factory=list)  # columns re-read as text (held unparsable values)
    parquet_path: str = ""
    quarantine_path: str | None = None
    seconds: float = 0.0

    @property
    def fraud_rate(self) -> float | None:
        if self.label_sum is None or not self.rows_valid:
            return None
        return self.label_sum / self.rows_valid


def read_header(spec: S.TableSpec, path: str) -> list[str]:
    """The raw header names, after the checks that make a file unreadable as a whole."""
    size = os.path.getsize(path)
    if size == 0:
        raise FileRejected(f"{spec.file}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(min(size, MIB))
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
    if head[:2] == b"\x1f\x8b" or head[:4] == b"PK\x03\x04":
        raise FileRejected(f"{spec.file}: the file is compressed (gzip/zip), not CSV: upload the extracted .csv")
    if b"\x00" in head:
        raise FileRejected(f"{spec.file}: unreadable, binary data where CSV text was expected")
    end = head.find(b"\n")
    if end < 0:
        raise FileRejected(f"{spec.file}: unreadable, no line break in the first MiB (not a CSV file)")
    try:
        line = head[:end].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as e:
        raise FileRejected(f"{spec.file}: unreadable, the header is not UTF-8 text ({e.reason})") from e
    if last != b"\n":
        raise FileRejected(
            f"{spec.file}: truncated, the last line has no line break (an interrupted download or upload?): "
            "fetch and upload the file again (playbooks/dataset.yml)"
        )
    return [n.strip().strip('"') for n in line.split(",")]


def check_structure(spec: S.TableSpec, raw_names: list[str]) -> None:
    """Columns, order and dtypes against the full pandera schema (on an empty frame of the header's columns)."""
    names = S.normalise(spec, raw_names)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise FileRejected(f"{spec.file}: duplicated column(s) {', '.join(dups)}")
    known = {c.name: S.PANDAS_DTYPES[c.kind] for c in spec.columns}
    empty = pd.DataFrame({n: pd.Series([], dtype=known.get(n, "object")) for n in names})
    try:
        S.pandera_schema(spec, S.KeyState()).validate(empty, lazy=True)
    except pandera.errors.SchemaErrors as e:
        fc = e.failure_cases
        problems = []
        for check, label in (
            ("column_in_dataframe", "missing column(s)"),
            ("column_in_schema", "unexpected column(s)"),
            ("column_ordered", "column(s) out of order"),
        ):
            cols = [str(v) for v in fc.loc[fc["check"] == check, "failure_case"].tolist()]
            if cols:
                problems.append(f"{label} {', '.join(cols[:10])}{' …' if len(cols) > 10 else ''}")
        other = fc.loc[~fc["check"].isin(["column_in_dataframe", "column_in_schema", "column_ordered"])]
        problems += [f"{r.column}: {r.check}" for r in other.itertuples()][:5]
        raise FileRejected(
            f"{spec.file}: the header does not match the IEEE-CIS contract: {'; '.join(problems)} "
            f"(expected {len(spec.columns)} columns: {', '.join(spec.names[:6])}, …)"
        ) from e


def _row_rules(spec: S.TableSpec, state: S.KeyState):
    """The row-level part of the table's schema: only the columns that have a rule (dtypes are fixed per file)."""
    full = S.pandera_schema(spec, state)
    ruled = [name for name, col in full.columns.items() if col.checks or not col.nullable]
    rules = full.select_columns(ruled)
    rules.strict = False
    rules.ordered = False
    return rules, ruled


def _coerce(arr: pa.Array, kind: str) -> tuple[pa.Array, np.ndarray]:
    """A text column back to its contract type; the mask marks values that are not numbers (or not integers)."""
    text = arr.to_pandas()
    num = pd.to_numeric(text, errors="coerce")
    bad = text.notna().to_numpy() & num.isna().to_numpy()
    if kind == "int":
        frac = num.notna().to_numpy() & (num.fillna(0) % 1 != 0).to_numpy()
        bad |= frac
        num = num.where(~frac)
        return pa.array(num.astype("Int64"), type=pa.int64()), bad
    return pa.array(num.astype("float64"), type=pa.float64(), from_pandas=True), bad


def _repair_utf8(arr: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """None when a text column of a block is valid UTF-8 (the usual case: one vectorised check); else the column
    with its bad values' bytes escaped (``caf\\xe9``) and the mask of those rows."""
    try:
        arr.validate(full=True)  # for a string array: offsets and UTF-8
        return None
    except pa.ArrowInvalid:
        pass
    values = arr.cast(pa.binary()).to_pylist()
    bad = np.zeros(len(values), dtype=bool)
    fixed: list[str | None] = []
    for j, v in enumerate(values):
        if v is None:
            fixed.append(None)
            continue
        try:
            fixed.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            bad[j] = True
            fixed.append(v.decode("utf-8", "backslashreplace"))
    return pa.array(fixed, pa.string()), bad


def curate_file(
    spec: S.TableSpec,
    path: str,
    out_dir: str,
    state: S.KeyState,
    *,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    block_size: int = BLOCK_SIZE,
) -> TableResult:
    """Parse, validate and write one raw file: ``<out_dir>/curated/<table>.parquet`` (+ quarantine CSV).

    ``state`` carries the valid keys of the tables validated before (for the reference rules) and receives this
    table's. Raises FileRejected for a file whose structure is wrong or that has too many bad rows."""
    t0 = time.perf_counter()
    raw_names = read_header(spec, path)
    check_structure(spec, raw_names)
    types = S.arrow_types(spec, raw_names)
    text_cols: set[str] = set()
    src = _Source(path)
    try:
        while True:  # once, plus once per column found to hold a value that its type cannot parse
            try:
                with _quiet_undecodable_rows():
                    result = _curate_pass(spec, src, out_dir, state, raw_names, types, text_cols, block_size)
                break
            except pa.ArrowInvalid as e:
                m = _CONVERSION.search(str(e))
                col = raw_names[int(m.group(1))] if m and int(m.group(1)) < len(raw_names) else None
                if col is None and not src.stand_ins and str(e).startswith("CSV parse error"):
                    src = _stand_in_source(path, os.path.join(out_dir, f".{spec.name}.utf8.csv"))
                    if src.stand_ins:
                        continue
                if col is None or col in text_cols:
                    raise FileRejected(f"{spec.file}: unreadable as CSV: {str(e).splitlines()[0]}") from e
                text_cols.add(col)
                types = {**types, col: pa.string()}
    finally:
        if src.path != path:
            os.unlink(src.path)
    result.seconds = time.perf_counter() - t0
    bad_fraction = result.rows_quarantined / max(result.rows_in, 1)
    if result.rows_valid == 0 or bad_fraction > max_bad_fraction:
        top = "; ".join(f"{reason} ({n} rows)" for reason, n in result.reasons.most_common(3))
        raise FileRejected(
            f"{spec.file}: {result.rows_quarantined} of {result.rows_in} rows are bad ({bad_fraction:.1%}, over "
            f"the {max_bad_fraction:.1%} allowed by --max-bad-fraction); most common: {top or 'no rows'}. "
            "Check that the file is the IEEE-CIS one, or raise --max-bad-fraction"
        )
    return result


@dataclass
class _Source:
    """The file a pass reads: the raw file, or a copy whose lines that are not UTF-8 were replaced by a
    one-field stand-in (``stand_ins``: line number -> the original line, bad bytes escaped)."""

    path: str
    stand_ins: dict[int, str] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet_undecodable_rows():
    """pyarrow reports a row it cannot decode for ``invalid_row_handler`` as an "Exception ignored" traceback on
    stderr before it fails the read (which ``_stand_in_source`` then handles): keep that out of the job's log."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, UnicodeDecodeError):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _stand_in_source(path: str, copy: str) -> _Source:
    """The fallback for a line that has both a byte that is not UTF-8 and the wrong number of fields: pyarrow
    decodes such a line before handing it to ``invalid_row_handler`` and aborts the read instead. In the copy,
    each line that is not UTF-8 becomes ``-`` (one field: handed to the handler with its line number)."""
    src = _Source(copy)
    with open(path, "rb") as raw, open(copy, "wb") as out:
        for number, line in enumerate(raw, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                src.stand_ins[number] = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                line = b"-\n"
            out.write(line)
    return src


def _curate_pass(spec, src: _Source, out_dir, state, raw_names, types, text_cols, block_size) -> TableResult:
    names = S.normalise(spec, raw_names)
    res = TableResult(spec.name, text_columns=sorted(S.normalise(spec, list(text_cols))))
    state.seen = set()
    keep_keys = any(t.references == spec.name for t in S.TABLES)
    valid_keys: set[int] = set()
    rules, ruled = _row_rules(spec, state)
    label_int = S.LABEL in names and spec.col(S.LABEL).kind == "int"
    res.label_sum = 0 if label_int else None
    target = pa.schema([(n, S.ARROW_TYPES[spec.col(n).kind]) for n in names])
    os.makedirs(os.path.join(out_dir, "curated"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "quarantine"), exist_ok=True)
    res.parquet_path = os.path.join(out_dir, "curated", f"{spec.name}.parquet")
    sink = ParquetSink(res.parquet_path, target)
    quarantine = QuarantineWriter(os.path.join(out_dir, "quarantine", f"{spec.name}.csv"), names)

    # (line, reason, text) of rows that could not be split, or that were not UTF-8 (in the fallback copy)
    malformed: list[tuple[int, str, str]] = []

    def on_invalid(row) -> str:
        original = src.stand_ins.get(row.number)
        if original is not None:
            malformed.append((row.number, "row: not valid UTF-8", original))
        else:
            malformed.append((row.number, f"expected {len(names)} fields, found {row.actual_columns}", row.text))
        return "skip"

    reader_opts = pcsv.ReadOptions(block_size=block_size, use_threads=False)
    parse_opts = pcsv.ParseOptions(invalid_row_handler=on_invalid)
    # check_utf8 off: one bad byte would refuse the whole file; _repair_utf8 checks each block's text instead.
    convert_opts = pcsv.ConvertOptions(column_types=types, strings_can_be_null=True, check_utf8=False)
    text_idx = [(i, spec.col(names[i]).kind) for i, raw in enumerate(raw_names) if raw in text_cols]
    string_idx = [i for i, raw in enumerate(raw_names) if types.get(raw) == pa.string()]
    parsed = 0  # rows parsed so far (malformed ones not included)
    written_malformed = 0
    ok = False
    try:
        reader = pcsv.open_csv(
            src.path, read_options=reader_opts, parse_options=parse_opts, convert_options=convert_opts
        )
        for batch in reader:
            n = batch.num_rows
            reasons: dict[int, list[str]] = defaultdict(list)
            cols = list(batch.columns)
            not_utf8: set[tuple[int, str]] = set()  # (row, column): its other rules are moot
            for i in string_idx:
                repaired = _repair_utf8(cols[i])
                if repaired is not None:
                    cols[i], bad = repaired
                    for j in np.flatnonzero(bad):
                        reasons[int(j)].append(f"{names[i]}: not valid UTF-8")
                        not_utf8.add((int(j), names[i]))
            shown = list(cols)  # the values as written (bad bytes escaped), for the quarantine CSV
            for i, kind in text_idx:
                cols[i], bad = _coerce(cols[i], kind)
                for j in np.flatnonzero(bad):
                    if (int(j), names[i]) not in not_utf8:
                        reasons[int(j)].append(f"{names[i]}: not {'an integer' if kind == 'int' else 'a number'}")
            typed = pa.RecordBatch.from_arrays(cols, schema=target)
            frame = typed.select(ruled).to_pandas(types_mapper=S.types_mapper)
            try:
                rules.validate(frame, lazy=True)
            except pandera.errors.SchemaErrors as e:
                fc = e.failure_cases
                whole = fc[fc["index"].isna()]
                if len(whole):
                    first = whole.iloc[0]
                    raise FileRejected(f"{spec.file}: {first['column']}: {first['check']}") from e
                for row in fc[["index", "column", "check", "failure_case"]].itertuples(index=False):
                    if (int(row[0]), row[1]) not in not_utf8:
                        reasons[int(row[0])].append(_reason(row[1], row[2], row[3]))
            state.seen.update(k for k in frame[S.KEY].tolist() if k is not pd.NA)

            # Line numbers: rows are in file order; skipped malformed lines shift the physical line numbers.
            m_lines = np.array([m[0] for m in malformed], dtype=np.int64)
            m_ord = m_lines - 2 - np.arange(len(m_lines))  # parsed rows before each malformed line

            if reasons:
                bad_idx = np.array(sorted(reasons), dtype=np.int64)
                mask = np.zeros(n, dtype=bool)
                mask[bad_idx] = True
                valid = typed.filter(pa.array(~mask))
                ords = parsed + bad_idx
                lines = (ords + 2 + np.searchsorted(m_ord, ords, side="right")).tolist()
                texts = ["; ".join(reasons[int(i)]) for i in bad_idx]
                take = pa.array(bad_idx)
                quarantine.write(lines, texts, [None] * len(lines), [c.take(take) for c in shown])
                for i in bad_idx:
                    for r in reasons[int(i)]:
                        res.reasons[r.split(" (got ", 1)[0]] += 1  # count by rule, not by value
                if len(res.examples) < REASON_EXAMPLES:
                    res.examples += [f"line {ln}: {t}" for ln, t in zip(lines, texts, strict=True)][
                        : REASON_EXAMPLES - len(res.examples)
                    ]
                res.rows_quarantined += len(bad_idx)
            else:
                valid = typed
            new_m = malformed[written_malformed:]
            if new_m:
                texts = [m[1] for m in new_m]
                quarantine.write([m[0] for m in new_m], texts, [m[2] for m in new_m], None)
                for t in texts:
                    split = t.startswith("expected ")
                    res.reasons[f"row: wrong number of fields (expected {len(names)})" if split else t] += 1
                if len(res.examples) < REASON_EXAMPLES:
                    res.examples += [f"line {m[0]}: {t}" for m, t in zip(new_m, texts, strict=True)][
                        : REASON_EXAMPLES - len(res.examples)
                    ]
                res.rows_quarantined += len(new_m)
                written_malformed = len(malformed)
            quarantine.flush()
            parsed += n
            res.rows_valid += valid.num_rows
            if valid.num_rows:
                if keep_keys:
                    valid_keys.update(valid.column(S.KEY).to_pylist())
                if label_int:
                    res.label_sum += int(pc.sum(valid.column(S.LABEL)).as_py() or 0)
                sink.put(valid)
        res.rows_in = parsed + len(malformed)
        ok = True
    finally:
        sink.close(ok)
        res.quarantine_path = quarantine.close(ok)
    if keep_keys:
        state.valid[spec.name] = valid_keys
    return res


def _reason(col: str, check: str, value) -> str:
    if check == "not_nullable":
        return f"{col}: empty"
    shown = (
        "" if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) else f" (got {value!r})"
    )
    return f"{col}: {check}{shown}"


def row_totals(tables: list[TableResult]) -> dict:
    """Rows in / valid / quarantined over the tables."""
    return {
        "in": sum(t.rows_in for t in tables),
        "valid": sum(t.rows_valid for t in tables),
        "quarantined": sum(t.rows_quarantined for t in tables),
    }


def combined_fraud_rate(tables: list[TableResult]) -> float | None:
    """The fraud rate over the valid rows of the labelled tables, None when no table is labelled."""
    labelled = [t for t in tables if t.label_sum is not None and t.rows_valid]
    if not labelled:
        return None
    return sum(t.label_sum for t in labelled) / sum(t.rows_valid for t in labelled)
