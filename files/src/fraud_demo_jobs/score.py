"""Batch scoring of a curated version's test table with a registered model (``fraud-demo-score``).

Takes the model version the alias ``--alias`` (``champion``) names, or ``--model-version N``, and the curated
version ``curated/<dataset>/latest`` names, or ``--version``, and writes under
``s3://<bucket>/predictions/<model-version>/<dataset-version>/``:

    predictions.parquet   TransactionID, fraud_probability: one row per test transaction, in the table's order
    submission.csv        Kaggle's ``TransactionID,isFraud``, in sample_submission's order
    manifest.json         written last: the model's lineage (run, training dataset version, raw VersionIds, code),
                          the scored curated version and its raw VersionIds, rows, each object's key, bytes and
                          sha256, this job's code version, the creation time

The test table is read in chunks of ``--chunk-rows`` rows (only the columns the model's feature state reads),
each joined with its identity rows, transformed by the model's feature state and scored, so memory stays bounded
by a chunk whatever the table's size (a row's features never depend on the other rows scored with it). Before
anything is scored, the test table's TransactionIDs must be exactly sample_submission's: otherwise the job fails,
naming how many differ, and writes nothing.

Idempotent per (model version, dataset version): when the pair's manifest exists and every object it records is
there with its recorded size, nothing is read or written (``unchanged``). ``--check`` only reads and says
``would_score`` or ``unchanged``. The job never changes the registry or its aliases.

The last line on stdout is one JSON summary (``changed``, ``status``, ``model_version``, ``dataset_version``,
``rows``, ``keys``, ``seconds``, ...); on failure it carries ``failed`` and ``msg``. Events go to CloudWatch Logs
(stream ``score/<run-id>``), metrics to ``--metrics-namespace`` with Stage=score.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import gate as G
from . import layout, model_store
from . import tracking as T
from .aws import S3Bucket, make_client
from .checksums import code_version_of, file_sha256
from .cli import EXIT_USAGE, env, fail, work_dir_locked
from .curated_read import CuratedVersion, clear_work_dir, fetch_tables, resolve_curated
from .errors import JobError
from .job_flags import add_lake_flags, add_model_choice, add_registry_flags, run_fields
from .telemetry import (
    EventLog,
    add_reporting_flags,
    job_dimensions,
    put_metrics,
    reporting_settings,
    run_reported,
)

SCORE_JOB = "score"
SCORE_PROG = "fraud-demo-score"
DEFAULT_SCORE_WORK_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), SCORE_PROG)
# The code the scores depend on besides the model (recorded in the manifest).
SCORED_BY = (
    "score.py", "score_batch.py", "model_store.py", "features.py", "feature_input.py", "key_history.py", "modeling.py",
    "ieee_contract.py",
)  # fmt: skip
SCORING_TABLES = ("test_transaction", "test_identity", "sample_submission")
OUTPUTS = (layout.PREDICTIONS_FILE, layout.SUBMISSION_FILE)
# ~11 KiB per row at the peak of a chunk (the Arrow batch, its DataFrame, the joined frame, the features):
# 50,000 rows peak at ~1.7 GiB with a full-scale model, 100,000 at ~2.8 GiB, the whole test table at ~8.3 GiB.
DEFAULT_CHUNK_ROWS = 50_000
SCORES_FORMAT = 1
# A multipart upload of ours older than this under the pair's prefix was left by a killed run.
STALE_UPLOADS = timedelta(hours=6)


@dataclass
class ScoreSettings:
    bucket: str
    dataset: str
    version: str | None
    tracking_uri: str
    model_name: str
    alias: str | None
    model_version: str | None
    work_dir: str
    threads: int
    chunk_rows: int
    log_group: str
    namespace: str
    cloudwatch: bool
    check: bool
    endpoint_url: str | None = None
    region: str | None = None


@dataclass
class ScoreRunState:
    job_run_id: str
    status: str = ""
    model_version: str | None = None
    dataset_version: str | None = None
    rows: int | None = None
    keys: list[str] = field(default_factory=list)
    manifest_key: str | None = None
    lineage: dict | None = None
    log_stream: str | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)


def score_code_version() -> str:
    return code_version_of(SCORED_BY)


# ------------------------------------------------------------------------------------------------ the run


def run_score(s: ScoreSettings, st: ScoreRunState, events: EventLog) -> None:
    bucket = S3Bucket(make_client("s3", s.endpoint_url, s.region), s.bucket)
    bucket.check()
    T.check_server(s.tracking_uri)
    if s.cloudwatch and not s.check:
        events.connect(s.log_group, s.endpoint_url, s.region, s.bucket)
        st.log_stream = events.stream
    tr = T.Tracking(s.tracking_uri)
    mv = model_store.find_version(tr, s.model_name, alias=s.alias, version=s.model_version)
    if mv is None:
        raise JobError(_no_model(s))
    st.model_version = str(mv.version)
    cv = resolve_curated(bucket, s.dataset, s.version)
    st.dataset_version = cv.version
    st.manifest_key = layout.predictions_key(st.model_version, cv.version, layout.MANIFEST_NAME)
    st.keys = [layout.predictions_key(st.model_version, cv.version, name) for name in OUTPUTS]
    events("started", model_version=st.model_version, dataset_version=cv.version, check=s.check)

    done = complete_scores(bucket, st.manifest_key, st.model_version, cv.version)
    if done is not None:
        st.status, st.rows, st.lineage = "unchanged", done.get("rows"), done.get("model")
        events("unchanged", manifest=st.manifest_key)
        return
    if s.check:
        st.status = "would_score"
        events(st.status, manifest=st.manifest_key)
        return

    with work_dir_locked(s.work_dir, SCORE_PROG) as work:
        _score_and_write(s, st, tr, mv, bucket, cv, events, work)


def _no_model(s: ScoreSettings) -> str:
    return model_store.missing_version_message(s.model_name, s.alias, s.model_version, s.tracking_uri)


def complete_scores(bucket: S3Bucket, manifest_key: str, model_version: str, dataset_version: str) -> dict | None:
    """The pair's manifest when the scores are complete: it is ours, for this pair, and every object it records
    exists with its recorded size; None otherwise (then the pair is scored, and every object rewritten)."""
    doc = bucket.get_json(manifest_key)
    if not isinstance(doc, dict) or doc.get("format") != SCORES_FORMAT:
        return None
    if (doc.get("model") or {}).get("model_version") != model_version or doc.get("dataset_version") != dataset_version:
        return None
    objects = doc.get("objects")
    if not isinstance(objects, dict) or set(objects) != set(OUTPUTS):
        return None
    for entry in objects.values():
        head = bucket.head(str(entry.get("key")))
        if head is None or head.get("ContentLength") != entry.get("bytes"):
            return None
    return doc


def _score_and_write(s, st: ScoreRunState, tr, mv, bucket: S3Bucket, cv: CuratedVersion, events, work: Path):
    from .score_batch import score_tables, write_outputs

    clear_work_dir(work, keep=cv.version)  # the lock is held: a model-* directory left there is a killed run's
    t = time.monotonic()  # the model first: a version that cannot be loaded fails before the big download
    with tempfile.TemporaryDirectory(dir=work, prefix="model-") as tmp:
        model = model_store.load_version(tr, s.model_name, mv, tmp)
    st.lineage = model.lineage.as_dict()
    st.phase_seconds["load_model"] = time.monotonic() - t
    events("model_loaded", **{k: v for k, v in st.lineage.items() if k != "raw_version_ids"})
    t = time.monotonic()
    paths = fetch_tables(bucket, cv, list(SCORING_TABLES), str(work / cv.version / "curated"))
    st.phase_seconds["fetch"] = time.monotonic() - t

    t = time.monotonic()
    scored = score_tables(model, paths, s.chunk_rows, s.threads, lambda done: events("progress", rows=done))
    st.rows = len(scored.ids)
    st.phase_seconds["score"] = time.monotonic() - t
    out_dir = work / cv.version / "out" / st.model_version
    shutil.rmtree(out_dir, ignore_errors=True)
    t = time.monotonic()
    files = write_outputs(scored, str(out_dir))
    st.phase_seconds["write"] = time.monotonic() - t
    events("scored", rows=st.rows, files=sorted(files))

    t = time.monotonic()
    prefix = layout.predictions_prefix(st.model_version, cv.version)
    uploaded = _upload(bucket, str(out_dir), prefix)
    objects = {}
    for name in OUTPUTS:
        objects[name] = {
            "key": layout.predictions_key(st.model_version, cv.version, name),
            "bytes": os.path.getsize(files[name]),
            "sha256": file_sha256(files[name]).hex(),
            "version_id": uploaded.get(name),
        }
    bucket.put_json(st.manifest_key, _manifest(s, st, cv, objects))
    st.phase_seconds["upload"] = time.monotonic() - t
    st.status = "scored"
    events("written", manifest=st.manifest_key, keys=st.keys)


def _upload(bucket: S3Bucket, source: str, prefix: str) -> dict[str, str | None]:
    """The outputs up through the shared transfer code (multipart above its part size, checksummed, an object
    whose content is already there skipped); file name -> VersionId."""
    from .transfer import UploadOutcome, UploadRequest, find_files, upload_files

    req = UploadRequest(source=source, prefix=prefix, includes=list(OUTPUTS), stale_after=STALE_UPLOADS)
    out = UploadOutcome(files=find_files(req))
    upload_files(bucket, req, out, SCORE_PROG)
    return {lf.name: lf.version_id for lf in out.files}


def _manifest(s: ScoreSettings, st: ScoreRunState, cv: CuratedVersion, objects: dict) -> dict:
    return {
        "format": SCORES_FORMAT,
        "job": SCORE_JOB,
        "model": st.lineage,
        "dataset": s.dataset,
        "dataset_version": cv.version,
        "curated_manifest": layout.manifest_key(s.dataset, cv.version),
        "raw_version_ids": cv.raw_version_ids(),
        "code_version": score_code_version(),
        "rows": st.rows,
        "objects": objects,
        "job_run_id": st.job_run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def score_metrics(s: ScoreSettings, st: ScoreRunState, seconds: float) -> str | None:
    scored = st.status == "scored"
    data = [("DurationSeconds", seconds, "Seconds"), ("PredictionsWritten", 1.0 if scored else 0.0, "Count")]
    if scored and st.rows is not None:
        data.append(("RowsScored", float(st.rows), "Count"))
    return put_metrics(s.namespace, job_dimensions(s.dataset, SCORE_JOB), data, s.endpoint_url, s.region)


def score_summary(s: ScoreSettings | None, st: ScoreRunState, seconds: float, msg: str | None = None) -> dict:
    return {
        "job": SCORE_JOB,
        "changed": st.status in ("scored", "would_score"),
        "status": st.status or None,
        "model_name": s.model_name if s else None,
        "model_version": st.model_version,
        "dataset": s.dataset if s else None,
        "dataset_version": st.dataset_version,
        "rows": st.rows,
        "keys": st.keys + ([st.manifest_key] if st.manifest_key else []),
        "manifest": st.manifest_key,
        "lineage": st.lineage,
        **run_fields(s.bucket if s else None, st.job_run_id, st.log_stream, st.phase_seconds, seconds, msg),
    }


# ---------------------------------------------------------------------------------------------------- CLI


def parse_score_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog=SCORE_PROG,
        description=doc.split("\n\n", 1)[0],
        epilog="See python -m pydoc fraud_demo_jobs.score for the outputs and the rules.",
    )
    add_lake_flags(p)
    p.add_argument("--version", default=None, help="curated version to score (default: what `latest` names)")
    add_registry_flags(p)
    add_model_choice(p, "score with")
    p.add_argument("--threads", type=int, default=2, help="LightGBM threads (2)")
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"test rows transformed and scored at a time: bounds the memory ({DEFAULT_CHUNK_ROWS})",
    )
    p.add_argument(
        "--work-dir",
        default=env("FRAUD_DEMO_SCORE_WORK_DIR", DEFAULT_SCORE_WORK_DIR),
        help=f"local scratch (env FRAUD_DEMO_SCORE_WORK_DIR; {DEFAULT_SCORE_WORK_DIR})",
    )
    add_reporting_flags(p, "only read: report whether a run would score")
    return p.parse_args(argv)


_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _score_usage_problem(args: argparse.Namespace) -> str | None:
    if not args.bucket:
        return "--bucket (or FRAUD_DEMO_BUCKET) is required"
    if not args.tracking_uri:
        return f"--tracking-uri (or {T.TRACKING_URI_ENV}) is required: the MLflow server, e.g. http://127.0.0.1:5000"
    for flag, value in (("--dataset", args.dataset), ("--model-name", args.model_name), ("--alias", args.alias)):
        if value is not None and not _NAME.fullmatch(value):
            return f"{flag} {value!r} is not a plain name (letters, digits, . _ -)"
    if args.model_version is not None and not re.fullmatch(r"[1-9][0-9]*", args.model_version):
        return f"--model-version {args.model_version!r} is not a model version number (1, 2, ...)"
    if args.version is not None and not re.fullmatch(r"[0-9a-f]{16}", args.version):
        return f"--version {args.version!r} is not a curated version id (16 hex digits, as in curated/<dataset>/)"
    if not 1 <= args.threads <= 64:
        return f"--threads must be between 1 and 64, got {args.threads}"
    if args.chunk_rows < 1:
        return f"--chunk-rows must be at least 1, got {args.chunk_rows}"
    return None


def score_main(argv: list[str] | None = None) -> int:
    args = parse_score_args(argv)
    t0 = time.monotonic()
    now = datetime.now(timezone.utc)
    st = ScoreRunState(job_run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}")
    problem = _score_usage_problem(args)
    if problem:
        return fail(SCORE_PROG, problem, score_summary(None, st, time.monotonic() - t0, problem), EXIT_USAGE)
    settings = ScoreSettings(
        bucket=args.bucket,
        dataset=args.dataset,
        version=args.version,
        tracking_uri=args.tracking_uri.rstrip("/"),
        model_name=args.model_name,
        alias=None if args.model_version else (args.alias or G.CHAMPION),
        model_version=args.model_version,
        work_dir=args.work_dir,
        threads=args.threads,
        chunk_rows=args.chunk_rows,
        **reporting_settings(args),
    )
    events = EventLog(SCORE_PROG, SCORE_JOB, st.job_run_id, settings.dataset)
    report = settings.cloudwatch and not settings.check
    return run_reported(
        SCORE_PROG,
        events,
        lambda: run_score(settings, st, events),
        lambda msg, seconds: score_summary(settings, st, seconds, msg),
        started=t0,
        publish=(lambda seconds: score_metrics(settings, st, seconds)) if report else None,
        finished=lambda: {"status": st.status, "model_version": st.model_version, "rows": st.rows},
        failed=lambda: {"model_version": st.model_version, "dataset_version": st.dataset_version},
        work_dir=settings.work_dir,
        stopped="the pair's manifest was not written (the next run scores it again)",
    )


if __name__ == "__main__":
    sys.exit(score_main())
