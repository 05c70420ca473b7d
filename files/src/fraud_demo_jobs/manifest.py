"""A curated version's identity and record: the version id, and ``manifest.json`` (what went in, what came out,
under which contract and code).

The version is ``sha256(dataset, schema fingerprint, each raw object's key/VersionId/ETag/size)[:16]``: the same
raw objects (under the same contract) always give the same version. A version is complete when its manifest
exists and names tables that all exist (the manifest is written last).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime

import pandera

from . import ieee_schema as S
from .aws import S3Bucket
from .checksums import code_version_of, file_sha256
from .curate import TableResult, combined_fraud_rate, row_totals

MANIFEST_FORMAT = 1
# The modules that decide what a curated version contains (their hash is the manifest's code_version).
CURATED_BY = ("curate.py", "ieee_contract.py", "ieee_schema.py", "ingest.py", "manifest.py", "sinks.py")


def code_version() -> str:
    """The package version plus a hash of the code that decides the curated output."""
    return code_version_of(CURATED_BY)


@dataclass
class RawObject:
    """One raw file's object version, as the run pinned it."""

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


def dataset_version(dataset: str, raws: list[RawObject], schema_fingerprint: str) -> str:
    doc = {
        "dataset": dataset,
        "schema": schema_fingerprint,
        "files": [[r.key, r.version_id, r.etag, r.size] for r in raws],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def manifest_complete(bucket: S3Bucket, manifest: dict | None, version: str) -> bool:
    """Whether ``manifest`` is a complete record of ``version``: ours, and every table it names exists."""
    if not manifest or manifest.get("version") != version or manifest.get("format") != MANIFEST_FORMAT:
        return False
    return all(bucket.head(t["key"]) is not None for t in manifest.get("tables", []))


def table_entry(res: TableResult, curated_prefix: str, quarantine_prefix: str) -> dict:
    """A table's record in the manifest (its Parquet file is hashed here: what was uploaded)."""
    return {
        "name": res.name,
        "key": curated_prefix + os.path.basename(res.parquet_path),
        "bytes": os.path.getsize(res.parquet_path),
        "sha256": file_sha256(res.parquet_path).hex(),
        "rows_in": res.rows_in,
        "rows_valid": res.rows_valid,
        "rows_quarantined": res.rows_quarantined,
        "quarantine_key": quarantine_prefix + os.path.basename(res.quarantine_path) if res.quarantine_path else None,
        "reasons": dict(res.reasons.most_common()),
        "text_columns": res.text_columns,
        "fraud_rate": res.fraud_rate,
    }


@dataclass
class RunRecord:
    """Where and when the run that made a version ran."""

    run_id: str
    started: datetime
    finished: datetime
    log_group: str | None
    log_stream: str | None


def build_manifest(
    dataset: str,
    version: str,
    bucket: str,
    raws: list[RawObject],
    tables: list[TableResult],
    prefixes: tuple[str, str],
    run: RunRecord,
) -> dict:
    """The manifest of a version; ``prefixes`` are its curated and quarantine prefixes."""
    curated_prefix, quarantine_prefix = prefixes
    return {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "version": version,
        "bucket": bucket,
        "source": [r.report() for r in raws],
        "tables": [table_entry(res, curated_prefix, quarantine_prefix) for res in tables],
        "rows": row_totals(tables),
        "fraud_rate": combined_fraud_rate(tables),
        "schema": {"fingerprint": S.fingerprint(), "revision": S.SCHEMA_REVISION, "pandera": pandera.__version__},
        "code_version": code_version(),
        "run": {
            "id": run.run_id,
            "host": socket.gethostname(),
            "started_at": run.started.isoformat(timespec="seconds"),
            "finished_at": run.finished.isoformat(timespec="seconds"),
            "log_group": run.log_group,
            "log_stream": run.log_stream,
        },
    }
