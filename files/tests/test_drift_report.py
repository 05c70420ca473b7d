"""Tests of the drift report's result parsing (fraud_demo_jobs.drift_report) on hand-made frames whose drift is
known from their construction: one numerical column shifted by several standard deviations, one categorical
column whose current values are mostly new categories, and columns drawn from the same distribution twice.

Second method for the scores: the PSI formula computed here with numpy, with Evidently's documented binning:
equal-width bins over both samples (Sturges' rule for their number) for a numerical column with more than 20
values, shares per value otherwise; an empty share counts as 0.0001; PSI = sum of (ref - cur) * ln(ref / cur).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import drift_report as R

N = 2000


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame(
        {
            "amount": rng.normal(100.0, 10.0, N),
            "steady": rng.normal(0.0, 1.0, N),
            "domain": rng.choice(["gmail.com", "yahoo.com", "hotmail.com"], N, p=[0.5, 0.3, 0.2]),
            "card": rng.choice(["visa", "mastercard"], N, p=[0.6, 0.4]),
        }
    )
    cur = pd.DataFrame(
        {
            "amount": rng.normal(150.0, 10.0, N),  # +5 standard deviations
            "steady": rng.normal(0.0, 1.0, N),
            # 70 % of the rows take two domains the reference never had
            "domain": rng.choice(["gmail.com", "yahoo.com", "protonmail.com", "icloud.com"], N, p=[0.2, 0.1, 0.4, 0.3]),
            "card": rng.choice(["visa", "mastercard"], N, p=[0.6, 0.4]),
        }
    )
    return ref, cur


@pytest.fixture(scope="module")
def parsed(frames) -> tuple[R.DriftResult, dict]:
    ref, cur = frames
    snapshot = R.run_report(ref, cur, R.Schema(["amount", "steady"], ["domain", "card"]))
    report = snapshot.dict()
    json.dumps(report, default=str)  # what the job stores as report.json
    return R.parse_result(report, R.DEFAULT_DRIFT_SHARE), report


def psi_numerical(ref: np.ndarray, cur: np.ndarray) -> float:
    n = len(ref) + len(cur)
    bins = int(np.ceil(np.log2(n))) + 1  # Sturges
    edges = np.linspace(min(ref.min(), cur.min()), max(ref.max(), cur.max()), bins + 1)
    r = np.histogram(ref, edges)[0] / len(ref)
    c = np.histogram(cur, edges)[0] / len(cur)
    return _psi(r, c)


def psi_categorical(ref: pd.Series, cur: pd.Series) -> float:
    values = sorted(set(ref) | set(cur))
    r = np.array([(ref == v).sum() for v in values]) / len(ref)
    c = np.array([(cur == v).sum() for v in values]) / len(cur)
    return _psi(r, c)


def _psi(r: np.ndarray, c: np.ndarray) -> float:
    r, c = np.where(r == 0, 0.0001, r), np.where(c == 0, 0.0001, c)
    return float(np.sum((r - c) * np.log(r / c)))


def test_the_shifted_and_the_new_category_columns_drift_the_steady_ones_do_not(parsed):
    result, _ = parsed
    flags = {c.column: c.drifted for c in result.columns}
    assert flags == {"amount": True, "domain": True, "steady": False, "card": False}
    assert {c.stattest for c in result.columns} == {"psi"}
    assert {c.threshold for c in result.columns} == {R.DEFAULT_COLUMN_THRESHOLD}
    assert (result.drifted_columns, result.drift_share) == (2, 0.5)
    assert result.drift_detected  # 0.5 >= 0.3
    assert [c.column for c in result.top(2)] == ["amount", "domain"]  # the two drifted ones, larger PSI first
    assert result.top(4)[-2:][0].drifted is False


def test_scores_equal_the_psi_formula_computed_by_hand(frames, parsed):
    ref, cur = frames
    result, _ = parsed
    by_hand = {
        "amount": psi_numerical(ref["amount"].to_numpy(), cur["amount"].to_numpy()),
        "steady": psi_numerical(ref["steady"].to_numpy(), cur["steady"].to_numpy()),
        "domain": psi_categorical(ref["domain"], cur["domain"]),
        "card": psi_categorical(ref["card"], cur["card"]),
    }
    for col, expected in by_hand.items():
        assert result.column(col).score == pytest.approx(expected, rel=1e-9), col
    # The construction's orders of magnitude: a 5-sigma shift is far past 0.2, a redraw far below 0.1.
    assert by_hand["amount"] > 5 and by_hand["domain"] > 1
    assert by_hand["steady"] < 0.1 and by_hand["card"] < 0.1


def test_the_dataset_threshold_is_a_share_at_or_above(frames, parsed):
    _, report = parsed
    assert R.parse_result(report, 0.5).drift_detected  # exactly at the threshold
    assert not R.parse_result(report, 0.51).drift_detected


def test_a_per_column_threshold_changes_the_flags(frames):
    ref, cur = frames
    report = R.run_report(ref, cur, R.Schema(["amount", "steady"], ["domain", "card"]), column_threshold=50.0).dict()
    result = R.parse_result(report, 0.3)
    assert [c.column for c in result.columns if c.drifted] == []
    assert (result.drift_share, result.drift_detected) == (0.0, False)


def _value_drift(column: str, score: float, threshold: float = 0.2) -> dict:
    cfg = {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": "PSI", "threshold": threshold}
    return {"id": column, "config": cfg, "value": score}


def _count(count: int, share: float) -> dict:
    return {"config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": count, "share": share}}


def test_a_hand_written_result_parses_and_one_that_disagrees_with_itself_is_refused():
    ok = {"metrics": [_count(1, 0.5), _value_drift("a", 0.25), _value_drift("b", 0.199)]}
    result = R.parse_result(ok, 0.3)
    assert [(c.column, c.drifted) for c in result.columns] == [("a", True), ("b", False)]
    assert (result.drift_share, result.drift_detected) == (0.5, True)
    at = R.parse_result({"metrics": [_count(1, 1.0), _value_drift("a", 0.2)]}, 0.3)  # PSI exactly at 0.2: drifted
    assert at.columns[0].drifted
    with pytest.raises(R.ReportFormatError, match="counts 2 drifted columns"):
        R.parse_result({"metrics": [_count(2, 1.0), _value_drift("a", 0.25), _value_drift("b", 0.1)]}, 0.3)
    with pytest.raises(R.ReportFormatError, match="no DriftedColumnsCount"):
        R.parse_result({"metrics": [_value_drift("a", 0.25)]}, 0.3)
