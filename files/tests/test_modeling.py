"""modeling.py: metrics against hand-computed values, deterministic training, plots, settings checks."""

import os

import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import modeling as M
from fraud_demo_jobs.errors import JobError


def test_metrics_on_a_tiny_holdout():
    # Ranked by score: 0.8 (fraud), 0.4 (legit), 0.35 (fraud), 0.1 (legit).
    # AUC: of the 4 (fraud, legit) pairs, 3 are ordered right -> 0.75.
    # AP: recall 1/2 at precision 1, recall 2/2 at precision 2/3 -> 0.5 * 1 + 0.5 * 2/3 = 5/6.
    # 1 % FPR: no legit row may be flagged -> threshold 0.8 -> recall 1/2. Top 1 % of 4 rows: 1 row, a fraud.
    m = M.holdout_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx(5 / 6)
    assert m["recall_at_1pct_fpr"] == pytest.approx(0.5)
    assert m["precision_at_top_1pct"] == 1.0
    assert (m["rows"], m["frauds"]) == (4, 2)


def test_recall_and_precision_at_1pct_on_200_rows():
    # 200 rows: 10 frauds scored 0.9, 0.8, ..., 0.0 (i / 10 for i = 9..0), 190 legit rows scored 0.55 (two of
    # them) and 0.05. 1 % FPR allows 1.9 -> 1 flagged legit; the two 0.55 legit rows tie, so the last threshold
    # within 1 % FPR is 0.6: frauds 0.9, 0.8, 0.7, 0.6 -> recall 4/10. Top 1 % = 2 rows: 0.9 and 0.8, both fraud.
    y = np.array([1] * 10 + [0] * 190)
    s = np.array([i / 10 for i in range(9, -1, -1)] + [0.55, 0.55] + [0.05] * 188)
    m = M.holdout_metrics(y, s)
    assert m["recall_at_1pct_fpr"] == pytest.approx(0.4)
    assert m["precision_at_top_1pct"] == 1.0
    # Legit rows on top instead: the top 2 are legit.
    m = M.holdout_metrics(y, np.where(y == 1, 0.5, 0.1) + np.r_[np.zeros(10), [0.9, 0.9], np.zeros(188)])
    assert m["precision_at_top_1pct"] == 0.0


def test_metrics_need_both_classes():
    with pytest.raises(JobError, match="both classes"):
        M.holdout_metrics([0, 0, 0], [0.1, 0.2, 0.3])


def data(seed, n=3000):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"f{i}" for i in range(6)]).astype(np.float32)
    X["cat"] = rng.integers(0, 5, n).astype(np.float32)
    logit = -3 + 1.5 * X["f0"] - X["f1"] + (X["cat"] == 2) * 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


PARAMS = M.TrainParams(learning_rate=0.1, num_leaves=15, max_rounds=60, early_stopping_rounds=10, min_child_samples=20)


def test_training_is_deterministic():
    (Xt, yt), (Xv, yv), (Xh, _) = data(1), data(2, 1000), data(3, 1000)
    runs = [M.train_booster(Xt, yt, Xv, yv, PARAMS, categorical=["cat"]) for _ in range(2)]
    p1, p2 = (M.predict(b, Xh) for b in runs)
    np.testing.assert_allclose(p1, p2, rtol=0, atol=1e-6)
    assert runs[0].best_iteration == runs[1].best_iteration


def test_early_stopping_uses_the_valid_slice():
    (Xt, yt), (Xv, _) = data(1), data(2, 1000)
    noise = np.random.default_rng(9).integers(0, 2, len(Xv))  # labels unrelated to features: stops early
    booster = M.train_booster(Xt, yt, Xv, noise, M.TrainParams(max_rounds=500, early_stopping_rounds=5))
    assert booster.best_iteration < 100


def test_should_stop_interrupts_training():
    (Xt, yt), (Xv, yv) = data(1), data(2, 1000)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(M.TrainingStopped, match="after round 3"):
        M.train_booster(Xt, yt, Xv, yv, PARAMS, should_stop=stop)


def test_lgb_params_are_deterministic():
    p = M.TrainParams(seed=7, threads=3).lgb_params()
    assert p["deterministic"] is True and p["seed"] == 7 and p["num_threads"] == 3 and p["verbosity"] == -1
    assert p["force_row_wise"] is True


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"learning_rate": 0}, "--learning-rate"),
        ({"num_leaves": 1}, "--num-leaves"),
        ({"max_rounds": 2.5}, "--max-rounds"),
        ({"early_stopping_rounds": 0}, "--early-stopping-rounds"),
        ({"threads": 0}, "--threads"),
        ({"seed": -1}, "--seed"),
        ({"feature_fraction": float("nan")}, "--feature-fraction"),
    ],
)
def test_params_validate(change, flag):
    params = M.TrainParams(**change)
    assert flag in params.validate()
    (Xt, yt) = data(1, 200)
    with pytest.raises(JobError, match=flag):
        M.train_booster(Xt, yt, Xt, yt, params)


def test_default_params_are_valid():
    assert M.TrainParams().validate() is None


def test_write_plots(tmp_path):
    (Xt, yt), (Xv, yv) = data(1), data(2, 1000)
    booster = M.train_booster(Xt, yt, Xv, yv, PARAMS)
    paths = M.write_plots(yv, M.predict(booster, Xv), booster, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["roc.png", "pr.png", "feature_importance.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
