"""LightGBM training, holdout metrics and evaluation plots of the train stage (no MLflow, no AWS here).

Deterministic: the same frames and TrainParams give the same booster and predictions (``deterministic=True``,
fixed seeds, fixed thread count, row-wise histograms), so a re-run on the same dataset version has the same
metrics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .errors import JobError

if TYPE_CHECKING:
    import lightgbm as lgb

# LightGBM and scikit-learn (4 s of imports) load in the functions that use them: the job's settings live here,
# and its unchanged and --check paths, which only need the settings, stay fast.


@dataclass(frozen=True)
class TrainParams:
    """The model's settings (the job's --learning-rate, --num-leaves, --max-rounds, --early-stopping-rounds,
    --seed, --threads)."""

    learning_rate: float = 0.08
    num_leaves: int = 63
    max_rounds: int = 800
    early_stopping_rounds: int = 50
    seed: int = 42
    threads: int = 2
    min_child_samples: int = 100
    feature_fraction: float = 0.3
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    max_bin: int = 63
    # Weight of a training row halves every this many days back from the newest one (0: equal weights); needs
    # train_time in train_booster. The planted fraud drifts over time, as real fraud does.
    half_life_days: float = 0.0

    def validate(self) -> str | None:
        checks = (
            ("learning_rate", 1e-4, 1.0),
            ("num_leaves", 2, 4096),
            ("max_rounds", 1, 100000),
            ("early_stopping_rounds", 1, 10000),
            ("seed", 0, 2**31 - 1),
            ("threads", 1, 256),
            ("min_child_samples", 1, 100000),
            ("feature_fraction", 0.01, 1.0),
            ("bagging_fraction", 0.01, 1.0),
            ("lambda_l2", 0.0, 1e6),
            ("max_bin", 3, 65535),
            ("half_life_days", 0.0, 10000.0),
        )
        for name, low, high in checks:
            value = getattr(self, name)
            integral = isinstance(low, int)
            ok_type = isinstance(value, int) if integral else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not low <= value <= high:
                flag = "--" + name.replace("_", "-")
                kind = "an integer" if integral else "a number"
                return f"{flag} must be {kind} between {low:g} and {high:g}, got {value!r}"
        return None

    def lgb_params(self) -> dict:
        """LightGBM parameters: this model's settings plus what makes training reproducible."""
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "metric": "auc",
            "seed": self.seed,
            "num_threads": self.threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def as_dict(self) -> dict:
        return asdict(self)


class TrainingStopped(Exception):
    """Raised between rounds when the caller's should_stop() says so (e.g. SIGTERM)."""


def train_booster(
    train_X: pd.DataFrame,
    train_y,
    valid_X: pd.DataFrame,
    valid_y,
    params: TrainParams,
    categorical: list[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    train_time=None,
) -> lgb.Booster:
    """Train with early stopping on the validation slice only; returns the booster cut at its best round.

    ``categorical``: columns LightGBM treats as categories (integer codes, NaN missing); ``should_stop`` is
    polled after every round and raises TrainingStopped when it returns True; ``train_time``: the training rows'
    TransactionDT, for the recency weights of ``params.half_life_days``."""
    import lightgbm as lgb

    problem = params.validate()
    if problem:
        raise JobError(problem)
    cats = [c for c in (categorical or []) if c in train_X.columns]
    lgb_params = params.lgb_params()
    weight = None
    if params.half_life_days > 0 and train_time is not None:
        weight = recency_weights(train_time, params.half_life_days)
    dtrain = lgb.Dataset(
        train_X, label=np.asarray(train_y), weight=weight, categorical_feature=cats or "auto", free_raw_data=True
    )
    dvalid = lgb.Dataset(valid_X, label=np.asarray(valid_y), reference=dtrain, categorical_feature=cats or "auto")
    callbacks = [lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)]
    if should_stop is not None:

        def _poll(env) -> None:
            if should_stop():
                raise TrainingStopped(f"training stopped after round {env.iteration + 1}")

        callbacks.append(_poll)
    booster = lgb.train(
        lgb_params, dtrain, num_boost_round=params.max_rounds, valid_sets=[dvalid], valid_names=["valid"],
        callbacks=callbacks,
    )  # fmt: skip
    return booster


def recency_weights(train_time, half_life_days: float, newest: float | None = None) -> np.ndarray:
    """1 for the newest row, halved for every half_life_days (of TransactionDT seconds) before it; ``newest``:
    the newest row's time when ``train_time`` is only a part of the rows (a Dask partition)."""
    t = np.asarray(train_time, dtype=np.float64)
    return 0.5 ** (((t.max() if newest is None else newest) - t) / (half_life_days * 86400.0))


def predict(booster: lgb.Booster, X: pd.DataFrame, threads: int = 2) -> np.ndarray:
    """Fraud probabilities at the booster's best round."""
    return booster.predict(X, num_iteration=booster.best_iteration or None, num_threads=threads)


def holdout_metrics(y_true, scores) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), recall at 1 % false-positive rate, precision in the top 1 % scores."""
    from sklearn import metrics as skm

    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    frauds = int(y.sum())
    if frauds == 0 or frauds == len(y):
        raise JobError(f"the holdout needs both classes to be scored ({len(y)} rows, {frauds} frauds)")
    fpr, tpr, _ = skm.roc_curve(y, s)
    return {
        "roc_auc": float(skm.roc_auc_score(y, s)),
        "pr_auc": float(skm.average_precision_score(y, s)),
        "recall_at_1pct_fpr": recall_at_fpr(fpr, tpr, 0.01),
        "precision_at_top_1pct": precision_at_top(y, s, 0.01),
        "rows": len(y),
        "frauds": frauds,
    }


def recall_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The best recall (TPR) of any threshold whose false-positive rate is at most max_fpr."""
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def precision_at_top(y: np.ndarray, s: np.ndarray, share: float) -> float:
    """Fraud share among the ceil(share * n) highest scores (ties broken by row order, stable)."""
    k = max(1, math.ceil(share * len(y)))
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].mean())


def write_plots(y_true, scores, booster: lgb.Booster, out_dir: str, top_features: int = 30) -> list[str]:
    """roc.png, pr.png and feature_importance.png (gain) in out_dir; returns their paths."""
    import matplotlib
    from sklearn import metrics as skm

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    paths = []

    fpr, tpr, _ = skm.roc_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"AUC {skm.roc_auc_score(y, s):.4f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.axvline(0.01, color="red", linewidth=0.8, label="1 % FPR")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC, holdout")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out_dir, "roc.png"))

    precision, recall, _ = skm.precision_recall_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, label=f"AP {skm.average_precision_score(y, s):.4f}")
    ax.axhline(y.mean(), linestyle="--", color="grey", label=f"fraud rate {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, holdout")
    ax.legend(loc="upper right")
    paths.append(_save(fig, out_dir, "pr.png"))

    gain = booster.feature_importance(importance_type="gain", iteration=booster.best_iteration or None)
    names = np.array(booster.feature_name())
    order = np.argsort(-gain, kind="stable")[:top_features][::-1]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * len(order) + 1)))
    ax.barh(names[order], gain[order] / max(gain.sum(), 1e-12))
    ax.set(xlabel="share of total gain", title=f"Feature importance (top {len(order)})")
    paths.append(_save(fig, out_dir, "feature_importance.png"))
    return paths


def _save(fig, out_dir: str, name: str) -> str:
    import matplotlib.pyplot as plt

    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same data, same bytes
    plt.close(fig)
    return path
