"""gate.py: the promotion decision in each case the issue names."""

import math

import pytest
from fraud_demo_jobs.gate import GateSettings, decide


def test_better_than_the_champion_is_promoted():
    d = decide({"roc_auc": 0.92}, 0.90)
    assert (d.promote, d.alias) == (True, "champion")
    assert d.gain == pytest.approx(0.02) and d.candidate_auc == 0.92 and d.champion_auc == 0.90
    assert "beats" in d.reason


def test_worse_than_the_champion_stays_challenger():
    d = decide({"roc_auc": 0.88}, 0.90)
    assert (d.promote, d.alias) == (False, "challenger")
    assert d.gain == pytest.approx(-0.02)
    assert "does not beat" in d.reason


def test_equal_to_the_champion_stays_challenger():
    d = decide(0.9, 0.9)
    assert (d.promote, d.alias, d.gain) == (False, "challenger", 0.0)


def test_required_gain():
    settings = GateSettings(min_auc_gain=0.01)
    assert not decide(0.905, 0.90, settings=settings).promote
    assert decide(0.915, 0.90, settings=settings).promote


def test_no_champion_is_promoted_when_it_passes_the_guardrails():
    d = decide({"roc_auc": 0.80}, None)
    assert (d.promote, d.alias, d.champion_auc, d.gain) == (True, "champion", None, None)
    assert "no champion" in d.reason


def test_auc_floor_fails_even_when_the_champion_is_as_bad():
    # Corrupted labels: the candidate and the re-scored champion both score ~0.5 on the same holdout.
    d = decide({"roc_auc": 0.52}, 0.50)
    assert (d.promote, d.alias) == (False, "challenger")
    assert "min_auc=0.75" in d.reason
    assert not decide(0.52, None).promote


def test_nan_predictions_fail():
    d = decide(0.95, 0.90, nan_predictions=3)
    assert not d.promote and "3 holdout rows as NaN" in d.reason


def test_schema_problem_fails():
    d = decide(0.95, None, schema_problem="column card1 is missing")
    assert not d.promote and "column card1 is missing" in d.reason


def test_nan_auc_fails():
    assert not decide(math.nan, None).promote


@pytest.mark.parametrize("settings", [GateSettings(min_auc=1.5), GateSettings(min_auc_gain=math.inf)])
def test_settings_validate(settings):
    assert settings.validate().startswith("--min-auc")


def test_default_settings_are_valid():
    assert GateSettings().validate() is None
