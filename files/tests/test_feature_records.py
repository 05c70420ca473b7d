"""FeatureState.transform_records (the scoring service's path) against transform(pd.DataFrame(rows)), and the
lookups both paths share (key_history.count_below, feature_input.ValueTable), checked against brute force."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import features as F
from fraud_demo_jobs import ieee_contract as C
from fraud_demo_jobs import synthetic
from fraud_demo_jobs.feature_input import SMALL_LOOKUP, ValueTable
from fraud_demo_jobs.key_history import SMALL_QUERY, count_below
from test_features import HISTORY, HOLDOUT


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A state fitted on a small synthetic train window, and JSON records of its holdout (missing fields absent,
    as a client sends them)."""
    out = tmp_path_factory.mktemp("syn")
    synthetic.generate(str(out), rows=3000, seed=11, workers=1)

    def read(name):
        frame = pd.read_csv(out / f"{name}.csv")
        frame.columns = C.normalise(C.BY_NAME[name], list(frame.columns))
        return frame

    split = F.time_split(F.model_frame(read("train_transaction"), read("train_identity")), F.SplitSpec())
    state = F.FeatureState.fit(split.history)
    records = json.loads(split.holdout.drop(columns=[C.LABEL]).to_json(orient="records"))
    return state, [{k: v for k, v in r.items() if v is not None} for r in records]


def _odd_rows(records: list[dict]) -> list[dict]:
    """Rows with what a fitted state has not seen or a client may send: unseen categories and keys, explicit None,
    NaN, absent fields, integers for numbers, a row with only the required fields."""
    a, b, c = (dict(r) for r in records[:3])
    a.update(P_emaildomain="never-seen.example", ProductCD="S", card4="discover", card1=99999, addr1=1.0)
    b.update(R_emaildomain=None, M4=None, id_31=None, D1=float("nan"), dist1=float("nan"), C1=3)
    for name in ("D1", "addr1", "M6", "TransactionAmt"):
        c.pop(name, None)
    c["TransactionAmt"] = 12  # an integer amount
    required = {k: records[3][k] for k in ("TransactionID", "TransactionDT", "TransactionAmt", "ProductCD", "card1")}
    return [a, b, c, required]


def test_records_equal_the_frame_path_on_a_holdout(fitted):
    state, records = fitted
    rows = _odd_rows(records) + records[:300]
    assert len(rows) > SMALL_LOOKUP and len(rows) > SMALL_QUERY  # the large-input lookups
    X = state.transform_records(rows)
    assert X.dtype == np.float32 and X.shape == (len(rows), len(state.feature_names))
    np.testing.assert_array_equal(X, state.transform(pd.DataFrame(rows)).to_numpy())


def test_one_row_at_a_time_equals_the_batch(fitted):
    state, records = fitted
    rows = _odd_rows(records) + records[:40]
    together = state.transform_records(rows)
    for i, row in enumerate(rows):  # the small-input lookups, one row each
        np.testing.assert_array_equal(state.transform_records([row]), together[[i]])
    np.testing.assert_array_equal(state.transform_records(rows[:10]), together[:10])


def test_a_row_with_nothing_known_is_all_missing_aggregates(fitted):
    state, records = fitted
    row = {**_odd_rows(records)[0], "card1": 99999, "addr1": 1.0}
    X = pd.DataFrame(state.transform_records([row]), columns=state.feature_names)
    assert X.loc[0, "uid_n_prev"] == 0 and X.loc[0, "card1_n_prev"] == 0
    assert np.isnan(X.loc[0, "uid_mean_TransactionAmt"]) and np.isnan(X.loc[0, "P_emaildomain"])
    assert X.loc[0, "freq_P_emaildomain"] == 0 and X.loc[0, "freq_card1"] == 0


def test_hand_computed_values_from_records():
    # test_features' clients: client A (card1 1000, addr1 100, start day 5) has rows on days 10, 12, 13 with
    # amounts 10, 30, 40 before holdout row 10 (day 20, amount 50): 3 rows, mean 80/3, first 10 days before.
    state = F.FeatureState.fit(HISTORY)
    row = {"TransactionID": 10, "TransactionDT": 20 * 86400, "TransactionAmt": 50, "ProductCD": "W", "card1": 1000}
    row.update(addr1=100.0, D1=15.0, C1=1.0, P_emaildomain="gmail.com")
    X = pd.DataFrame(state.transform_records([row]), columns=state.feature_names)
    assert X.loc[0, "uid_n_prev"] == 3
    assert X.loc[0, "uid_mean_TransactionAmt"] == pytest.approx(80 / 3, rel=1e-6)
    assert X.loc[0, "uid_amt_ratio"] == pytest.approx(50 / (80 / 3), rel=1e-6)
    assert X.loc[0, "uid_days_since_first"] == pytest.approx(10.0)
    assert X.loc[0, "freq_card1"] == pytest.approx(0.75)  # 3 of the 4 fitted rows
    expected = state.transform(HOLDOUT.iloc[[0]].drop(columns=["isFraud"]))
    np.testing.assert_array_equal(X.to_numpy(), expected.to_numpy())


def test_empty_input():
    state = F.FeatureState.fit(HISTORY)
    assert state.transform_records([]).shape == (0, len(state.feature_names))


@pytest.mark.parametrize("n", [1, 5, SMALL_QUERY + 1, 200])
def test_count_below_matches_brute_force(n):
    rng = np.random.default_rng(n)
    sorted_dt = np.sort(rng.integers(0, 50, 300))
    start = rng.integers(0, 300, n)
    stop = np.minimum(start + rng.integers(0, 40, n), 300)
    dt = rng.integers(-5, 55, n)
    expected = [int((sorted_dt[a:b] < t).sum()) for a, b, t in zip(start, stop, dt, strict=True)]
    assert count_below(sorted_dt, start, stop, dt).tolist() == expected


@pytest.mark.parametrize("n", [1, SMALL_LOOKUP + 1])
def test_value_table_positions(n):
    text = ValueTable(["a", "b", "c"])
    values = np.array((["c", None, "zz", "a"] * n)[:n], dtype=object)
    expected = [{"a": 0, "b": 1, "c": 2}.get(v, -1) for v in values]
    assert text.positions(values).tolist() == expected
    numbers = ValueTable([1.0, 2.5, 1000.0])
    values = np.array(([1000.0, math.nan, 2.5, 7.0] * n)[:n])
    assert numbers.positions(values).tolist() == [{1000.0: 2, 2.5: 1, 1.0: 0}.get(v, -1) for v in values]


def test_key_aggregates_in_chunks_equal_one_pass(fitted, monkeypatch):
    state, records = fitted
    rows = records[:100]
    whole = state.transform_records(rows)
    monkeypatch.setattr(F, "KEY_CHUNK_ROWS", 7)
    np.testing.assert_array_equal(state.transform_records(rows), whole)
    np.testing.assert_array_equal(state.transform(pd.DataFrame(rows)).to_numpy(), whole)
