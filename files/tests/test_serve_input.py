"""serve_input.py: /predict bodies against the contract. Bodies are hand-written or taken from the hand-written
real-format fixture files (tests/fixtures/ieee_real), never generated from the contract."""

import csv
import json
import os

import pytest
from fraud_demo_jobs import serve_input as S

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "ieee_real")


def _value(text: str):
    """A CSV field as a JSON client would send it: the real files write integers without a point."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _fixture_rows(name: str) -> list[dict]:
    with open(os.path.join(FIXTURES, name), newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k.replace("id-", "id_"): _value(v) for k, v in r.items() if v != ""} for r in rows]


def _real_row() -> dict:
    """test_transaction 3663586 joined with its identity row (the fixture's only identity row)."""
    tx = {r["TransactionID"]: r for r in _fixture_rows("test_transaction.csv")}
    ident = _fixture_rows("test_identity.csv")[0]
    return {**tx[3663586], **ident}


MINIMAL = {
    "TransactionID": 3663549,
    "TransactionDT": 18403224,
    "TransactionAmt": 31.95,
    "ProductCD": "W",
    "card1": 10409,
}


def _problems(body, max_rows=1000) -> tuple[int, list[dict]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(S.InputError) as info:
        S.parse_predict_body(raw, max_rows)
    return info.value.status, info.value.problems


def test_columns_are_the_test_tables_with_the_key_once():
    assert S.INPUT_COLUMNS.count("TransactionID") == 1
    assert "isFraud" not in S.INPUT_COLUMNS
    # 393 test_transaction columns + 40 test_identity columns without its key (Kaggle's headers: 393 and 41).
    assert len(S.INPUT_COLUMNS) == 393 + 40
    assert {"id_01", "id_38", "DeviceInfo", "V339", "M9"} <= set(S.INPUT_COLUMNS)
    assert S.REQUIRED_COLUMNS == ("TransactionID", "TransactionDT", "TransactionAmt", "ProductCD", "card1")


def test_every_real_fixture_row_is_valid():
    for row in _fixture_rows("test_transaction.csv"):
        rows, batch = S.parse_predict_body(json.dumps(row).encode(), 10)
        assert rows == [row] and batch is False


def test_a_real_row_with_identity_fields_comes_back_as_sent():
    row = _real_row()
    assert row["DeviceType"] == "mobile" and row["id_31"] == "chrome 70.0 for android" and row["ProductCD"] == "R"
    rows, batch = S.parse_predict_body(json.dumps(row).encode(), 10)
    assert rows == [row] and batch is False
    assert rows[0]["TransactionAmt"] == 100.0 and rows[0]["id_01"] == -45.0


def test_minimal_row_and_nulls_for_optional_fields():
    body = {**MINIMAL, "card2": None, "id_01": None, "DeviceInfo": None}
    rows, batch = S.parse_predict_body(json.dumps(body).encode(), 1)
    assert rows == [body] and batch is False


def test_an_integer_is_accepted_as_a_number():
    rows, _ = S.parse_predict_body(json.dumps({**MINIMAL, "TransactionAmt": 50, "C1": 2}).encode(), 1)
    assert rows[0]["TransactionAmt"] == 50 and rows[0]["C1"] == 2


def test_each_broken_rule_is_named_with_its_field():
    body = {
        **MINIMAL,
        "ProductCD": "Z",
        "card1": "abc",
        "isFraud": 0,
        "TransactionAmt": 0,
        "id_34": "match_status:7",
        "card4": {"brand": "visa"},
        "card2": "111",
        "M4": "M3",
        "DeviceType": "tablet",
    }
    del body["TransactionDT"]
    status, problems = _problems(body)
    assert status == 422
    assert sorted(problems, key=lambda p: p["field"]) == [
        {"row": 0, "field": "DeviceType", "rule": "must be one of desktop, mobile"},
        {"row": 0, "field": "M4", "rule": "must be one of M0, M1, M2"},
        {"row": 0, "field": "ProductCD", "rule": "must be one of W, C, R, H, S"},
        {"row": 0, "field": "TransactionAmt", "rule": "must be greater than 0"},
        {"row": 0, "field": "TransactionDT", "rule": "required"},
        {"row": 0, "field": "card1", "rule": "must be an integer"},
        {"row": 0, "field": "card2", "rule": "must be a number"},
        {"row": 0, "field": "card4", "rule": "must be one of visa, mastercard, american express, discover"},
        {"row": 0, "field": "id_34", "rule": "must match ^match_status:(-1|0|1|2)$"},
        {"row": 0, "field": "isFraud", "rule": "unknown field"},
    ]


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("card1", 1.5, "must be an integer"),
        ("card1", "12", "must be an integer"),
        ("card1", True, "must be an integer"),
        ("TransactionID", -1, "must be at least 0"),
        ("TransactionID", None, "required, must not be null"),
        ("P_emaildomain", 3, "must be a string"),
        ("DeviceInfo", ["a"], "must be a string"),
        ("id_01", "x", "must be a number"),
        ("card3", {"a": 1}, "must be a number"),
        ("Card1", 5, "unknown field"),
    ],
)
def test_strict_kinds(field, value, rule):
    status, problems = _problems({**MINIMAL, field: value})
    assert (status, problems) == (422, [{"row": 0, "field": field, "rule": rule}])


def test_batch_reports_the_row_index():
    status, problems = _problems([MINIMAL, {**MINIMAL, "ProductCD": "Z"}])
    assert (status, problems) == (422, [{"row": 1, "field": "ProductCD", "rule": "must be one of W, C, R, H, S"}])


def test_batch_of_valid_rows():
    rows, batch = S.parse_predict_body(json.dumps([MINIMAL, {**MINIMAL, "TransactionID": 7}]).encode(), 2)
    assert batch is True and [r["TransactionID"] for r in rows] == [3663549, 7]


def test_a_batch_item_that_is_not_an_object():
    assert _problems([MINIMAL, 3]) == (422, [{"row": 1, "field": None, "rule": "must be a JSON object"}])


@pytest.mark.parametrize("body", [b"{bad", b'{"TransactionID": 1', b"[{}", b"", b"nul", b'"text"', b"3", b"null"])
def test_malformed_json_or_not_an_object_is_400(body):
    with pytest.raises(S.InputError) as info:
        S.parse_predict_body(body, 10)
    assert info.value.status == 400 and "JSON" in info.value.message


def test_too_many_rows_is_413_and_an_empty_batch_is_422():
    with pytest.raises(S.InputError) as info:
        S.parse_predict_body(json.dumps([MINIMAL] * 3).encode(), 2)
    assert info.value.status == 413 and "limit of 2" in info.value.message
    with pytest.raises(S.InputError) as info:
        S.parse_predict_body(b"[]", 2)
    assert info.value.status == 422 and "empty" in info.value.message


def test_problems_are_capped():
    rows = [{"TransactionID": "x"}] * 30  # 5 problems each
    status, problems = _problems(rows)
    assert status == 422 and len(problems) == S.MAX_PROBLEMS
