"""A registered model version as the scoring side uses it: the LightGBM Booster, the FeatureState it was trained
with, and the lineage its version tags record (which data, which raw objects, which code).

The one way to load a version: the batch job (``fraud-demo-score``), the scoring service and the training run's
champion re-score all go through ``find_version`` + ``load_version``. Every failure is a JobError naming the
version and the fix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import modeling as M
from . import tracking as T
from .errors import JobError, UsageError
from .features import STATE_FILE, FeatureState
from .gate import CHAMPION

if TYPE_CHECKING:
    import lightgbm as lgb
    from mlflow.entities.model_registry import ModelVersion

# Where train_run._log_model puts the feature state inside a logged model (MLflow's extra_files).
STATE_DIR = "extra_files"
FIX = "retrain (playbooks/train.yml) or point the alias at a version that loads"


@dataclass(frozen=True)
class ModelLineage:
    """What produced a model version: its run, the curated dataset version, the raw VersionIds, the code."""

    model_name: str
    model_version: str
    run_id: str
    dataset: str | None
    dataset_version: str | None
    raw_version_ids: dict[str, str | None]
    code_version: str | None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, model_name: str, mv: ModelVersion) -> ModelLineage:
        """From the version's tags (set by fraud-demo-train at registration); missing tags are None / {}."""
        tags = dict(mv.tags or {})
        raw = tags.get(T.TAG_RAW_VERSIONS)
        try:
            raw_ids = json.loads(raw) if raw else {}
        except ValueError as e:
            raise JobError(
                f"model {model_name} v{mv.version}: tag {T.TAG_RAW_VERSIONS} is not JSON ({e}): {FIX}"
            ) from e
        return cls(
            model_name=model_name,
            model_version=str(mv.version),
            run_id=str(mv.run_id or ""),
            dataset=tags.get(T.TAG_DATASET),
            dataset_version=tags.get(T.TAG_DATASET_VERSION),
            raw_version_ids=dict(raw_ids) if isinstance(raw_ids, dict) else {},
            code_version=tags.get(T.TAG_CODE_VERSION),
        )


@dataclass
class LoadedModel:
    lineage: ModelLineage
    booster: lgb.Booster
    state: FeatureState

    def predict_frame(self, frame: pd.DataFrame, threads: int) -> np.ndarray:
        """Fraud probabilities of a frame with the contract's columns (batch transform, then predict)."""
        return self.predict_matrix(self.state.transform(frame), threads)

    def predict_matrix(self, X: np.ndarray | pd.DataFrame, threads: int = 1) -> np.ndarray:
        """Fraud probabilities of features already built (columns in ``state.feature_names`` order), at the
        Booster's best iteration."""
        return M.predict(self.booster, X, threads)


def find_version(
    tr: T.Tracking, model_name: str, alias: str | None = None, version: str | None = None
) -> ModelVersion | None:
    """The version an alias points at, or the version numbered ``version`` (exactly one of them); None when the
    model, the alias or the version does not exist."""
    if (alias is None) == (version is None):
        raise UsageError("name a model version by alias or by number, not both and not neither")
    if version is not None:
        if not str(version).isdigit():
            raise UsageError(f"model version must be a number, got {version!r}")
        return tr.model_version(model_name, str(version))
    return tr.alias_version(model_name, alias)


def missing_version_message(model_name: str, alias: str | None, version: str | None, uri: str) -> str:
    """What to tell a user when ``find_version`` found nothing, naming the fix."""
    if version is not None:
        return (
            f"registered model {model_name} has no version {version} on {uri}: pass an existing "
            f"--model-version (see the MLflow UI), or --alias {CHAMPION}"
        )
    fix = "run playbooks/train.yml (fraud-demo-train) first" if alias == CHAMPION else f"pass --alias {CHAMPION}"
    return f"no model version of {model_name} has the alias {alias} yet on {uri}: {fix}"


def load_version(tr: T.Tracking, model_name: str, mv: ModelVersion, dst: str) -> LoadedModel:
    """Download the version under ``dst`` (the caller's directory, e.g. one per version) and load its Booster and
    feature state; JobError on any failure."""
    lineage = ModelLineage.of(model_name, mv)
    name = f"model {model_name} v{lineage.model_version}"
    try:
        model_dir = Path(tr.download_model(model_name, lineage.model_version, dst))
    except JobError as e:
        T.check_server(tr.uri)  # the server gone: that message (how to start it) is the one to show
        raise JobError(f"{name} could not be downloaded ({e}): {FIX}") from e
    state_dir = model_dir / STATE_DIR
    if not (state_dir / STATE_FILE).is_file():
        raise JobError(f"{name} has no feature state ({STATE_DIR}/{STATE_FILE}: not logged by fraud-demo-train): {FIX}")
    booster = _load_booster(name, model_dir)
    try:
        state = FeatureState.load(str(state_dir))
    except (JobError, OSError, ValueError, KeyError, TypeError) as e:
        raise JobError(f"{name} could not be loaded (feature state: {e}): {FIX}") from e
    if list(booster.feature_name()) != state.feature_names:
        raise JobError(f"{name} could not be loaded (its Booster's features differ from its feature state's): {FIX}")
    return LoadedModel(lineage, booster, state)


def _load_booster(name: str, model_dir: Path) -> lgb.Booster:
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.lightgbm.load_model(str(model_dir))
    except (OSError, ValueError, KeyError, MlflowException, lgb.basic.LightGBMError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise JobError(f"{name} could not be loaded (Booster: {text}): {FIX}") from e
