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
    Which rows are quarantined, which files refused (and the job failed before anything is written to the
    bucket), and how a file is streamed through validation: see ``fraud_demo_jobs.curate``.

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
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import ieee_schema as S
from . import layout
from .aws import S3Bucket, make_client
from .checksums import file_sha256
from .cli import EXIT_USAGE, env, fail, work_dir_locked
from .curate import DEFAULT_MAX_BAD_FRACTION, TableResult, combined_fraud_rate, curate_file, row_totals
from .curated_read import clear_work_dir
from .errors import JobError
from .job_flags import add_lake_flags
from .manifest import RawObject, RunRecord, build_manifest, code_version, dataset_version, manifest_complete
from .telemetry import (
    EventLog,
    add_reporting_flags,
    job_dimensions,
    put_metrics,
    reporting_settings,
    run_reported,
)
from .transfer import (
    CONCURRENCY,
    PinnedObject,
    UploadOutcome,
    UploadRequest,
    download_objects,
    find_files,
    upload_files,
)

INGEST_JOB = "ingest"
INGEST_PROG = "fraud-demo-ingest"
DEFAULT_WORK_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), INGEST_PROG)


@dataclass
class IngestSettings:
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
class IngestRunState:
    run_id: str
    started: datetime
    action: str = ""
    version: str | None = None
    raws: list[RawObject] = field(default_factory=list)
    tables: list[TableResult] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    manifest: dict | None = None
    log_stream: str | None = None
    bytes_uploaded: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ S3 side


def resolve_raw(bucket: S3Bucket, dataset: str) -> list[RawObject]:
    """The current object version of each raw file (the one this run will read, pinned by VersionId)."""
    raws, missing = [], []
    for spec in S.TABLES:
        key = layout.raw_key(dataset, spec.file)
        h = bucket.head(key)
        if h is None:
            missing.append(key)
            continue
        vid = h.get("VersionId")
        raws.append(
            RawObject(spec, key, None if vid in (None, "null") else vid, h["ETag"].strip('"'), h["ContentLength"])
        )
    if missing:
        raise JobError(
            f"missing raw file(s) in s3://{bucket.name}/: {', '.join(missing)}: "
            "land the dataset first (playbooks/dataset.yml, or fraud-demo-upload)"
        )
    return raws


def publish(bucket: S3Bucket, local_dir: str, prefix: str, pattern: str) -> int:
    """Upload ``local_dir/pattern`` under ``prefix`` (checksum-skipped, multipart, nothing partial), then delete
    every other object under ``prefix`` except the manifest (strays of an interrupted earlier run)."""
    names = sorted(p.name for p in Path(local_dir).glob(pattern)) if os.path.isdir(local_dir) else []
    sent = 0
    if names:
        # This version's prefix is ours alone: abort every unfinished upload left under it.
        req = UploadRequest(source=local_dir, prefix=prefix, includes=[pattern], stale_after=timedelta(0))
        out = UploadOutcome(files=find_files(req))
        try:
            upload_files(bucket, req, out, INGEST_PROG)
        except JobError as e:
            raise JobError(f"publishing {prefix}: {e}") from e
        sent = sum(lf.size for lf in out.uploaded)
    keep = {prefix + n for n in names} | {prefix + layout.MANIFEST_NAME}
    strays = [k for k in bucket.list_keys(prefix) if k not in keep]
    if strays:
        bucket.delete(strays)
    return sent


def ingest_metrics(s: IngestSettings, st: IngestRunState, seconds: float) -> str | None:
    """Publish the run's metrics; returns a warning instead of failing (the data is already published)."""
    created = st.action == "created"
    data = [("DurationSeconds", seconds, "Seconds"), ("VersionCreated", 1.0 if created else 0.0, "Count")]
    if created:
        rows = row_totals(st.tables)
        data += [("RowsIn", rows["in"], "Count"), ("RowsValid", rows["valid"], "Count")]
        data.append(("RowsQuarantined", rows["quarantined"], "Count"))
        rate = combined_fraud_rate(st.tables)
        if rate is not None:
            data.append(("FraudRate", rate, "None"))
    dims = job_dimensions(s.dataset, INGEST_JOB)
    return put_metrics(s.namespace, dims, data, s.endpoint_url, s.region)


# ------------------------------------------------------------------------------------------------ the run


def run_ingest(s: IngestSettings, st: IngestRunState, events: EventLog) -> None:
    bucket = S3Bucket(make_client("s3", s.endpoint_url, s.region, CONCURRENCY), s.bucket)
    bucket.check()
    if s.cloudwatch and not s.check:
        events.connect(s.log_group, s.endpoint_url, s.region, s.bucket)
        st.log_stream = events.stream
    events("started", bucket=s.bucket, check=s.check, code_version=code_version())

    st.raws = resolve_raw(bucket, s.dataset)
    st.version = version = dataset_version(s.dataset, st.raws, S.fingerprint())
    st.keys = {
        "curated_prefix": layout.curated_prefix(s.dataset, version),
        "quarantine_prefix": layout.quarantine_prefix(s.dataset, version),
        "manifest": layout.manifest_key(s.dataset, version),
        "latest": layout.latest_key(s.dataset),
    }
    events("resolved", version=version, raw=[r.report() for r in st.raws])

    existing = bucket.get_json(st.keys["manifest"])
    latest = bucket.get_json(st.keys["latest"])
    pointer = layout.latest_pointer(s.dataset, version)
    if manifest_complete(bucket, existing, version):
        st.manifest = existing
        if latest == pointer:
            st.action = "unchanged"
        elif s.check:
            st.action = "would_promote"
        else:
            bucket.put_json(st.keys["latest"], pointer)
            st.action = "promoted"
        events(st.action, version=version, latest=st.keys["latest"])
        return
    if s.check:
        st.action = "would_create"
        events(st.action, version=version)
        return

    with work_dir_locked(s.work_dir, INGEST_PROG) as work:
        clear_work_dir(work, version)
        _build(s, st, events, bucket, work / version)


def _build(s: IngestSettings, st: IngestRunState, events: EventLog, bucket: S3Bucket, vdir: Path) -> None:
    """Download, validate and write locally, then publish: data, manifest, pointer."""
    t = time.monotonic()
    for r in st.raws:
        r.path = str(vdir / "raw" / r.spec.file)
    download_objects(bucket, [PinnedObject(r.key, r.version_id, r.size, r.path) for r in st.raws])
    st.phase_seconds["download"] = time.monotonic() - t
    events("downloaded", files=len(st.raws), bytes=sum(r.size for r in st.raws), seconds=round(time.monotonic() - t, 2))

    t = time.monotonic()
    out = vdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    _validate(s, st, events, str(out))
    st.phase_seconds["validate"] = time.monotonic() - t

    # Publish: data first, then the manifest (the version is complete), then the pointer.
    t = time.monotonic()
    st.bytes_uploaded += publish(bucket, str(out / "quarantine"), st.keys["quarantine_prefix"], "*.csv")
    st.bytes_uploaded += publish(bucket, str(out / "curated"), st.keys["curated_prefix"], "*.parquet")
    record = RunRecord(
        run_id=st.run_id,
        started=st.started,
        finished=datetime.now(timezone.utc),
        log_group=s.log_group if st.log_stream else None,
        log_stream=st.log_stream,
    )
    prefixes = (st.keys["curated_prefix"], st.keys["quarantine_prefix"])
    st.manifest = build_manifest(s.dataset, st.version, s.bucket, st.raws, st.tables, prefixes, record)
    bucket.put_json(st.keys["manifest"], st.manifest)
    bucket.put_json(st.keys["latest"], layout.latest_pointer(s.dataset, st.version))
    st.phase_seconds["publish"] = time.monotonic() - t
    st.action = "created"
    events(
        "published",
        version=st.version,
        manifest=st.keys["manifest"],
        latest=st.keys["latest"],
        bytes_uploaded=st.bytes_uploaded,
    )
    shutil.rmtree(vdir, ignore_errors=True)  # the bucket has it all now


def _validate(s: IngestSettings, st: IngestRunState, events: EventLog, out: str) -> None:
    """Curate the five files in contract order (references need the referenced table's keys); the raw files'
    SHA-256 (for the manifest) is computed meanwhile on another thread."""
    keys = S.KeyState()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
        hashes = {r.key: hasher.submit(file_sha256, r.path) for r in st.raws}
        for r in st.raws:
            res = curate_file(r.spec, r.path, out, keys, max_bad_fraction=s.max_bad_fraction)
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
            r.sha256 = hashes[r.key].result().hex()


def ingest_summary(s: IngestSettings | None, st: IngestRunState, seconds: float, msg: str | None = None) -> dict:
    m = st.manifest or {}
    if st.tables:
        tables = {
            t.name: {
                "rows_in": t.rows_in,
                "rows_valid": t.rows_valid,
                "rows_quarantined": t.rows_quarantined,
                "key": layout.curated_key(s.dataset, st.version, t.name),
                "quarantine_key": layout.quarantine_key(s.dataset, st.version, t.name) if t.quarantine_path else None,
            }
            for t in st.tables
        }
        rows, rate = row_totals(st.tables), combined_fraud_rate(st.tables)
    else:
        tables = {
            t["name"]: {k: t.get(k) for k in ("rows_in", "rows_valid", "rows_quarantined", "key", "quarantine_key")}
            for t in m.get("tables", [])
        }
        rows, rate = m.get("rows"), m.get("fraud_rate")
    out = {
        "job": INGEST_JOB,
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


def parse_ingest_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog=INGEST_PROG,
        description=doc.split("\n\n", 1)[0],
        epilog="See the module documentation (python -m pydoc fraud_demo_jobs.ingest, and fraud_demo_jobs.curate for "
        "the row and file rules) for the rules and layout.",
    )
    add_lake_flags(parser, f"dataset name, the {layout.raw_prefix('<dataset>')} prefix")
    parser.add_argument(
        "--work-dir",
        default=env("FRAUD_DEMO_WORK_DIR", DEFAULT_WORK_DIR),
        help=f"local scratch for the raw copies and outputs (env FRAUD_DEMO_WORK_DIR; {DEFAULT_WORK_DIR})",
    )
    parser.add_argument(
        "--max-bad-fraction",
        type=float,
        default=DEFAULT_MAX_BAD_FRACTION,
        help=f"refuse a file when more than this fraction of its rows is bad ({DEFAULT_MAX_BAD_FRACTION})",
    )
    add_reporting_flags(parser, "only read: report what a run would do")
    return parser.parse_args(argv)


def _ingest_usage_problem(args: argparse.Namespace) -> str | None:
    if not args.bucket:
        return "--bucket (or FRAUD_DEMO_BUCKET) is required"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.dataset or ""):
        return f"--dataset {args.dataset!r} is not a plain name (letters, digits, . _ -)"
    if not 0 <= args.max_bad_fraction < 1:
        return "--max-bad-fraction must be at least 0 and below 1"
    return None


def ingest_main(argv: list[str] | None = None) -> int:
    args = parse_ingest_args(argv)
    t0 = time.monotonic()
    now = datetime.now(timezone.utc)
    st = IngestRunState(run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", started=now)
    problem = _ingest_usage_problem(args)
    if problem:
        return fail(INGEST_PROG, problem, ingest_summary(None, st, time.monotonic() - t0, problem), EXIT_USAGE)
    settings = IngestSettings(
        bucket=args.bucket,
        dataset=args.dataset,
        work_dir=args.work_dir,
        **reporting_settings(args),
        max_bad_fraction=args.max_bad_fraction,
    )
    events = EventLog(INGEST_PROG, INGEST_JOB, st.run_id, settings.dataset)
    report = settings.cloudwatch and not settings.check
    return run_reported(
        INGEST_PROG,
        events,
        lambda: run_ingest(settings, st, events),
        lambda msg, seconds: ingest_summary(settings, st, seconds, msg),
        started=t0,
        publish=(lambda seconds: ingest_metrics(settings, st, seconds)) if report else None,
        finished=lambda: {"action": st.action, "version": st.version},
        failed=lambda: {"version": st.version},
        work_dir=settings.work_dir,
        stopped="nothing was published for this version (the next run resumes)",
    )


if __name__ == "__main__":
    sys.exit(ingest_main())
