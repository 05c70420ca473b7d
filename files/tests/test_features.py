"""features.py: time split, and a FeatureState that sees only the train window and only earlier rows.

Expected values are worked out by hand from the small frames below (days of TransactionDT, one client key)."""

import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import features as F
from fraud_demo_jobs.errors import JobError

DAY = 86400


def tx(rows):
    """Transactions from (id, day, hour, amount, card1, addr1, D1, ProductCD, isFraud) tuples; other columns NaN."""
    recs = []
    for tid, day, hour, amt, card1, addr1, d1, prod, fraud in rows:
        recs.append({
            "TransactionID": tid, "isFraud": fraud, "TransactionDT": day * DAY + hour * 3600,
            "TransactionAmt": amt, "ProductCD": prod, "card1": card1, "addr1": addr1, "D1": d1,
            "C1": 1.0, "P_emaildomain": "gmail.com", "R_emaildomain": None, "M4": None,
        })  # fmt: skip
    return pd.DataFrame(recs)


# Client A: card1 1000, addr1 100, card start day 5 (= day - D1). Client B: card1 2000, addr1 200, start day 1.
HISTORY = tx([
    (1, 10, 0, 10.0, 1000, 100.0, 5.0, "W", 0),
    (2, 12, 0, 30.0, 1000, 100.0, 7.0, "W", 0),
    (3, 12, 0, 99.0, 2000, 200.0, 11.0, "C", 1),
    (4, 13, 6, 40.0, 1000, 100.0, 8.0, "C", 0),
])  # fmt: skip
HOLDOUT = tx([
    (10, 20, 0, 50.0, 1000, 100.0, 15.0, "W", 1),  # client A: history rows 1, 2, 4
    (11, 21, 0, 70.0, 1000, 100.0, 16.0, "H", 0),  # client A again, a day later; H never seen in history
    (12, 21, 0, 5.0, 3000, 300.0, 1.0, "W", 0),  # unknown client, unknown card1
])  # fmt: skip


def test_holdout_aggregates_use_only_fitted_earlier_rows():
    state = F.FeatureState.fit(HISTORY)
    X = state.transform(HOLDOUT)
    # Client A before day 20: amounts 10, 30, 40 -> 3 rows, mean 80/3; first on day 10, last on day 13 06:00.
    assert X.loc[0, "uid_n_prev"] == 3
    assert X.loc[0, "uid_mean_TransactionAmt"] == pytest.approx(80 / 3, rel=1e-6)
    assert X.loc[0, "uid_amt_ratio"] == pytest.approx(50 / (80 / 3), rel=1e-6)
    assert X.loc[0, "uid_days_since_first"] == pytest.approx(10.0)
    assert X.loc[0, "uid_hours_since_last"] == pytest.approx(7 * 24 - 6)
    # The next holdout row of client A does not see row 10 (not fitted): still the same three rows.
    assert X.loc[1, "uid_n_prev"] == 3
    assert X.loc[1, "uid_mean_TransactionAmt"] == pytest.approx(80 / 3, rel=1e-6)
    # card1 1000 has the same three rows; card1 3000 none.
    assert X.loc[0, "card1_n_prev"] == 3
    assert X.loc[2, "uid_n_prev"] == 0 and np.isnan(X.loc[2, "uid_mean_TransactionAmt"])
    assert X.loc[2, "card1_n_prev"] == 0
    # The recent windows: nothing of client A in the 1 or 7 days before day 20 06:00... day 13 06:00 is 6.75 days
    # before day 20 00:00, so it is inside the 7-day window.
    assert X.loc[0, "uid_n_1d"] == 0
    assert X.loc[0, "uid_n_7d"] == 1


def test_rows_are_scored_independently_of_each_other():
    state = F.FeatureState.fit(HISTORY)
    together = state.transform(HOLDOUT)
    for i in range(len(HOLDOUT)):
        alone = state.transform(HOLDOUT.iloc[[i]].reset_index(drop=True))
        np.testing.assert_array_equal(alone.to_numpy(), together.iloc[[i]].to_numpy())


def test_fitted_rows_at_or_after_a_row_are_not_used():
    # Fit on history plus a later row of client A with a huge amount (day 25) and one at exactly the holdout row's
    # time (day 20 00:00): neither is strictly earlier than the first holdout row, so nothing changes for it.
    later = tx([(20, 25, 0, 1e6, 1000, 100.0, 20.0, "W", 0), (21, 20, 0, 1e6, 1000, 100.0, 15.0, "W", 0)])
    state = F.FeatureState.fit(pd.concat([HISTORY, later], ignore_index=True))
    X = state.transform(HOLDOUT.iloc[[0]])
    assert X.loc[0, "uid_n_prev"] == 3
    assert X.loc[0, "uid_mean_TransactionAmt"] == pytest.approx(80 / 3, rel=1e-6)


def test_training_rows_get_causal_aggregates():
    state = F.FeatureState.fit(HISTORY)
    X = state.transform(HISTORY)
    # Row 1: first of client A. Row 2: sees row 1 only (10). Row 4: sees rows 1 and 2 (mean 20). Row 3: client B.
    assert list(X["uid_n_prev"]) == [0, 1, 0, 2]
    assert np.isnan(X.loc[0, "uid_mean_TransactionAmt"])
    assert X.loc[1, "uid_mean_TransactionAmt"] == 10.0
    assert X.loc[3, "uid_mean_TransactionAmt"] == 20.0
    assert X.loc[3, "uid_amt_ratio"] == 2.0
    # card1 1000 at day 12 00:00 (row 2): only row 1 is strictly earlier; row 3 (card1 2000) is another card.
    assert list(X["card1_n_prev"]) == [0, 1, 0, 2]


def test_encoders_are_fitted_on_the_train_window_only():
    state = F.FeatureState.fit(HISTORY)
    X = state.transform(HOLDOUT)
    # ProductCD categories from history: C, W (sorted) -> C=0, W=1; H appears only in the holdout -> missing.
    assert state.categories["ProductCD"] == ["C", "W"]
    assert X.loc[0, "ProductCD"] == 1.0 and np.isnan(X.loc[1, "ProductCD"])
    # Frequencies are shares of the 4 history rows: card1 1000 in 3 of them, addr1 200 in 1, card1 3000 in none.
    assert X.loc[0, "freq_card1"] == pytest.approx(0.75)
    assert X.loc[2, "freq_card1"] == 0.0
    assert state.transform(HISTORY).loc[2, "freq_addr1"] == pytest.approx(0.25)
    # Fitting never reads the label: flipping every label gives the same state and features.
    flipped = HISTORY.assign(isFraud=1 - HISTORY["isFraud"])
    np.testing.assert_array_equal(F.FeatureState.fit(flipped).transform(HOLDOUT).to_numpy(), X.to_numpy())


def test_feature_frame_shape_and_names():
    state = F.FeatureState.fit(HISTORY)
    X = state.transform(HOLDOUT)
    assert list(X.columns) == state.feature_names
    assert set(X.dtypes) == {np.dtype("float32")}
    assert "uid" not in X.columns and "TransactionDT" not in X.columns and "isFraud" not in X.columns
    assert set(state.categorical_features) <= set(state.feature_names)
    assert {"TransactionDT", "card1", "addr1", "D1", "TransactionAmt"} <= set(state.input_columns)


def test_works_on_string_dtypes_as_read_from_parquet(tmp_path):
    # pandas may give strings as object, pyarrow-backed strings or categories: same features.
    state = F.FeatureState.fit(HISTORY)
    expected = state.transform(HOLDOUT).to_numpy()
    for dtype in ("string[pyarrow]", "category"):
        text = {c: HOLDOUT[c].astype(dtype) for c in ("ProductCD", "P_emaildomain", "R_emaildomain", "M4")}
        np.testing.assert_array_equal(state.transform(HOLDOUT.assign(**text)).to_numpy(), expected)


def test_save_and_load_give_the_same_features(tmp_path):
    state = F.FeatureState.fit(HISTORY)
    paths = state.save(str(tmp_path / "state"))
    assert all(p.endswith((".json", ".parquet")) for p in paths)
    loaded = F.FeatureState.load(str(tmp_path / "state"))
    np.testing.assert_array_equal(loaded.transform(HOLDOUT).to_numpy(), state.transform(HOLDOUT).to_numpy())
    assert loaded.feature_names == state.feature_names
    assert loaded.fingerprint() == state.fingerprint() == F.FeatureState.fit(HOLDOUT).fingerprint()


def test_model_frame_joins_identity_and_sorts_by_time():
    transaction = pd.DataFrame({"TransactionID": [3, 1, 2], "TransactionDT": [300, 100, 100], "isFraud": [0, 1, 0]})
    identity = pd.DataFrame({"TransactionID": [2], "DeviceType": ["mobile"]})
    frame = F.model_frame(transaction, identity)
    assert list(frame["TransactionID"]) == [1, 2, 3]
    assert list(frame.index) == [0, 1, 2]
    assert frame["DeviceType"].isna().tolist() == [True, False, True]


def split_frame():
    # Days 0..9, one row per day at noon; frauds on days 1, 5 and 8.
    return pd.DataFrame({
        "TransactionID": range(10), "TransactionDT": [d * DAY + 12 * 3600 for d in range(10)],
        "isFraud": [0, 1, 0, 0, 0, 1, 0, 0, 1, 0],
    })  # fmt: skip


def test_time_split_parts():
    # End = day 9 noon. Holdout 2 days: after day 7 noon -> days 8, 9. Gap 1 day: day 7 dropped (up to day 6 noon
    # is the train window). Valid 2 days: after day 4 noon -> days 5, 6. Train: days 0..4.
    split = F.time_split(split_frame(), F.SplitSpec(holdout_days=2, gap_days=1, valid_days=2))
    assert list(split.train["TransactionID"]) == [0, 1, 2, 3, 4]
    assert list(split.valid["TransactionID"]) == [5, 6]
    assert list(split.holdout["TransactionID"]) == [8, 9]
    assert list(split.history["TransactionID"]) == [0, 1, 2, 3, 4, 5, 6]
    b = split.bounds()
    assert b["holdout"] == {"rows": 2, "frauds": 1, "dt_min": 8 * DAY + 43200, "dt_max": 9 * DAY + 43200}
    assert b["train"]["frauds"] == 1 and b["valid"]["rows"] == 2


def test_time_split_refuses_a_holdout_without_fraud():
    with pytest.raises(JobError, match=r"holdout part .* no fraud rows.*--holdout-days"):
        # Holdout: after day 8 noon -> day 9 only, no fraud.
        F.time_split(split_frame(), F.SplitSpec(holdout_days=1, gap_days=1, valid_days=4))


def test_time_split_refuses_an_empty_train_part():
    with pytest.raises(JobError, match="train part of the time split is empty"):
        F.time_split(split_frame(), F.SplitSpec(holdout_days=5, gap_days=2, valid_days=3))


@pytest.mark.parametrize(
    "spec, flag",
    [
        (F.SplitSpec(holdout_days=0), "--holdout-days"),
        (F.SplitSpec(gap_days=-1), "--gap-days"),
        (F.SplitSpec(valid_days=float("nan")), "--valid-days"),
        (F.SplitSpec(holdout_days=400), "--holdout-days"),
    ],
)
def test_split_spec_validate(spec, flag):
    assert flag in spec.validate()
    with pytest.raises(JobError, match=flag):
        F.time_split(split_frame(), spec)


def test_split_spec_defaults_are_valid():
    assert F.SplitSpec().validate() is None
