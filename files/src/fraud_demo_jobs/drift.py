"""Data drift of the served model's inputs and scores (``fraud-demo-drift``): an Evidently report comparing a
reference sample from the model version's training window with a current sample, both scored by that version.

    reference   train_transaction (+ identity) of the curated version the model version was trained on (its
                tags), rows inside its train window (the split parameters of its MLflow run)
    current     ``--current latest``: the test tables of the curated version ``latest`` names; a curated version
                id: that version's test tables; ``inference``: the scoring service's samples of the last
                ``--inference-days`` days

Compared columns: the raw columns the model reads (TransactionID and TransactionDT excepted) and ``prediction``
(the fraud probability), with PSI (``drift_report``). Writes ``s3://<bucket>/reports/drift/<run>/``:

    report.html    Evidently's self-contained report (open it in a browser)
    report.json    Evidently's result as a dict
    summary.json   written last (a report is complete when it exists): our parsed result, the run's inputs

``<run>`` is named from the model version, the current data's identity, the settings and this code's version, so
a run with nothing new finds its complete report and is ``unchanged`` (nothing read, nothing re-sent).
``--check`` only reads and says ``would_report`` or ``unchanged``. Metrics (``--metrics-namespace``, Dataset,
Stage=monitor): DriftShare, DriftedColumns, PredictionDrift, FeatureDrift (one per top drifted column, with a
Feature dimension). The last line on stdout is one JSON summary; on failure it carries ``failed`` and ``msg``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import gate as G
from . import layout, model_store
from . import tracking as T
from .aws import S3Bucket, make_client
from .checksums import code_version_of
from .cli import EXIT_USAGE, env, fail, work_dir_locked
from .curated_read import CuratedVersion, clear_work_dir, fetch_tables, resolve_curated
from .drift_report import DEFAULT_COLUMN_THRESHOLD, DEFAULT_DRIFT_SHARE, DEFAULT_STATTEST
from .errors import JobError
from .job_flags import add_lake_flags, add_model_choice, add_registry_flags, run_fields
from .telemetry import (
    EventLog,
    add_reporting_flags,
    job_dimensions,
    metric_dimensions,
    put_metric_data,
    reporting_settings,
    run_reported,
)

DRIFT_JOB = "drift"
DRIFT_STAGE = "monitor"
DRIFT_PROG = "fraud-demo-drift"
DEFAULT_DRIFT_WORK_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), DRIFT_PROG)
DRIFTED_BY = ("drift.py", "drift_report.py", "drift_data.py", "model_store.py", "features.py", "feature_input.py",
              "key_history.py", "modeling.py", "ieee_contract.py")  # fmt: skip
CURRENT_LATEST, CURRENT_INFERENCE = "latest", "inference"
REFERENCE_TABLES = ("train_transaction", "train_identity")
CURRENT_TABLES = ("test_transaction", "test_identity")
TOP_FEATURES = 5
# Evidently costs ~0.5 s per column (its statistics and plots), whatever the rows: the 50 raw columns the model
# relies on most keep a full-scale run near a minute; the model reads ~430 (--columns 0: all of them).
DEFAULT_COLUMNS = 50
SUMMARY_FORMAT = 1
_VERSION = re.compile(r"[0-9a-f]{16}")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass
class DriftSettings:
    bucket: str
    dataset: str
    tracking_uri: str
    model_name: str
    alias: str | None
    model_version: str | None
    current: str
    inference_days: int
    reference_rows: int
    current_rows: int
    columns: int
    seed: int
    threshold: float
    column_threshold: float
    stattest: str
    threads: int
    work_dir: str
    log_group: str
    namespace: str
    cloudwatch: bool
    check: bool
    endpoint_url: str | None = None
    region: str | None = None

    def identity(self) -> dict:
        """The settings a report depends on (its run name hashes them)."""
        keys = ("dataset", "model_name", "inference_days", "reference_rows", "current_rows", "columns", "seed",
                "threshold", "column_threshold", "stattest")  # fmt: skip
        return {k: getattr(self, k) for k in keys}


@dataclass
class DriftRunState:
    job_run_id: str
    status: str = ""
    run: str | None = None
    model_version: str | None = None
    reference: dict = field(default_factory=dict)
    current: dict = field(default_factory=dict)
    result: dict | None = None  # the stored summary's drift fields (see _result_fields)
    skipped: list[str] = field(default_factory=list)  # columns without a value in one of the samples
    report: dict = field(default_factory=dict)
    log_stream: str | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class CurrentData:
    """What ``--current`` resolved to: a curated version, or inference keys."""

    source: str  # curated | inference
    version: CuratedVersion | None
    keys: list[str]

    def identity(self) -> dict:
        if self.version is not None:
            return {"source": self.source, "dataset_version": self.version.version}
        return {"source": self.source, "keys": self.keys}


def drift_code_version() -> str:
    return code_version_of(DRIFTED_BY)


def run_name(model_name: str, model_version: str, reference_version: str, current: CurrentData, s: DriftSettings):
    """reports/drift/<run>/: the same inputs, settings and code give the same name."""
    doc = {"model": [model_name, model_version, reference_version], "current": current.identity()}
    doc |= {"settings": s.identity(), "code": drift_code_version()}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    return f"v{model_version}-{current.source}-{digest}"


# ------------------------------------------------------------------------------------------------ the run


def run_drift(s: DriftSettings, st: DriftRunState, events: EventLog) -> None:
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
    lineage = model_store.ModelLineage.of(s.model_name, mv)
    ref_cv = _reference_version(bucket, s, lineage)
    current = _current_data(bucket, s)
    st.run = run_name(s.model_name, st.model_version, ref_cv.version, current, s)
    st.reference = {"dataset_version": ref_cv.version, "rows": None, "window": None}
    st.current = {"source": current.source, "dataset_version": current.version and current.version.version}
    st.current["rows"] = None
    st.report = {name: f"s3://{s.bucket}/{layout.drift_report_key(st.run, file)}" for name, file in _FILES.items()}
    events("started", run=st.run, model_version=st.model_version, reference=ref_cv.version, current=st.current)

    done = complete_report(bucket, st.run)
    if done is not None:
        st.status = "unchanged"
        _restore(st, done)
        events("unchanged", run=st.run)
        return
    if s.check:
        st.status = "would_report"
        events(st.status, run=st.run)
        return
    with work_dir_locked(s.work_dir, DRIFT_PROG) as work:
        _report_and_write(s, st, tr, mv, bucket, ref_cv, current, events, work)


_FILES = {"html": layout.DRIFT_HTML, "json": layout.DRIFT_JSON, "summary": layout.DRIFT_SUMMARY}


def _no_model(s: DriftSettings) -> str:
    return model_store.missing_version_message(s.model_name, s.alias, s.model_version, s.tracking_uri)


def _reference_version(bucket: S3Bucket, s: DriftSettings, lineage: model_store.ModelLineage) -> CuratedVersion:
    """The curated version the model was trained on; a clear failure when the tags lack it or it is gone."""
    name = f"model {s.model_name} v{lineage.model_version}"
    version = lineage.dataset_version
    if not version or lineage.dataset not in (None, s.dataset):
        raise JobError(
            f"{name} has no training dataset version of {s.dataset} in its tags ({T.TAG_DATASET_VERSION}): it was "
            "not trained by fraud-demo-train on this dataset; retrain (playbooks/train.yml) or pass --model-version"
        )
    if bucket.get_json(layout.manifest_key(s.dataset, version)) is None:
        raise JobError(
            f"the reference data is gone: {name} was trained on curated version {version} of {s.dataset}, and "
            f"s3://{s.bucket}/{layout.manifest_key(s.dataset, version)} does not exist any more; retrain on the "
            "current data (playbooks/train.yml), or re-create that version by ingesting its raw objects again "
            f"(their VersionIds are in the model's tag {T.TAG_RAW_VERSIONS})"
        )
    return resolve_curated(bucket, s.dataset, version)


def _current_data(bucket: S3Bucket, s: DriftSettings) -> CurrentData:
    if s.current == CURRENT_INFERENCE:
        from .drift_data import inference_keys

        today = datetime.now(timezone.utc).date()
        keys = inference_keys(bucket, today, s.inference_days)
        if not keys:
            raise JobError(
                f"no current data: no inference samples under s3://{s.bucket}/{layout.INFERENCE} in the last "
                f"{s.inference_days} days; the scoring service writes them when its --sample-rate is above 0 "
                "(playbooks/deploy.yml), or pass --current latest (the newest curated test tables)"
            )
        return CurrentData("inference", None, keys)
    if s.current == CURRENT_LATEST:
        return CurrentData("curated", resolve_curated(bucket, s.dataset, None), [])
    if bucket.get_json(layout.manifest_key(s.dataset, s.current)) is None:
        raise JobError(
            f"no current data: curated version {s.current} of {s.dataset} does not exist (s3://{s.bucket}/"
            f"{layout.manifest_key(s.dataset, s.current)} is missing); pass --current latest or an existing version"
        )
    return CurrentData("curated", resolve_curated(bucket, s.dataset, s.current), [])


def complete_report(bucket: S3Bucket, run: str) -> dict | None:
    """The run's stored summary when its report is complete: the summary is ours, for this run, and the two
    objects it records are there with their recorded sizes; None otherwise (then it is written again)."""
    doc = bucket.get_json(layout.drift_report_key(run, layout.DRIFT_SUMMARY))
    if not isinstance(doc, dict) or doc.get("format") != SUMMARY_FORMAT or doc.get("run") != run:
        return None
    for name in (layout.DRIFT_HTML, layout.DRIFT_JSON):
        head = bucket.head(layout.drift_report_key(run, name))
        if head is None or head.get("ContentLength") != (doc.get("bytes") or {}).get(name):
            return None
    return doc


def _restore(st: DriftRunState, doc: dict) -> None:
    st.reference = doc.get("reference") or st.reference
    st.current = doc.get("current") or st.current
    st.result = {k: doc.get(k) for k in _RESULT_KEYS}


_RESULT_KEYS = ("columns", "drifted_columns", "drift_share", "threshold", "drift_detected", "top_drifted",
                "prediction_drift", "skipped_columns")  # fmt: skip


def _report_and_write(s, st, tr, mv, bucket: S3Bucket, ref_cv: CuratedVersion, current: CurrentData, events, work):
    from . import drift_data as D
    from . import drift_report as R

    keep = {ref_cv.version} | ({current.version.version} if current.version else set())
    clear_work_dir(work, keep=keep)  # the lock is held: anything else there is a killed run's or an old version's
    t = time.monotonic()
    with tempfile.TemporaryDirectory(dir=work, prefix="model-") as tmp:
        model = model_store.load_version(tr, s.model_name, mv, tmp)
    st.phase_seconds["load_model"] = time.monotonic() - t

    t = time.monotonic()
    spec = D.split_spec(tr.run_params(mv.run_id))
    ref_paths = fetch_tables(bucket, ref_cv, list(REFERENCE_TABLES), str(work / ref_cv.version / "curated"))
    cur_paths = None
    if current.version is not None:
        cur_paths = fetch_tables(
            bucket, current.version, list(CURRENT_TABLES), str(work / current.version.version / "curated")
        )
    st.phase_seconds["fetch"] = time.monotonic() - t

    t = time.monotonic()
    window = D.reference_window(ref_paths["train_transaction"], spec)
    columns = D.drift_columns(model, s.columns)
    ref = D.curated_sample(model, ref_paths, REFERENCE_TABLES, columns, s.reference_rows, s.seed, window[1], s.threads)
    if ref.available == 0:
        raise JobError(f"no reference data: curated version {ref_cv.version} has no rows in the train window {window}")
    st.reference = {"dataset_version": ref_cv.version, "rows": len(ref.frame), "window": list(window)}
    if cur_paths is not None:
        cur = D.curated_sample(model, cur_paths, CURRENT_TABLES, columns, s.current_rows, s.seed, None, s.threads)
    else:
        cur = D.inference_sample(model, bucket, current.keys, columns, s.current_rows, s.seed, s.threads)
    if cur.available == 0:
        raise JobError(f"no current data: {current.identity()} has no rows; ingest (or serve) some first")
    st.current["rows"] = len(cur.frame)
    st.phase_seconds["sample"] = time.monotonic() - t
    events("sampled", reference=st.reference, current=st.current)

    t = time.monotonic()
    schema, st.skipped = R.Schema(*D.column_kinds(list(ref.frame.columns))).comparable(ref.frame, cur.frame)
    snapshot = R.run_report(ref.frame, cur.frame, schema, s.stattest, s.column_threshold, s.threshold)
    report = snapshot.dict()
    result = R.parse_result(report, s.threshold)
    st.phase_seconds["report"] = time.monotonic() - t

    t = time.monotonic()
    out = work / "out" / st.run
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    snapshot.save_html(str(out / layout.DRIFT_HTML))
    (out / layout.DRIFT_JSON).write_text(json.dumps(report, default=str))
    st.result = _result_fields(result) | {"skipped_columns": st.skipped}
    doc = _summary_doc(s, st, out)
    st.phase_seconds["render"] = time.monotonic() - t

    t = time.monotonic()
    for name in (layout.DRIFT_HTML, layout.DRIFT_JSON):
        _put_file(bucket, layout.drift_report_key(st.run, name), out / name)
    bucket.put_json(layout.drift_report_key(st.run, layout.DRIFT_SUMMARY), doc)  # last: the report is complete
    st.phase_seconds["upload"] = time.monotonic() - t
    st.status = "reported"
    events("drift_reported", run=st.run, drift_share=result.drift_share, drift_detected=result.drift_detected,
           top_drifted=st.result["top_drifted"], report=st.report["html"])  # fmt: skip


def _result_fields(result) -> dict:
    from .drift_data import PREDICTION

    pred = result.column(PREDICTION)
    top = result.top(TOP_FEATURES, exclude=(PREDICTION,))
    return {
        "columns": len(result.columns),
        "drifted_columns": result.drifted_columns,
        "drift_share": round(result.drift_share, 6),
        "threshold": result.threshold,
        "drift_detected": result.drift_detected,
        "top_drifted": [_column(c) for c in top],
        "prediction_drift": {"score": _num(pred.score), "drifted": pred.drifted} if pred else None,
        "all_columns": [_column(c) for c in result.columns],
    }


def _column(c) -> dict:
    return {"column": c.column, "score": _num(c.score), "stattest": c.stattest, "drifted": c.drifted}


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)  # NaN is not JSON


def _summary_doc(s: DriftSettings, st: DriftRunState, out: Path) -> dict:
    return {
        "format": SUMMARY_FORMAT,
        "job": DRIFT_JOB,
        "run": st.run,
        "model_name": s.model_name,
        "model_version": st.model_version,
        "dataset": s.dataset,
        "reference": st.reference,
        "current": st.current,
        **st.result,
        "settings": s.identity(),
        "code_version": drift_code_version(),
        "report": st.report,
        "bytes": {name: os.path.getsize(out / name) for name in (layout.DRIFT_HTML, layout.DRIFT_JSON)},
        "job_run_id": st.job_run_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _put_file(bucket: S3Bucket, key: str, path: Path) -> None:
    content_type = "text/html; charset=utf-8" if path.suffix == ".html" else "application/json"
    with open(path, "rb") as f:
        bucket.call(f"PutObject {key}", bucket.client.put_object, Key=key, Body=f, ContentType=content_type,
                    ChecksumAlgorithm="SHA256")  # fmt: skip


def drift_metrics(s: DriftSettings, st: DriftRunState) -> str | None:
    """DriftShare, DriftedColumns, PredictionDrift, and FeatureDrift per top column (only for a new report)."""
    if st.status != "reported" or not st.result:
        return None
    base = job_dimensions(s.dataset, DRIFT_STAGE)
    dims = metric_dimensions(base)
    r = st.result

    def datum(name: str, value: float, unit: str, dimensions: list[dict]) -> dict:
        return {"MetricName": name, "Value": float(value), "Unit": unit, "Dimensions": dimensions}

    data = [
        datum("DriftShare", r["drift_share"], "None", dims),
        datum("DriftedColumns", r["drifted_columns"], "Count", dims),
    ]
    if r["prediction_drift"] and r["prediction_drift"]["score"] is not None:
        data.append(datum("PredictionDrift", r["prediction_drift"]["score"], "None", dims))
    for c in r["top_drifted"]:
        if c["score"] is not None:
            data.append(datum("FeatureDrift", c["score"], "None", metric_dimensions({**base, "Feature": c["column"]})))
    return put_metric_data(s.namespace, data, s.endpoint_url, s.region)


def drift_summary(s: DriftSettings | None, st: DriftRunState, seconds: float, msg: str | None = None) -> dict:
    r = st.result or {}
    return {
        "job": DRIFT_JOB,
        "changed": st.status in ("reported", "would_report"),
        "status": st.status or None,
        "run": st.run,
        "model_name": s.model_name if s else None,
        "model_version": st.model_version,
        "reference": st.reference or None,
        "current": st.current or None,
        "columns": r.get("columns"),
        "drifted_columns": r.get("drifted_columns"),
        "drift_share": r.get("drift_share"),
        "threshold": s.threshold if s else None,
        "drift_detected": r.get("drift_detected"),
        "top_drifted": r.get("top_drifted"),
        "prediction_drift": r.get("prediction_drift"),
        "skipped_columns": r.get("skipped_columns"),
        "report": st.report or None,
        **run_fields(s.bucket if s else None, st.job_run_id, st.log_stream, st.phase_seconds, seconds, msg),
    }


# ---------------------------------------------------------------------------------------------------- CLI


def parse_drift_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog=DRIFT_PROG,
        description=doc.split("\n\n", 1)[0],
        epilog="See python -m pydoc fraud_demo_jobs.drift for the outputs and the rules.",
    )
    add_lake_flags(p)
    add_registry_flags(p)
    add_model_choice(p, "compare with")
    p.add_argument(
        "--current",
        default=env("FRAUD_DEMO_DRIFT_CURRENT", CURRENT_LATEST),
        help="current data: latest (the test tables of the curated version `latest` names), inference (the "
        "scoring service's samples), or a curated version id (env FRAUD_DEMO_DRIFT_CURRENT; latest)",
    )
    _number(
        p,
        "--inference-days",
        int,
        7,
        "days of inference samples with --current inference",
    )
    _number(p, "--reference-rows", int, 50_000, "rows sampled from the train window")
    _number(p, "--current-rows", int, 50_000, "rows sampled from the current data")
    _number(
        p,
        "--columns",
        int,
        DEFAULT_COLUMNS,
        "raw columns compared, those the model relies on most (by the gain of its features built on each); 0: all",
    )
    _number(p, "--seed", int, 42, "seed of both samples")
    _number(p, "--threshold", float, DEFAULT_DRIFT_SHARE, "share of drifted columns at/above which drift_detected")
    _number(
        p,
        "--column-threshold",
        float,
        DEFAULT_COLUMN_THRESHOLD,
        "PSI at/above which a column has drifted (0.2: a significant shift by the usual PSI convention)",
    )
    p.add_argument("--threads", type=int, default=2, help="LightGBM threads for the scores (2)")
    p.add_argument(
        "--work-dir",
        default=env("FRAUD_DEMO_DRIFT_WORK_DIR", DEFAULT_DRIFT_WORK_DIR),
        help=f"local scratch (env FRAUD_DEMO_DRIFT_WORK_DIR; {DEFAULT_DRIFT_WORK_DIR})",
    )
    add_reporting_flags(p, "only read: report whether a run would write a new report")
    return p.parse_args(argv)


def _number(p: argparse.ArgumentParser, flag: str, kind: type, default: float, text: str) -> None:
    """A numeric flag defaulting to env FRAUD_DEMO_DRIFT_<FLAG>: argparse converts a string default with ``kind``,
    so a malformed variable is a usage error naming the flag."""
    var = "FRAUD_DEMO_DRIFT_" + flag.removeprefix("--").replace("-", "_").upper()
    p.add_argument(flag, type=kind, default=env(var, str(default)), help=f"{text} (env {var}; {default})")


def _drift_usage_problem(args: argparse.Namespace) -> str | None:
    if not args.bucket:
        return "--bucket (or FRAUD_DEMO_BUCKET) is required"
    if not args.tracking_uri:
        return f"--tracking-uri (or {T.TRACKING_URI_ENV}) is required: the MLflow server, e.g. http://127.0.0.1:5000"
    for flag, value in (("--dataset", args.dataset), ("--model-name", args.model_name), ("--alias", args.alias)):
        if value is not None and not _NAME.fullmatch(value):
            return f"{flag} {value!r} is not a plain name (letters, digits, . _ -)"
    if args.model_version is not None and not re.fullmatch(r"[1-9][0-9]*", args.model_version):
        return f"--model-version {args.model_version!r} is not a model version number (1, 2, ...)"
    if args.current not in (CURRENT_LATEST, CURRENT_INFERENCE) and not _VERSION.fullmatch(args.current):
        return f"--current {args.current!r} is not latest, inference or a curated version id (16 hex digits)"
    if not 1 <= args.inference_days <= 366:
        return f"--inference-days must be between 1 and 366, got {args.inference_days}"
    for flag, value in (("--reference-rows", args.reference_rows), ("--current-rows", args.current_rows)):
        if not 100 <= value <= 10_000_000:
            return f"{flag} must be between 100 and 10000000, got {value}"
    if args.columns < 0:
        return f"--columns must be 0 (all) or more, got {args.columns}"
    if not 0 < args.threshold <= 1:
        return f"--threshold is a share of columns, above 0 and at most 1, got {args.threshold}"
    if not 0 < args.column_threshold < 10:
        return f"--column-threshold is a PSI above 0 (0.1 moderate, 0.2 significant), got {args.column_threshold}"
    if not 1 <= args.threads <= 64:
        return f"--threads must be between 1 and 64, got {args.threads}"
    return None


def drift_main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    now = datetime.now(timezone.utc)
    st = DriftRunState(job_run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}")
    args = parse_drift_args(argv)
    problem = _drift_usage_problem(args)
    if problem:
        return fail(DRIFT_PROG, problem, drift_summary(None, st, time.monotonic() - t0, problem), EXIT_USAGE)
    settings = DriftSettings(
        bucket=args.bucket,
        dataset=args.dataset,
        tracking_uri=args.tracking_uri.rstrip("/"),
        model_name=args.model_name,
        alias=None if args.model_version else (args.alias or G.CHAMPION),
        model_version=args.model_version,
        current=args.current,
        inference_days=args.inference_days,
        reference_rows=args.reference_rows,
        current_rows=args.current_rows,
        columns=args.columns,
        seed=args.seed,
        threshold=args.threshold,
        column_threshold=args.column_threshold,
        stattest=DEFAULT_STATTEST,
        threads=args.threads,
        work_dir=args.work_dir,
        **reporting_settings(args),
    )
    events = EventLog(DRIFT_PROG, DRIFT_JOB, st.job_run_id, settings.dataset)
    report = settings.cloudwatch and not settings.check
    return run_reported(
        DRIFT_PROG,
        events,
        lambda: run_drift(settings, st, events),
        lambda msg, seconds: drift_summary(settings, st, seconds, msg),
        started=t0,
        publish=(lambda seconds: drift_metrics(settings, st)) if report else None,
        finished=lambda: {"status": st.status, "run": st.run, "drift_share": (st.result or {}).get("drift_share")},
        failed=lambda: {"model_version": st.model_version, "run": st.run},
        work_dir=settings.work_dir,
        stopped="the report's summary.json was not written (the next run writes the report again)",
    )


if __name__ == "__main__":
    sys.exit(drift_main())
