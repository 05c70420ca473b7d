"""Validate, version and curate the raw IEEE-CIS files (``fraud-demo-ingest``).

Reads the five raw files of one dataset from ``s3://<bucket>/raw/<dataset>/``, validates every row against the
pandera contract in ``ieee_schema``, and publishes:

- ``curated/<dataset>/<version>/<table>.parquet``: the valid rows, typed (zstd Parquet);
- ``quarantine/<dataset>/<version>/<table>.csv``: the rejected rows, with ``_line`` (line in the raw file),
  ``_reason`` (every rule the row broke) and ``_raw`` (the text of a row that could not even be split);
- ``curated/<dataset>/<version>/manifest.json``: the source objects (key, VersionId, ETag, size, sha256), row
  counts in / valid / quarantined per table, the reasons, the schema fingerprint, the code version, timestamps;
- ``curated/<dataset>/latest``: ``{"dataset", "version", "manifest"}``, moved only after all of the above.

Versions
    The version is ``sha256(dataset, schema fingerprint, each raw object's key/VersionId/ETag/size)[:16]``: the same
    raw objects (under the same contract) always give the same version. A version is complete when its
    ``manifest.json`` exists (it is written last); a run whose version is complete does nothing (``unchanged``),
    or only moves ``latest`` back to it (``promoted``). A run that died half-way left no manifest and the
    ``latest`` pointer untouched; the next run re-uses what is intact (uploads are skipped by checksum), aborts
    left-over multipart uploads and deletes stray objects under the version's prefixes before the manifest.

Rows and files
    A *file* is rejected, and the job fails before anything is written to the bucket, when it is empty, not
    text, compressed, truncated (no line break at the end), or its header does not match the contract (missing,
    unexpected, duplicated or reordered columns), or when more than ``--max-bad-fraction`` of its rows are bad.
    A *row* is quarantined when it has the wrong number of fields, a value that is not a number in a numeric
    column, an empty required value, a value outside its domain, a ``TransactionID`` seen earlier in the file,
    or (identity and submission rows) a ``TransactionID`` that is not a valid row of the matching transaction
    file.

Speed and memory
    Each file is streamed: ``pyarrow.csv.open_csv`` parses 16 MiB blocks straight into the contract's types
    (single-threaded, so malformed rows keep their line numbers); the file's structure, column order and dtypes
    are checked by the full pandera schema once, and every block's rows by the schema's row rules (the columns
    that have any); valid rows go to a Parquet writer thread. Peak memory is a few blocks, not the file. A
    column holding a value that cannot be parsed as its type is re-read as text (the file is parsed again) and
    converted per row, so one bad value costs one row, not the file.

Logs and metrics
    JSON events go to the CloudWatch log group (``--log-group``, which must exist: provision creates it) through
    watchtower, one stream per run (``ingest/<run-id>``), and to stderr as text. Metrics RowsIn, RowsValid,
    RowsQuarantined, FraudRate, DurationSeconds and VersionCreated go to ``--metrics-namespace`` with the
    dimensions Dataset and Stage=ingest.

The last line on stdout is one JSON summary (``changed``, ``action``, ``version``, keys, row counts); on failure
it carries ``failed`` and ``msg`` and the exit status is non-zero. ``--check`` only reads and reports what a run
would do. Endpoint, region and credentials come from boto3's configuration (AWS_ENDPOINT_URL, AWS_REGION, the
instance profile, ...) unless --endpoint-url/--region are given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import numpy as np
import pandas as pd
import pandera
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import watchtower
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager

from . import __version__, upload
from . import ieee_schema as S

JOB = "ingest"
PROG = "fraud-demo-ingest"
MIB = 1024 * 1024
BLOCK_SIZE = 16 * MIB
PART_SIZE = 8 * MIB  # uploads
# Downloads: ranged GETs of 64 MiB, 10 at a time (a 650 MB file is still fetched over ~10 connections). 8 MiB
# ranges measured 6x slower against moto, which copies the whole object for every ranged GET.
DOWNLOAD_PART_SIZE = 64 * MIB
CONCURRENCY = 10
DEFAULT_DATASET = "ieee-fraud-detection"
DEFAULT_LOG_GROUP = "fraud-demo-logs"
DEFAULT_NAMESPACE = "FraudDemo"
DEFAULT_WORK_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fraud-demo-ingest")
MANIFEST_FORMAT = 1
REASON_EXAMPLES = 5
_CONVERSION = re.compile(r"In CSV column #(\d+): .*?CSV conversion error to (\w+): invalid value '(.*)'", re.S)


class JobError(Exception):
    """A failure with a message meant for the user (no traceback)."""


class FileRejected(JobError):
    """A raw file whose structure is wrong: the whole dataset version is refused."""


def code_version() -> str:
    """The package version plus a hash of the code that decides the curated output."""
    h = hashlib.sha256()
    for mod in ("ingest.py", "ieee_schema.py"):
        h.update((Path(__file__).parent / mod).read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


# ------------------------------------------------------------------------------------------------ one file


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


class _ParquetSink:
    """Writes valid batches to Parquet in a background thread, one row group per parsed block (~15k rows).

    (Gathering blocks into bigger row groups measured ~40 % slower: the chunked columns get concatenated.)"""

    def __init__(self, path: str, schema: pa.Schema):
        self.path = path
        self.tmp = path + ".part"
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="parquet", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (batch := self.queue.get()) is not None:
                self.writer.write_batch(batch)
        except BaseException as e:  # surfaced in put()/close()
            self.error = e
            while self.queue.get() is not None:  # drain so that put() never blocks forever
                pass

    def put(self, batch: pa.RecordBatch) -> None:
        if self.error:
            raise self.error
        self.queue.put(batch)

    def close(self, ok: bool) -> None:
        self.queue.put(None)
        self.thread.join()
        self.writer.close()
        if self.error and ok:
            raise JobError(f"cannot write {self.path}: {self.error}")
        if ok:
            os.replace(self.tmp, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


class _Quarantine:
    """The rejected rows of one file, as CSV: _line, _reason, _raw, then the contract's columns as text."""

    def __init__(self, path: str, names: list[str]):
        self.path = path
        self.names = names
        self.schema = pa.schema(
            [("_line", pa.int64()), ("_reason", pa.string()), ("_raw", pa.string())] + [(n, pa.string()) for n in names]
        )
        self.writer: pcsv.CSVWriter | None = None
        self.pending: list[pa.RecordBatch] = []

    def write(self, lines: list[int], reasons: list[str], raw: list[str | None], columns: list[pa.Array] | None):
        n = len(lines)
        if not n:
            return
        if columns is None:
            columns = [pa.nulls(n, pa.string())] * len(self.names)
        cols = [pa.array(lines, pa.int64()), pa.array(reasons, pa.string()), pa.array(raw, pa.string())]
        cols += [c if c.type == pa.string() else pc.cast(c, pa.string()) for c in columns]
        self.pending.append(pa.RecordBatch.from_arrays(cols, schema=self.schema))

    def flush(self) -> None:
        """Write one block's rejected rows in line order (rows that could not be split come from another list)."""
        if not self.pending:
            return
        if self.writer is None:
            self.writer = pcsv.CSVWriter(self.path + ".part", self.schema)
        self.writer.write_table(pa.Table.from_batches(self.pending).sort_by("_line"))
        self.pending = []

    def close(self, ok: bool) -> str | None:
        if ok:
            self.flush()
        if self.writer is None:
            return None
        self.writer.close()
        if ok:
            os.replace(self.path + ".part", self.path)
            return self.path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path + ".part")
        return None


def curate_file(
    spec: S.TableSpec,
    path: str,
    out_dir: str,
    state: S.KeyState,
    *,
    max_bad_fraction: float = 0.05,
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
    while True:  # once, plus once per column found to hold a value that its type cannot parse
        try:
            result = _curate_pass(spec, path, out_dir, state, raw_names, types, text_cols, block_size)
            break
        except pa.ArrowInvalid as e:
            m = _CONVERSION.search(str(e))
            col = raw_names[int(m.group(1))] if m and int(m.group(1)) < len(raw_names) else None
            if col is None or col in text_cols:
                raise FileRejected(f"{spec.file}: unreadable as CSV: {str(e).splitlines()[0]}") from e
            text_cols.add(col)
            types = {**types, col: pa.string()}
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


def _curate_pass(spec, path, out_dir, state, raw_names, types, text_cols, block_size) -> TableResult:
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
    sink = _ParquetSink(res.parquet_path, target)
    quarantine = _Quarantine(os.path.join(out_dir, "quarantine", f"{spec.name}.csv"), names)

    malformed: list[tuple[int, int, str]] = []  # (line, fields, text) of rows that could not be split

    def on_invalid(row) -> str:
        malformed.append((row.number, row.actual_columns, row.text))
        return "skip"

    reader_opts = pcsv.ReadOptions(block_size=block_size, use_threads=False)
    parse_opts = pcsv.ParseOptions(invalid_row_handler=on_invalid)
    convert_opts = pcsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    text_idx = [(i, spec.col(names[i]).kind) for i, raw in enumerate(raw_names) if raw in text_cols]
    parsed = 0  # rows parsed so far (malformed ones not included)
    written_malformed = 0
    ok = False
    try:
        reader = pcsv.open_csv(path, read_options=reader_opts, parse_options=parse_opts, convert_options=convert_opts)
        for batch in reader:
            n = batch.num_rows
            reasons: dict[int, list[str]] = defaultdict(list)
            cols = list(batch.columns)
            for i, kind in text_idx:
                cols[i], bad = _coerce(cols[i], kind)
                for j in np.flatnonzero(bad):
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
                quarantine.write(lines, texts, [None] * len(lines), [c.take(take) for c in batch.columns])
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
                texts = [f"expected {len(names)} fields, found {m[1]}" for m in new_m]
                quarantine.write([m[0] for m in new_m], texts, [m[2] for m in new_m], None)
                res.reasons[f"row: wrong number of fields (expected {len(names)})"] += len(new_m)
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


# ------------------------------------------------------------------------------------------------ S3 side


@dataclass
class RawObject:
    spec: S.TableSpec
    key: str
    version_id: str | None
    etag: str
    size: int
    path: str = ""
    sha256: str = ""

    def report(self) -> dict:
        return {
            "file": self.spec.file,
            "key": self.key,
            "version_id": self.version_id,
            "etag": self.etag,
            "size": self.size,
            "sha256": self.sha256 or None,
        }


@dataclass
class Settings:
    bucket: str
    dataset: str
    work_dir: str
    log_group: str
    namespace: str
    max_bad_fraction: float
    cloudwatch: bool
    check: bool
    endpoint_url: str | None = None
    region: str | None = None


@dataclass
class RunState:
    run_id: str
    started: datetime
    action: str = ""
    version: str | None = None
    raws: list[RawObject] = field(default_factory=list)
    tables: list[TableResult] = field(default_factory=list)
    keys: dict[str, dict] = field(default_factory=dict)
    manifest: dict | None = None
    log_stream: str | None = None
    bytes_uploaded: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)


def dataset_version(dataset: str, raws: list[RawObject], schema_fingerprint: str) -> str:
    doc = {
        "dataset": dataset,
        "schema": schema_fingerprint,
        "files": [[r.key, r.version_id, r.etag, r.size] for r in raws],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class Lake:
    """The S3 calls of a run, each wrapped with an actionable message."""

    def __init__(self, s: Settings):
        self.s = s
        self.client = upload.make_client(s.endpoint_url, s.region, CONCURRENCY)
        self.endpoint = self.client.meta.endpoint_url

    def call(self, what: str, fn, **kwargs):
        try:
            return fn(Bucket=self.s.bucket, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise JobError(upload.explain(e, self.s.bucket, self.endpoint, what)) from e

    def head(self, key: str) -> dict | None:
        try:
            return upload.head(self.client, self.s.bucket, key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise JobError(upload.explain(e, self.s.bucket, self.endpoint, f"HeadObject {key}")) from e

    def get_json(self, key: str) -> dict | None:
        try:
            body = self.client.get_object(Bucket=self.s.bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as e:
            if upload.not_found(e):
                return None
            raise JobError(upload.explain(e, self.s.bucket, self.endpoint, f"GetObject {key}")) from e
        except botocore.exceptions.BotoCoreError as e:
            raise JobError(upload.explain(e, self.s.bucket, self.endpoint, f"GetObject {key}")) from e
        try:
            return json.loads(body)
        except ValueError:
            return None  # not ours / damaged: treated as absent and rewritten

    def put_json(self, key: str, doc: dict) -> None:
        body = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        self.call(
            f"PutObject {key}",
            self.client.put_object,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )

    def keys_under(self, prefix: str) -> list[str]:
        pages = self.call(
            f"ListObjectsV2 {prefix}", self.client.get_paginator("list_objects_v2").paginate, Prefix=prefix
        )
        try:
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise JobError(upload.explain(e, self.s.bucket, self.endpoint, f"ListObjectsV2 {prefix}")) from e

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            objs = [{"Key": k} for k in keys[i : i + 1000]]
            self.call("DeleteObjects", self.client.delete_objects, Delete={"Objects": objs, "Quiet": True})


def resolve_raw(lake: Lake, dataset: str) -> list[RawObject]:
    """The current object version of each raw file (the one this run will read, pinned by VersionId)."""
    raws, missing = [], []
    for spec in S.TABLES:
        key = f"raw/{dataset}/{spec.file}"
        h = lake.head(key)
        if h is None:
            missing.append(key)
            continue
        vid = h.get("VersionId")
        raws.append(
            RawObject(spec, key, None if vid in (None, "null") else vid, h["ETag"].strip('"'), h["ContentLength"])
        )
    if missing:
        raise JobError(
            f"missing raw file(s) in s3://{lake.s.bucket}/: {', '.join(missing)}: "
            "land the dataset first (playbooks/dataset.yml, or fraud-demo-upload)"
        )
    return raws


def download(lake: Lake, raws: list[RawObject], into: str) -> None:
    """Parallel ranged downloads of the pinned object versions (s3transfer writes to a temp name, then renames)."""
    os.makedirs(into, exist_ok=True)
    config = TransferConfig(
        multipart_threshold=DOWNLOAD_PART_SIZE, multipart_chunksize=DOWNLOAD_PART_SIZE, max_concurrency=CONCURRENCY
    )
    with TransferManager(lake.client, config) as manager:
        todo = []
        for r in raws:
            r.path = os.path.join(into, r.spec.file)
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(r.path) == r.size:
                    continue  # an earlier, interrupted run of this version fetched it (renamed only when complete)
            extra = {"VersionId": r.version_id} if r.version_id else {}
            todo.append((r, manager.download(lake.s.bucket, r.key, r.path, extra_args=extra)))
        for r, fut in todo:
            try:
                fut.result()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                raise JobError(upload.explain(e, lake.s.bucket, lake.endpoint, f"downloading {r.key}")) from e
            if os.path.getsize(r.path) != r.size:
                raise JobError(f"{r.key}: downloaded {os.path.getsize(r.path)} bytes of {r.size}; re-run")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def publish(lake: Lake, local_dir: str, prefix: str, pattern: str) -> int:
    """Upload ``local_dir/pattern`` under ``prefix`` (checksum-skipped, multipart, nothing partial), then delete
    every other object under ``prefix`` except the manifest (strays of an interrupted earlier run)."""
    names = sorted(p.name for p in Path(local_dir).glob(pattern)) if os.path.isdir(local_dir) else []
    sent = 0
    if names:
        settings = upload.Settings(
            source=local_dir,
            bucket=lake.s.bucket,
            prefix=prefix,
            includes=[pattern],
            part_size=PART_SIZE,
            concurrency=CONCURRENCY,
            progress=False,
            endpoint_url=lake.s.endpoint_url,
            region=lake.s.region,
            stale_hours=1e-6,  # this version's prefix is ours alone: abort every unfinished upload left under it
        )
        st = upload.RunState()
        try:
            upload.run(settings, st)
        except upload.UploadError as e:
            raise JobError(f"publishing {prefix}: {e}") from e
        sent = sum(lf.size for lf in st.files if lf.action == "uploaded")
    keep = {prefix + n for n in names} | {prefix + "manifest.json"}
    strays = [k for k in lake.keys_under(prefix) if k not in keep]
    if strays:
        lake.delete(strays)
    return sent


# ------------------------------------------------------------------------------------------------ logging


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        if isinstance(msg, dict):
            fields = " ".join(f"{k}={v}" for k, v in msg.items() if k not in ("event", "job", "run_id", "dataset"))
            return f"{PROG}: {msg.get('event')}: {fields}"
        return f"{PROG}: {record.getMessage()}"


class Events:
    """Structured events: JSON to CloudWatch (watchtower), text to stderr."""

    def __init__(self, s: Settings, run_id: str):
        self.base = {"job": JOB, "run_id": run_id, "dataset": s.dataset}
        self.logger = logging.getLogger(f"fraud_demo.{JOB}.{run_id}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        text = logging.StreamHandler(sys.stderr)
        text.setFormatter(_TextFormatter())
        self.logger.addHandler(text)
        self.cloud: watchtower.CloudWatchLogHandler | None = None
        self.stream: str | None = None

    def connect(self, s: Settings, run_id: str) -> None:
        """Attach the CloudWatch handler after checking that the log group exists (we never create it)."""
        config = botocore.config.Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3})
        logs = boto3.session.Session().client(
            "logs", endpoint_url=s.endpoint_url or None, region_name=s.region or None, config=config
        )
        try:
            logs.describe_log_streams(logGroupName=s.log_group, limit=1)
        except logs.exceptions.ResourceNotFoundException as e:
            raise JobError(
                f"CloudWatch log group {s.log_group} does not exist: run playbooks/provision.yml, or pass "
                "--log-group NAME / --no-cloudwatch"
            ) from e
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise JobError(f"CloudWatch Logs: {upload.explain(e, s.bucket, logs.meta.endpoint_url)}") from e
        self.stream = f"{JOB}/{run_id}"
        self.cloud = watchtower.CloudWatchLogHandler(
            log_group_name=s.log_group,
            log_stream_name=self.stream,
            boto3_client=logs,
            create_log_group=False,
            send_interval=5,
        )
        self.logger.addHandler(self.cloud)

    def __call__(self, event: str, level: int = logging.INFO, **fields) -> None:
        self.logger.log(level, {**self.base, "event": event, **fields})

    def close(self) -> None:
        if self.cloud is not None:
            with warnings_as_stderr():
                self.cloud.close()  # flushes; a dead endpoint only loses the log events
        for h in list(self.logger.handlers):
            self.logger.removeHandler(h)


@contextlib.contextmanager
def warnings_as_stderr():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        print(f"{PROG}: warning: CloudWatch Logs: {w.message}", file=sys.stderr)


def put_metrics(s: Settings, st: RunState, seconds: float) -> str | None:
    """Publish the run's metrics; returns a warning instead of failing (the data is already published)."""
    dims = [{"Name": "Dataset", "Value": s.dataset}, {"Name": "Stage", "Value": JOB}]
    created = st.action == "created"
    data = [("DurationSeconds", seconds, "Seconds"), ("VersionCreated", 1.0 if created else 0.0, "Count")]
    if created:
        rows_in = sum(t.rows_in for t in st.tables)
        data += [
            ("RowsIn", rows_in, "Count"),
            ("RowsValid", sum(t.rows_valid for t in st.tables), "Count"),
            ("RowsQuarantined", sum(t.rows_quarantined for t in st.tables), "Count"),
        ]
        rate = _fraud_rate(st.tables)
        if rate is not None:
            data.append(("FraudRate", rate, "None"))
    metric_data = [{"MetricName": n, "Value": float(v), "Unit": u, "Dimensions": dims} for n, v, u in data]
    config = botocore.config.Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3})
    try:
        cw = boto3.session.Session().client(
            "cloudwatch", endpoint_url=s.endpoint_url or None, region_name=s.region or None, config=config
        )
        cw.put_metric_data(Namespace=s.namespace, MetricData=metric_data)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        return f"metrics not published to {s.namespace}: {e}"
    return None


def _fraud_rate(tables: list[TableResult]) -> float | None:
    labelled = [t for t in tables if t.label_sum is not None and t.rows_valid]
    if not labelled:
        return None
    return sum(t.label_sum for t in labelled) / sum(t.rows_valid for t in labelled)


# ------------------------------------------------------------------------------------------------ the run


def _manifest_complete(lake: Lake, manifest: dict | None, version: str) -> bool:
    if not manifest or manifest.get("version") != version or manifest.get("format") != MANIFEST_FORMAT:
        return False
    return all(lake.head(t["key"]) is not None for t in manifest.get("tables", []))


def run(s: Settings, st: RunState, events: Events) -> None:
    lake = Lake(s)
    lake.call("HeadBucket", lake.client.head_bucket)
    if s.cloudwatch and not s.check:
        events.connect(s, st.run_id)
        st.log_stream = events.stream
    events("started", bucket=s.bucket, check=s.check, code_version=code_version())

    st.raws = resolve_raw(lake, s.dataset)
    fingerprint = S.fingerprint()
    st.version = version = dataset_version(s.dataset, st.raws, fingerprint)
    prefix = f"curated/{s.dataset}/{version}/"
    qprefix = f"quarantine/{s.dataset}/{version}/"
    latest_key = f"curated/{s.dataset}/latest"
    manifest_key = prefix + "manifest.json"
    st.keys = {"curated_prefix": prefix, "quarantine_prefix": qprefix, "manifest": manifest_key, "latest": latest_key}
    events("resolved", version=version, raw=[r.report() for r in st.raws])

    existing = lake.get_json(manifest_key)
    latest = lake.get_json(latest_key)
    pointer = {"dataset": s.dataset, "version": version, "manifest": manifest_key}
    if _manifest_complete(lake, existing, version):
        st.manifest = existing
        if latest == pointer:
            st.action = "unchanged"
        elif s.check:
            st.action = "would_promote"
        else:
            lake.put_json(latest_key, pointer)
            st.action = "promoted"
        events(st.action, version=version, latest=latest_key)
        return
    if s.check:
        st.action = "would_create"
        events(st.action, version=version)
        return

    work = Path(s.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise JobError(f"another {PROG} run holds {work}/.lock; wait for it to finish") from e
        for other in work.iterdir():  # only the current version's files are worth keeping across runs
            if other.is_dir() and other.name != version:
                shutil.rmtree(other, ignore_errors=True)
        _build(s, st, events, lake, work / version, pointer)


def _build(s: Settings, st: RunState, events: Events, lake: Lake, vdir: Path, pointer: dict) -> None:
    """Download, validate and write locally, then publish: data, manifest, pointer."""
    version, prefix, qprefix = st.version, st.keys["curated_prefix"], st.keys["quarantine_prefix"]
    manifest_key, latest_key, fingerprint = st.keys["manifest"], st.keys["latest"], S.fingerprint()
    t = time.monotonic()
    download(lake, st.raws, str(vdir / "raw"))
    st.phase_seconds["download"] = time.monotonic() - t
    events("downloaded", files=len(st.raws), bytes=sum(r.size for r in st.raws), seconds=round(time.monotonic() - t, 2))

    t = time.monotonic()
    out = vdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    keys = S.KeyState()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
        hashes = {r.key: hasher.submit(sha256_file, r.path) for r in st.raws}
        for r in st.raws:
            res = curate_file(r.spec, r.path, str(out), keys, max_bad_fraction=s.max_bad_fraction)
            st.tables.append(res)
            events(
                "validated",
                table=res.name,
                rows_in=res.rows_in,
                rows_valid=res.rows_valid,
                rows_quarantined=res.rows_quarantined,
                reasons=dict(res.reasons.most_common(10)),
                examples=res.examples,
                text_columns=res.text_columns,
                seconds=round(res.seconds, 2),
            )
        for r in st.raws:
            r.sha256 = hashes[r.key].result()
    st.phase_seconds["validate"] = time.monotonic() - t

    # Publish: data first, then the manifest (the version is complete), then the pointer.
    t = time.monotonic()
    st.bytes_uploaded += publish(lake, str(out / "quarantine"), qprefix, "*.csv")
    st.bytes_uploaded += publish(lake, str(out / "curated"), prefix, "*.parquet")
    finished = datetime.now(timezone.utc)
    tables = []
    for res in st.tables:
        pq_name = os.path.basename(res.parquet_path)
        tables.append(
            {
                "name": res.name,
                "key": prefix + pq_name,
                "bytes": os.path.getsize(res.parquet_path),
                "sha256": sha256_file(res.parquet_path),
                "rows_in": res.rows_in,
                "rows_valid": res.rows_valid,
                "rows_quarantined": res.rows_quarantined,
                "quarantine_key": qprefix + os.path.basename(res.quarantine_path) if res.quarantine_path else None,
                "reasons": dict(res.reasons.most_common()),
                "text_columns": res.text_columns,
                "fraud_rate": res.fraud_rate,
            }
        )
    st.manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": s.dataset,
        "version": version,
        "bucket": s.bucket,
        "source": [r.report() for r in st.raws],
        "tables": tables,
        "rows": _rows(st.tables),
        "fraud_rate": _fraud_rate(st.tables),
        "schema": {"fingerprint": fingerprint, "revision": S.SCHEMA_REVISION, "pandera": pandera.__version__},
        "code_version": code_version(),
        "run": {
            "id": st.run_id,
            "host": socket.gethostname(),
            "started_at": st.started.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "log_group": s.log_group if st.log_stream else None,
            "log_stream": st.log_stream,
        },
    }
    lake.put_json(manifest_key, st.manifest)
    lake.put_json(latest_key, pointer)
    st.phase_seconds["publish"] = time.monotonic() - t
    st.action = "created"
    events("published", version=version, manifest=manifest_key, latest=latest_key, bytes_uploaded=st.bytes_uploaded)
    shutil.rmtree(vdir, ignore_errors=True)  # the bucket has it all now


def _rows(tables: list[TableResult]) -> dict:
    return {
        "in": sum(t.rows_in for t in tables),
        "valid": sum(t.rows_valid for t in tables),
        "quarantined": sum(t.rows_quarantined for t in tables),
    }


def summary(s: Settings | None, st: RunState, seconds: float, msg: str | None = None) -> dict:
    m = st.manifest or {}
    if st.tables:
        tables = {
            t.name: {
                "rows_in": t.rows_in,
                "rows_valid": t.rows_valid,
                "rows_quarantined": t.rows_quarantined,
                "key": f"{st.keys.get('curated_prefix', '')}{t.name}.parquet",
                "quarantine_key": f"{st.keys.get('quarantine_prefix', '')}{t.name}.csv" if t.quarantine_path else None,
            }
            for t in st.tables
        }
        rows, rate = _rows(st.tables), _fraud_rate(st.tables)
    else:
        tables = {
            t["name"]: {k: t.get(k) for k in ("rows_in", "rows_valid", "rows_quarantined", "key", "quarantine_key")}
            for t in m.get("tables", [])
        }
        rows, rate = m.get("rows"), m.get("fraud_rate")
    out = {
        "job": JOB,
        "changed": st.action in ("created", "promoted", "would_create", "would_promote"),
        "action": st.action or None,
        "dataset": s.dataset if s else None,
        "bucket": s.bucket if s else None,
        "version": st.version,
        "curated_prefix": st.keys.get("curated_prefix"),
        "quarantine_prefix": st.keys.get("quarantine_prefix"),
        "manifest_key": st.keys.get("manifest"),
        "latest_key": st.keys.get("latest"),
        "rows": rows,
        "fraud_rate": rate,
        "tables": tables,
        "bytes_uploaded": st.bytes_uploaded,
        "run_id": st.run_id,
        "log_stream": st.log_stream,
        "phase_seconds": {k: round(v, 3) for k, v in st.phase_seconds.items()},
        "seconds": round(seconds, 3),
    }
    if msg is not None:
        out["failed"] = True
        out["msg"] = msg
    return out


# ---------------------------------------------------------------------------------------------------- CLI


_env = upload._env  # an empty variable counts as unset, as in every job


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=doc.split("\n\n", 1)[0],
        epilog="See the module documentation (python -m pydoc fraud_demo_jobs.ingest) for the rules and layout.",
    )
    parser.add_argument("--bucket", default=_env("FRAUD_DEMO_BUCKET"), help="data-lake bucket (env FRAUD_DEMO_BUCKET)")
    parser.add_argument(
        "--dataset",
        default=_env("FRAUD_DEMO_DATASET", DEFAULT_DATASET),
        help=f"dataset name, the raw/<dataset>/ prefix (env FRAUD_DEMO_DATASET; {DEFAULT_DATASET})",
    )
    parser.add_argument(
        "--work-dir",
        default=_env("FRAUD_DEMO_WORK_DIR", DEFAULT_WORK_DIR),
        help=f"local scratch for the raw copies and outputs (env FRAUD_DEMO_WORK_DIR; {DEFAULT_WORK_DIR})",
    )
    parser.add_argument(
        "--log-group",
        default=_env("FRAUD_DEMO_LOG_GROUP", DEFAULT_LOG_GROUP),
        help=f"existing CloudWatch log group (env FRAUD_DEMO_LOG_GROUP; {DEFAULT_LOG_GROUP})",
    )
    parser.add_argument(
        "--metrics-namespace",
        default=_env("FRAUD_DEMO_METRICS_NAMESPACE", DEFAULT_NAMESPACE),
        help=f"CloudWatch metrics namespace (env FRAUD_DEMO_METRICS_NAMESPACE; {DEFAULT_NAMESPACE})",
    )
    parser.add_argument(
        "--max-bad-fraction",
        type=float,
        default=0.05,
        help="refuse a file when more than this fraction of its rows is bad (0.05)",
    )
    parser.add_argument("--no-cloudwatch", action="store_true", help="log to stderr only, publish no metrics")
    parser.add_argument("--check", action="store_true", help="only read: report what a run would do")
    parser.add_argument("--endpoint-url", help="AWS endpoint (default: boto3's, e.g. from AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="AWS region (default: boto3's, e.g. from AWS_REGION)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    st = RunState(
        run_id=f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", started=datetime.now(timezone.utc)
    )
    settings: Settings | None = None
    events: Events | None = None

    def fail(msg: str, code: int) -> int:
        if events is not None:
            events("failed", level=logging.ERROR, msg=msg, version=st.version)
            events.close()
        print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
        print(json.dumps(summary(settings, st, time.monotonic() - t0, msg)), flush=True)
        return code

    if not args.bucket:
        return fail("--bucket (or FRAUD_DEMO_BUCKET) is required", 2)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.dataset or ""):
        return fail(f"--dataset {args.dataset!r} is not a plain name (letters, digits, . _ -)", 2)
    if not 0 <= args.max_bad_fraction < 1:
        return fail("--max-bad-fraction must be at least 0 and below 1", 2)
    settings = Settings(
        bucket=args.bucket,
        dataset=args.dataset,
        work_dir=args.work_dir,
        log_group=args.log_group,
        namespace=args.metrics_namespace,
        max_bad_fraction=args.max_bad_fraction,
        cloudwatch=not args.no_cloudwatch,
        check=args.check,
        endpoint_url=args.endpoint_url,
        region=args.region,
    )
    events = Events(settings, st.run_id)

    with upload.sigterm_raises():
        try:
            run(settings, st, events)
        except JobError as e:
            return fail(str(e), 1)
        except upload.Terminated:
            return fail("terminated (SIGTERM); nothing was published for this version (the next run resumes)", 143)
        except KeyboardInterrupt:
            return fail("interrupted; nothing was published for this version (the next run resumes)", 130)
        except MemoryError:
            return fail("out of memory", 1)
        except OSError as e:
            return fail(f"local file error: {e} (work dir {settings.work_dir})", 1)
        except Exception as e:  # a bug: keep the traceback, still end with the summary line
            traceback.print_exc()
            return fail(f"unexpected error: {type(e).__name__}: {e}", 1)
    seconds = time.monotonic() - t0
    if settings.cloudwatch and not settings.check:
        warning = put_metrics(settings, st, seconds)
        if warning:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    events("finished", action=st.action, version=st.version, seconds=round(seconds, 2))
    events.close()
    print(json.dumps(summary(settings, st, seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
