"""The training run itself (``fraud-demo-train`` once it knows there is something to train): data → features →
LightGBM → holdout evaluation → MLflow run → registered version → gate → registry backup.

Imported only when a model is trained, so that the ``unchanged`` and ``--check`` paths never load LightGBM or
matplotlib. One MLflow run per training; whatever stops it (an error, SIGTERM, Ctrl-C) ends the run FAILED or
KILLED and leaves no registered version: the registration, the tags and the alias are one deferred-signal step.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import mlflow.lightgbm
import numpy as np
import pandas as pd

from . import features as F
from . import gate as G
from . import ieee_contract as C
from . import ieee_schema as S
from . import layout, model_store
from . import modeling as M
from . import tracking as T
from .aws import S3Bucket
from .cli import signals_deferred
from .curated_read import CuratedVersion, clear_work_dir, fetch_tables
from .errors import JobError
from .telemetry import EventLog
from .train import (
    TRAIN_JOB,
    TRAIN_PROG,
    TRAINING_TABLES,
    TrainRunState,
    TrainSettings,
    champion_record,
    train_code_version,
)
from .train_backend import DASK, LOCAL

MODEL_ARTIFACT = "model"
PLOTS_DIR = "plots"
INPUT_EXAMPLE_ROWS = 5


@dataclass
class Fitted:
    """What a backend trains: the feature state, the booster (cut at its best round) and the holdout with its
    features. Everything after it (evaluation, gate, logging, registration) is one code path for every backend."""

    state: F.FeatureState
    booster: lightgbm.Booster
    holdout: pd.DataFrame
    X_hold: pd.DataFrame


class LocalTraining:
    """The local backend: the curated tables downloaded (checked against the manifest), split and trained here."""

    def __init__(self, s: TrainSettings, st: TrainRunState, bucket: S3Bucket, cv: CuratedVersion, vdir: Path):
        self.s, self.st, self.bucket, self.cv, self.vdir = s, st, bucket, cv, vdir
        self.parts: F.TimeSplit | None = None

    def __enter__(self) -> LocalTraining:
        return self

    def __exit__(self, *exc) -> None:
        self.parts = None

    def split(self) -> dict:
        paths = fetch_tables(self.bucket, self.cv, list(TRAINING_TABLES), str(self.vdir / "curated"))
        frame = F.model_frame(pd.read_parquet(paths["train_transaction"]), pd.read_parquet(paths["train_identity"]))
        self.parts = F.time_split(frame, self.s.split)
        del frame
        return self.parts.bounds()

    def fit(self) -> Fitted:
        s, st, split = self.s, self.st, self.parts
        t = time.monotonic()
        # Training rows see their client's history as stale as rows scored after the fit will (the split's gap and
        # half its holdout), so the model learns from features shaped like those it is evaluated and served on.
        state = F.FeatureState.fit(split.history, lag_days=s.split.scoring_lag_days())
        X_train, X_valid, X_hold = (state.transform(p) for p in (split.train, split.valid, split.holdout))
        st.phase_seconds["features"] = time.monotonic() - t
        t = time.monotonic()
        booster = M.train_booster(
            X_train,
            split.train[C.LABEL].to_numpy(),
            X_valid,
            split.valid[C.LABEL].to_numpy(),
            s.params,
            categorical=state.categorical_features,
            train_time=split.train[F.DT].to_numpy(),
        )
        st.phase_seconds["train"] = time.monotonic() - t
        return Fitted(state, booster, split.holdout, X_hold)


def _backend(s: TrainSettings, st: TrainRunState, bucket: S3Bucket, cv: CuratedVersion, events: EventLog, vdir: Path):
    if s.backend == DASK:
        from .dask_train import DaskTraining

        return DaskTraining(s, st, bucket, cv, events)
    return LocalTraining(s, st, bucket, cv, vdir)


def train_and_register(
    s: TrainSettings,
    st: TrainRunState,
    tr: T.Tracking,
    bucket: S3Bucket,
    cv: CuratedVersion,
    events: EventLog,
    vdir: Path,
) -> None:
    clear_work_dir(vdir.parent, cv.version)
    vdir.mkdir(parents=True, exist_ok=True)
    with _backend(s, st, bucket, cv, events, vdir) as backend:
        t = time.monotonic()
        st.split = backend.split()
        st.phase_seconds["load"] = time.monotonic() - t
        events("split", **st.split)

        mlflow = tr.mlflow
        run = tr.call(
            "CreateRun",
            mlflow.start_run,
            experiment_id=st.experiment_id,
            run_name=f"{cv.version}-{st.job_run_id}",
            tags=_run_tags(s, st, cv),
        )
        st.run_id, st.artifact_uri = run.info.run_id, run.info.artifact_uri
        events("run_started", run_id=st.run_id, tracking_uri=s.tracking_uri)
        try:
            _log_inputs(s, tr, cv, st.split, vdir)
            fitted = backend.fit()
            events("trained", best_iteration=fitted.booster.best_iteration, features=len(fitted.state.feature_names))
            _evaluate_log_register(s, st, tr, cv, fitted, events, vdir)
        except BaseException as e:
            if st.action != "trained":  # a signal held back through the commit lands after it: nothing to undo then
                _abandon(tr, s, st, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED", e)
            raise
    st.champion = champion_record(tr.alias_version(s.model_name, G.CHAMPION))
    events("registered", model_version=st.model_version, decision=st.decision, champion=st.champion)


def _evaluate_log_register(s, st, tr, cv, fitted: Fitted, events, vdir: Path) -> None:
    mlflow = tr.mlflow
    state, booster, X_hold = fitted.state, fitted.booster, fitted.X_hold
    y_hold = fitted.holdout[C.LABEL].to_numpy()
    t = time.monotonic()
    scores = M.predict(booster, X_hold, s.params.threads)
    nan_predictions = int(np.isnan(scores).sum())
    metrics = M.holdout_metrics(y_hold, np.nan_to_num(scores, nan=0.0))
    st.metrics = {f"holdout_{k}": float(v) for k, v in metrics.items()}
    plot_dir = vdir / PLOTS_DIR
    plot_files = M.write_plots(y_hold, np.nan_to_num(scores, nan=0.0), booster, str(plot_dir))
    champion_auc, champion_note = _rescore_champion(s, st, tr, fitted.holdout, y_hold, vdir)
    decision = G.decide(metrics, champion_auc, nan_predictions, _schema_problem(cv, state), s.gate)
    if champion_note:
        decision = G.GateDecision(
            decision.promote, decision.alias, f"{decision.reason} ({champion_note})", *_numbers(decision)
        )
    st.phase_seconds["evaluate"] = time.monotonic() - t
    st.decision = {**decision.as_dict(), "promoted": decision.promote}
    events("evaluated", metrics=metrics, nan_predictions=nan_predictions, decision=st.decision)

    t = time.monotonic()
    tr.call("LogMetrics", mlflow.log_metrics, {**st.metrics, **_gate_metrics(decision, nan_predictions, booster)})
    tr.call("LogArtifacts plots", mlflow.log_artifacts, str(plot_dir), PLOTS_DIR)
    st.plots = [f"{PLOTS_DIR}/{os.path.basename(p)}" for p in plot_files]
    model_uri = _log_model(s, tr, booster, state, X_hold, vdir)
    st.phase_seconds["log"] = time.monotonic() - t
    with signals_deferred():
        _commit(s, st, tr, cv, model_uri, decision)


def _commit(s, st, tr, cv, model_uri: str, decision: G.GateDecision) -> None:
    """Register, tag, alias, finish: with signals deferred, so a SIGTERM here lands after it, never half-way.

    The alias is the commit point. Before it, a failure deletes the version (``_abandon``; after a SIGKILL, the next
    run's ``fail_orphans``). From it on, the version is live (it may have taken the champion alias from the previous
    champion, so deleting it would leave no champion at all): it is never undone, and a run left unfinished by a
    failure or death is finished by the next run (``finish_committed_orphans``). The run's tags come before the
    alias, so a run finished by anyone (us, MLflow's exit hook, the next run) names the version it made."""
    tags = _version_tags(s, st, cv, decision)
    mv = tr.call(f"RegisterModel {s.model_name}", tr.mlflow.register_model, model_uri, s.model_name, tags=tags)
    st.model_version = version = str(mv.version)
    for key, value in (
        (T.TAG_MODEL_VERSION, version),
        (T.TAG_DECISION, decision.alias),
        (T.TAG_REASON, decision.reason),
    ):
        tr.call(f"SetTag {key}", tr.client.set_tag, st.run_id, key, value)
    tr.set_alias(s.model_name, decision.alias, version)
    st.action = "trained"
    try:
        tr.call("EndRun", tr.mlflow.end_run, "FINISHED")
    except JobError as e:
        raise JobError(
            f"model version {version} is registered with alias {decision.alias}, but finishing its MLflow run "
            f"{st.run_id} failed: {e}; the next {TRAIN_PROG} run finishes it"
        ) from e


def _abandon(tr: T.Tracking, s: TrainSettings, st: TrainRunState, status: str, e) -> None:
    """After a failure: no version of this run stays registered, and the run ends FAILED/KILLED with why (best
    effort: the server may be what failed; the next run marks a run left RUNNING as FAILED)."""
    with contextlib.suppress(Exception):  # the original error is what the user must see
        if st.model_version is not None:
            tr.client.delete_model_version(s.model_name, st.model_version)
            st.model_version = None
    with contextlib.suppress(Exception):
        tr.client.set_tag(st.run_id, T.TAG_FAILURE, (str(e) or type(e).__name__)[:4000])
    with contextlib.suppress(Exception):
        tr.mlflow.end_run(status)


def _run_tags(s: TrainSettings, st: TrainRunState, cv: CuratedVersion) -> dict[str, str]:
    return {
        T.TAG_JOB: TRAIN_JOB,
        T.TAG_TRAINING_KEY: st.training_key or "",
        T.TAG_DATASET: s.dataset,
        T.TAG_DATASET_VERSION: cv.version,
        T.TAG_CODE_VERSION: train_code_version(),
        T.TAG_RAW_VERSIONS: json.dumps(cv.raw_version_ids(), sort_keys=True),
        "fraud_demo.job_run_id": st.job_run_id,
        "fraud_demo.log_stream": st.log_stream or "",
        **({"fraud_demo.backend": s.backend} if s.backend != LOCAL else {}),
    }


def _version_tags(s: TrainSettings, st: TrainRunState, cv: CuratedVersion, decision: G.GateDecision) -> dict:
    return {
        T.TAG_DATASET: s.dataset,
        T.TAG_DATASET_VERSION: cv.version,
        T.TAG_RAW_VERSIONS: json.dumps(cv.raw_version_ids(), sort_keys=True),
        T.TAG_CODE_VERSION: train_code_version(),
        T.TAG_TRAINING_KEY: st.training_key or "",
        T.TAG_DECISION: decision.alias,
        T.TAG_REASON: decision.reason,
    }


def _log_inputs(s: TrainSettings, tr: T.Tracking, cv: CuratedVersion, bounds: dict, vdir: Path) -> None:
    """Params, and the manifest as the run's input: a dataset named <dataset>@<version> whose digest is the
    version, with the manifest itself as an artifact (raw keys, VersionIds, sha256, row counts)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    params = {f"split_{k}": v for k, v in vars(s.split).items()}
    params |= {f"lgb_{k}": v for k, v in vars(s.params).items()}
    params |= {"gate_min_auc": s.gate.min_auc, "gate_min_auc_gain": s.gate.min_auc_gain}
    params |= {"dataset": s.dataset, "dataset_version": cv.version, "code_version": train_code_version()}
    params |= {f"{part}_rows": bounds[part]["rows"] for part in ("train", "valid", "holdout")}
    if s.backend != LOCAL:
        params |= {"backend": s.backend}
    tr.call("LogParams", tr.mlflow.log_params, params)
    source = resolve_dataset_source(f"s3://{s.bucket}/{layout.manifest_key(s.dataset, cv.version)}")
    dataset = MetaDataset(source, name=f"{s.dataset}@{cv.version}", digest=cv.version)
    tr.call("LogInput", tr.mlflow.log_input, dataset, context="training")
    path = vdir / "manifest.json"
    path.write_text(json.dumps(cv.manifest, indent=2, sort_keys=True))
    tr.call("LogArtifact manifest", tr.mlflow.log_artifact, str(path), "input")


def _log_model(s, tr: T.Tracking, booster, state: F.FeatureState, X_hold: pd.DataFrame, vdir: Path) -> str:
    """The Booster (pyfunc then returns probabilities) with its feature state as extra files, a signature,
    an input example and explicit pip requirements (inferring them costs ~30 s)."""
    from mlflow.models import infer_signature

    state_files = state.save(str(vdir / "feature_state"))
    example = X_hold.head(INPUT_EXAMPLE_ROWS)
    signature = infer_signature(example, M.predict(booster, example, s.params.threads))
    reqs = [f"lightgbm=={lightgbm.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]
    info = tr.call(
        "LogModel",
        mlflow.lightgbm.log_model,
        booster,
        name=MODEL_ARTIFACT,
        signature=signature,
        input_example=example,
        pip_requirements=reqs,
        extra_files=state_files,
    )
    return info.model_uri


def _rescore_champion(s, st, tr: T.Tracking, holdout: pd.DataFrame, y, vdir: Path):
    """The current champion's AUC on this holdout, through its own feature state; (None, note) when there is
    none or it cannot be scored (then the candidate is judged on the guardrails alone, and the reason says so)."""
    mv = model_store.find_version(tr, s.model_name, alias=G.CHAMPION)
    if mv is None:
        return None, None
    st.champion_before = {"version": str(mv.version), "dataset_version": (mv.tags or {}).get(T.TAG_DATASET_VERSION)}
    try:
        with tempfile.TemporaryDirectory(dir=vdir) as tmp:
            scores = model_store.load_version(tr, s.model_name, mv, tmp).predict_frame(holdout, s.params.threads)
    except (JobError, OSError, ValueError, KeyError, lightgbm.basic.LightGBMError) as e:
        return None, f"the champion v{mv.version} could not be re-scored: {e}"
    auc = M.holdout_metrics(y, np.nan_to_num(scores, nan=0.0))["roc_auc"]
    st.champion_before["auc"] = float(auc)
    return float(auc), None


def _schema_problem(cv: CuratedVersion, state: F.FeatureState) -> str | None:
    """Guardrail: the data was curated under this contract, and the model reads only contract columns."""
    stored = (cv.manifest.get("schema") or {}).get("fingerprint")
    if stored != S.fingerprint():
        return f"curated version {cv.version} was validated against contract {stored}, this code's is {S.fingerprint()}"
    known = {c.name for t in C.TABLES for c in t.columns}
    unknown = [c for c in state.input_columns if c not in known]
    return f"the model reads columns outside the contract: {unknown}" if unknown else None


def _gate_metrics(decision: G.GateDecision, nan_predictions: int, booster) -> dict[str, float]:
    out = {"nan_predictions": float(nan_predictions), "best_iteration": float(booster.best_iteration or 0)}
    out["promoted"] = 1.0 if decision.promote else 0.0
    if decision.champion_auc is not None:
        out["champion_holdout_roc_auc"] = decision.champion_auc
    if decision.gain is not None:
        out["auc_gain"] = decision.gain
    return out


def _numbers(d: G.GateDecision) -> tuple:
    return d.candidate_auc, d.champion_auc, d.gain
