"""Train, evaluate, register and gate a fraud model from a curated version (``fraud-demo-train``).

Reads the curated version that ``curated/<dataset>/latest`` points to (or ``--version``), exactly the Parquet
objects its manifest names (checked against the manifest's sha256), and:

1. splits it on ``TransactionDT``: train window | gap | holdout (the last ``--holdout-days``); the last
   ``--valid-days`` of the train window are the early-stopping slice; nothing of the holdout is seen before
   evaluation (``fraud_demo_jobs.features``);
2. fits the label-free feature state on the train window only (frequency encodings, category codes, client-key
   aggregates) and trains LightGBM with a fixed seed, ``deterministic=true`` and a fixed thread count
   (``fraud_demo_jobs.modeling``);
3. evaluates on the holdout: ROC-AUC, PR-AUC, recall at 1 % FPR, precision in the top 1 %, and ROC, PR and
   feature-importance plots;
4. logs one MLflow run (params, metrics, plots, the manifest as the run's input, code version, the model as a
   LightGBM Booster with its feature state, signature and input example) and registers it in ``--model-name``;
5. gates it (``fraud_demo_jobs.gate``): alias ``champion`` when it passes the guardrails and beats the current
   champion, re-scored on this same holdout, by at least ``--min-auc-gain``; else alias ``challenger`` and the
   reason; then backs the registry database up to ``s3://<bucket>/registry/`` (``--registry-db``).

Backends (``--backend``, ``fraud_demo_jobs.train_backend``): ``local`` does all of it in this process; ``dask`` does
steps 1-2 on a Dask cluster (``fraud_demo_jobs.dask_train``: the same split, feature state and parameters) and the
rest here, with the same code.

Idempotent: a run is keyed by (dataset version, code version, settings); when a FINISHED run with that key exists,
nothing is trained (``unchanged``). ``--check`` only reads and says ``would_train`` or ``unchanged``.

The last line on stdout is one JSON summary (``changed``, ``action``, model and dataset versions, the decision and
its reason, both AUCs, metrics, plots); on failure it carries ``failed`` and ``msg`` and the exit status is
non-zero; the MLflow run, if one was started, ends FAILED (KILLED on SIGTERM/Ctrl-C) and no version is registered.
Events go to CloudWatch Logs (stream ``train/<run-id>``), metrics to ``--metrics-namespace`` (Stage=train).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from . import gate as G
from . import tracking as T
from .aws import S3Bucket, make_client
from .checksums import code_version_of
from .cli import EXIT_USAGE, env, fail, work_dir_locked
from .curated_read import resolve_curated
from .errors import JobError
from .features import SplitSpec
from .gate import GateSettings
from .job_flags import add_lake_flags, add_registry_flags, run_fields
from .modeling import TrainParams
from .telemetry import (
    EventLog,
    add_reporting_flags,
    job_dimensions,
    put_metrics,
    reporting_settings,
    run_reported,
)
from .train_backend import LOCAL, DaskSettings, add_backend_flags, backend_settings

TRAIN_JOB = "train"
TRAIN_PROG = "fraud-demo-train"
DEFAULT_TRAIN_WORK_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), TRAIN_PROG)
# The code a model depends on: a change to any of these trains a new model version on the same data.
TRAINED_BY = ("features.py", "feature_input.py", "key_history.py", "modeling.py", "train.py", "ieee_contract.py")
TRAINING_TABLES = ("train_transaction", "train_identity")
# ... and, for a model trained on a Dask cluster, the Dask backend's code.
DASK_TRAINED_BY = ("dask_train.py",)


@dataclass
class TrainSettings:
    bucket: str
    dataset: str
    version: str | None
    tracking_uri: str
    experiment: str
    model_name: str
    registry_db: str | None
    split: SplitSpec
    params: TrainParams
    gate: GateSettings
    work_dir: str
    log_group: str
    namespace: str
    cloudwatch: bool
    check: bool
    endpoint_url: str | None = None
    region: str | None = None
    backend: str = LOCAL
    dask: DaskSettings | None = None


@dataclass
class TrainRunState:
    job_run_id: str
    action: str = ""
    dataset_version: str | None = None
    training_key: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None
    model_version: str | None = None
    decision: dict | None = None
    metrics: dict = field(default_factory=dict)
    champion_before: dict | None = None
    champion: dict | None = None
    split: dict | None = None
    plots: list[str] = field(default_factory=list)
    artifact_uri: str | None = None
    registry_backup: dict | None = None
    orphans: list[str] = field(default_factory=list)
    orphans_completed: list[str] = field(default_factory=list)
    log_stream: str | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    dask: dict | None = None  # the Dask backend's cluster report (summary "dask")


def train_code_version() -> str:
    return code_version_of(TRAINED_BY)


def training_key(s: TrainSettings, dataset_version: str) -> str:
    """What decides the model (the feature code is part of the code version): the same key never makes a second
    model version."""
    doc = {
        "dataset": s.dataset,
        "dataset_version": dataset_version,
        "code_version": train_code_version(),
        "split": asdict(s.split),
        "params": asdict(s.params),
        "model_name": s.model_name,
    }
    if s.backend != LOCAL:  # another backend trains another model (the local key is unchanged)
        doc |= {"backend": s.backend, "backend_code_version": code_version_of(DASK_TRAINED_BY)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


# ------------------------------------------------------------------------------------------------ the run


def run_train(s: TrainSettings, st: TrainRunState, events: EventLog) -> None:
    bucket = S3Bucket(make_client("s3", s.endpoint_url, s.region), s.bucket)
    bucket.check()
    T.check_server(s.tracking_uri)
    if s.cloudwatch and not s.check:
        events.connect(s.log_group, s.endpoint_url, s.region, s.bucket)
        st.log_stream = events.stream
    cv = resolve_curated(bucket, s.dataset, s.version)
    st.dataset_version = cv.version
    st.training_key = training_key(s, cv.version)
    events("started", dataset_version=cv.version, training_key=st.training_key, check=s.check)

    tr = T.Tracking(s.tracking_uri)
    st.experiment_id = tr.experiment_id(s.experiment, create=not s.check)
    done = tr.finished_run(st.experiment_id, st.training_key) if st.experiment_id else None
    if done is not None:
        _report_unchanged(s, st, tr, done)
        events("unchanged", run_id=st.run_id, model_version=st.model_version)
        _back_up(s, st, bucket, events)  # a backup that failed after the training is retried here
        return
    if s.check:
        st.action = "would_train"
        _report_champion(s, st, tr)
        events(st.action, dataset_version=cv.version)
        return

    with work_dir_locked(s.work_dir, TRAIN_PROG) as work:
        st.orphans_completed = tr.finish_committed_orphans(st.experiment_id, TRAIN_JOB, s.model_name)
        st.orphans = tr.fail_orphans(st.experiment_id, TRAIN_JOB, s.model_name)
        if st.orphans:
            events("orphans_failed", runs=st.orphans)
        done = None
        if st.orphans_completed:  # one of them may be this very training, committed by a run that then died
            events("orphans_completed", runs=st.orphans_completed)
            done = tr.finished_run(st.experiment_id, st.training_key)
        if done is not None:
            _report_unchanged(s, st, tr, done)
            events("unchanged", run_id=st.run_id, model_version=st.model_version)
        else:
            from .train_run import train_and_register

            train_and_register(s, st, tr, bucket, cv, events, work / cv.version)
    try:
        _back_up(s, st, bucket, events)
    except JobError as e:
        raise JobError(
            f"model version {st.model_version} is registered ({st.decision and st.decision.get('alias')}), but the "
            f"registry backup failed: {e}; the next run retries it"
        ) from e


def _back_up(s: TrainSettings, st: TrainRunState, bucket: S3Bucket, events: EventLog) -> None:
    """Copy the registry database to registry/ (skipped when unchanged), so the registry survives the node."""
    if s.check or not s.registry_db:
        return
    from .registry_backup import backup_registry

    st.registry_backup = backup_registry(s.registry_db, bucket)
    events("registry_backup", **st.registry_backup)


def _report_unchanged(s: TrainSettings, st: TrainRunState, tr: T.Tracking, run) -> None:
    st.action = "unchanged"
    st.run_id = run.info.run_id
    st.artifact_uri = run.info.artifact_uri
    tags = run.data.tags
    st.model_version = tags.get(T.TAG_MODEL_VERSION)
    st.metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("holdout_")}
    st.decision = {"alias": tags.get(T.TAG_DECISION), "reason": tags.get(T.TAG_REASON), "promoted": None}
    _report_champion(s, st, tr)


def _report_champion(s: TrainSettings, st: TrainRunState, tr: T.Tracking) -> None:
    mv = tr.alias_version(s.model_name, G.CHAMPION) if st.experiment_id or not s.check else None
    st.champion = champion_record(mv)


def champion_record(mv) -> dict | None:
    if mv is None:
        return None
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "dataset_version": (mv.tags or {}).get(T.TAG_DATASET_VERSION),
    }


def train_metrics(s: TrainSettings, st: TrainRunState, seconds: float) -> str | None:
    """CloudWatch metrics of the run; a warning instead of a failure (the model is registered by then)."""
    trained = st.action == "trained"
    data = [("DurationSeconds", seconds, "Seconds"), ("ModelVersionCreated", 1.0 if trained else 0.0, "Count")]
    if trained and st.decision:
        data.append(("Promoted", 1.0 if st.decision.get("promoted") else 0.0, "Count"))
        for name, metric in (("HoldoutAUC", "holdout_roc_auc"), ("HoldoutPRAUC", "holdout_pr_auc")):
            if st.metrics.get(metric) is not None:
                data.append((name, float(st.metrics[metric]), "None"))
        champion_auc = st.decision.get("champion_auc")
        if champion_auc is not None and not math.isnan(champion_auc):
            data.append(("ChampionHoldoutAUC", float(champion_auc), "None"))
    return put_metrics(s.namespace, job_dimensions(s.dataset, TRAIN_JOB), data, s.endpoint_url, s.region)


def train_summary(s: TrainSettings | None, st: TrainRunState, seconds: float, msg: str | None = None) -> dict:
    decision = st.decision or {}
    out = {
        "job": TRAIN_JOB,
        "changed": st.action in ("trained", "would_train") or bool((st.registry_backup or {}).get("changed")),
        "action": st.action or None,
        "dataset": s.dataset if s else None,
        "dataset_version": st.dataset_version,
        "model_name": s.model_name if s else None,
        "model_version": st.model_version,
        "run_id": st.run_id,
        "experiment_id": st.experiment_id,
        "decision": decision.get("alias"),
        "promoted": decision.get("promoted"),
        "reason": decision.get("reason"),
        "candidate_auc": decision.get("candidate_auc"),
        "champion_auc": decision.get("champion_auc"),
        "metrics": {k.removeprefix("holdout_"): v for k, v in st.metrics.items() if k.startswith("holdout_")},
        "split": st.split,
        "champion_before": st.champion_before,
        "champion": st.champion,
        "plots": st.plots,
        "artifact_uri": st.artifact_uri,
        "tracking_uri": s.tracking_uri if s else None,
        "training_key": st.training_key,
        "registry_backup": st.registry_backup,
        "orphans_failed": st.orphans,
        "orphans_completed": st.orphans_completed,
    }
    if s is not None and s.backend != LOCAL:  # the local summary stays as it was
        out |= {"backend": s.backend, "dask": st.dask}
    return {
        **out,
        **run_fields(s.bucket if s else None, st.job_run_id, st.log_stream, st.phase_seconds, seconds, msg),
    }


# ---------------------------------------------------------------------------------------------------- CLI


def _add_float(parser: argparse.ArgumentParser, flag: str, default: float, text: str) -> None:
    parser.add_argument(flag, type=float, default=default, help=f"{text} ({default})")


def parse_train_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog=TRAIN_PROG,
        description=doc.split("\n\n", 1)[0],
        epilog="See python -m pydoc fraud_demo_jobs.train (and .features, .modeling, .gate) for the rules.",
    )
    add_lake_flags(p)
    p.add_argument("--version", default=None, help="curated version to train on (default: what `latest` names)")
    add_registry_flags(p)
    p.add_argument("--experiment", default=T.DEFAULT_EXPERIMENT, help=f"MLflow experiment ({T.DEFAULT_EXPERIMENT})")
    p.add_argument(
        "--registry-db",
        default=env("FRAUD_DEMO_REGISTRY_DB"),
        help="the tracking server's SQLite database, backed up to registry/ after a change (env "
        "FRAUD_DEMO_REGISTRY_DB; unset: no backup)",
    )
    split, params, gate = SplitSpec(), TrainParams(), GateSettings()
    _add_float(p, "--holdout-days", split.holdout_days, "days at the end of the data kept for evaluation")
    _add_float(p, "--gap-days", split.gap_days, "days between the train window and the holdout, left out")
    _add_float(p, "--valid-days", split.valid_days, "last days of the train window used for early stopping")
    _add_float(p, "--min-auc", gate.min_auc, "guardrail: a model below this holdout AUC is never champion")
    _add_float(p, "--min-auc-gain", gate.min_auc_gain, "promote only when AUC - champion's AUC >= this")
    _add_float(p, "--learning-rate", params.learning_rate, "LightGBM learning rate")
    p.add_argument("--num-leaves", type=int, default=params.num_leaves, help=f"LightGBM leaves ({params.num_leaves})")
    p.add_argument("--max-rounds", type=int, default=params.max_rounds, help=f"boosting rounds ({params.max_rounds})")
    p.add_argument(
        "--early-stopping-rounds",
        type=int,
        default=params.early_stopping_rounds,
        help=f"stop after this many rounds without gain on the early-stopping slice ({params.early_stopping_rounds})",
    )
    p.add_argument("--seed", type=int, default=params.seed, help=f"random seed ({params.seed})")
    p.add_argument("--threads", type=int, default=params.threads, help=f"LightGBM threads ({params.threads})")
    p.add_argument(
        "--work-dir",
        default=env("FRAUD_DEMO_TRAIN_WORK_DIR", DEFAULT_TRAIN_WORK_DIR),
        help=f"local scratch (env FRAUD_DEMO_TRAIN_WORK_DIR; {DEFAULT_TRAIN_WORK_DIR})",
    )
    add_backend_flags(p)
    add_reporting_flags(p, "only read: report whether a run would train")
    return p.parse_args(argv)


_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _train_usage_problem(args: argparse.Namespace, split: SplitSpec, params: TrainParams, gate: GateSettings):
    if not args.bucket:
        return "--bucket (or FRAUD_DEMO_BUCKET) is required"
    if not args.tracking_uri:
        return f"--tracking-uri (or {T.TRACKING_URI_ENV}) is required: the MLflow server, e.g. http://127.0.0.1:5000"
    for flag, value in (
        ("--dataset", args.dataset),
        ("--model-name", args.model_name),
        ("--experiment", args.experiment),
    ):
        if not _NAME.fullmatch(value or ""):
            return f"{flag} {value!r} is not a plain name (letters, digits, . _ -)"
    if args.version is not None and not re.fullmatch(r"[0-9a-f]{16}", args.version):
        return f"--version {args.version!r} is not a curated version id (16 hex digits, as in curated/<dataset>/)"
    return split.validate() or params.validate() or gate.validate()


def _stopped(st: TrainRunState) -> str:
    """What an interruption left behind: a signal held back through the commit lands after it."""
    if st.action == "trained":
        alias = (st.decision or {}).get("alias")
        return f"model version {st.model_version} was registered with alias {alias} before the signal took effect"
    return "no model version was registered (the MLflow run is marked KILLED; the next run starts clean)"


def train_main(argv: list[str] | None = None) -> int:
    args = parse_train_args(argv)
    t0 = time.monotonic()
    now = datetime.now(timezone.utc)
    st = TrainRunState(job_run_id=f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}")
    split = SplitSpec(holdout_days=args.holdout_days, gap_days=args.gap_days, valid_days=args.valid_days)
    params = TrainParams(
        learning_rate=args.learning_rate,
        num_leaves=args.num_leaves,
        max_rounds=args.max_rounds,
        early_stopping_rounds=args.early_stopping_rounds,
        seed=args.seed,
        threads=args.threads,
    )
    gate = GateSettings(min_auc=args.min_auc, min_auc_gain=args.min_auc_gain)
    backend, dask, backend_problem = backend_settings(args)
    problem = _train_usage_problem(args, split, params, gate) or backend_problem
    if problem:
        return fail(TRAIN_PROG, problem, train_summary(None, st, time.monotonic() - t0, problem), EXIT_USAGE)
    settings = TrainSettings(
        bucket=args.bucket,
        dataset=args.dataset,
        version=args.version,
        tracking_uri=args.tracking_uri.rstrip("/"),
        experiment=args.experiment,
        model_name=args.model_name,
        registry_db=args.registry_db,
        split=split,
        params=params,
        gate=gate,
        work_dir=args.work_dir,
        backend=backend,
        dask=dask,
        **reporting_settings(args),
    )
    events = EventLog(TRAIN_PROG, TRAIN_JOB, st.job_run_id, settings.dataset)
    report = settings.cloudwatch and not settings.check
    return run_reported(
        TRAIN_PROG,
        events,
        lambda: run_train(settings, st, events),
        lambda msg, seconds: train_summary(settings, st, seconds, msg),
        started=t0,
        publish=(lambda seconds: train_metrics(settings, st, seconds)) if report else None,
        finished=lambda: {"action": st.action, "model_version": st.model_version},
        failed=lambda: {"run_id": st.run_id},
        work_dir=settings.work_dir,
        stopped=lambda: _stopped(st),
    )


if __name__ == "__main__":
    sys.exit(train_main())
