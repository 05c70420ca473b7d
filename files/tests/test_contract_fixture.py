"""The dataset contract (fraud_demo_jobs.ieee_schema) checked against facts written down independently of it.

The generator takes its columns and domains from the contract, so "0 rows quarantined on generated data" says
nothing about whether the contract is right. Here the expected values come from elsewhere: hand-typed rows in the
real files' format (``fixtures/ieee_real/``, see its README.md for where each value comes from) and the dataset's
public description (``ieee-cis-dataset.md``), written below as literals.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pandera.errors
import pyarrow.csv as pcsv
import pytest

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import ieee_schema as S

# isort: on

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "ieee_real"
BAD = FIXTURES / "ieee_real_bad"

# The contract's fingerprint names curated dataset versions: recorded before the generator was made to read the
# contract. It may only change together with the contract itself (and then every curated version changes).
FINGERPRINT = "af353dcc114fd8331d56dc91a1158e47c3fbe84deeefb436f748fc19a01295e6"


def test_fingerprint_is_unchanged():
    assert S.fingerprint() == FINGERPRINT


# --------------------------------------------------------------------------------- reading as ingest reads


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return f.readline().rstrip("\n").split(",")


def _read(spec: S.TableSpec, path: Path) -> pd.DataFrame:
    """Parse with the contract's column types (arrow_types) and convert with its types_mapper, as ingest does."""
    raw = _header(path)
    convert = pcsv.ConvertOptions(column_types=S.arrow_types(spec, raw), strings_can_be_null=True)
    frame = pcsv.read_csv(path, convert_options=convert).to_pandas(types_mapper=S.types_mapper)
    frame.columns = S.normalise(spec, raw)
    return frame


def _validate(spec: S.TableSpec, frame: pd.DataFrame, state: S.KeyState) -> None:
    state.seen = set()
    S.pandera_schema(spec, state).validate(frame, lazy=True)


@pytest.fixture(scope="module")
def good() -> dict[str, pd.DataFrame]:
    return {spec.name: _read(spec, GOOD / spec.file) for spec in S.TABLES}


@pytest.fixture(scope="module")
def valid_keys(good) -> S.KeyState:
    state = S.KeyState()
    for spec in S.TABLES:  # the contract's order: a table after the one it references
        _validate(spec, good[spec.name], state)
        state.valid[spec.name] = set(good[spec.name][S.KEY])
    return state


def test_fixture_headers_are_the_contracts(good):
    for spec in S.TABLES:
        assert _header(GOOD / spec.file) == S.raw_header(spec), spec.name
    assert _header(GOOD / "test_identity.csv")[1:3] == ["id-01", "id-02"]
    assert _header(GOOD / "train_identity.csv")[1:3] == ["id_01", "id_02"]


def test_every_hand_written_row_is_accepted(good, valid_keys):
    counts = {name: len(frame) for name, frame in good.items()}
    assert counts == {
        "train_transaction": 10,
        "test_transaction": 4,
        "train_identity": 4,
        "test_identity": 1,
        "sample_submission": 4,
    }
    assert valid_keys.valid["train_identity"] == {2987004, 2987008, 2987010, 2987011}
    assert valid_keys.valid["test_identity"] == {3663586}


def test_the_fixture_parses_to_the_values_typed_in_it(good):
    """A check of the fixture itself: fields land in the right columns, empty fields are missing values."""
    tr = good["train_transaction"].set_index(S.KEY)
    first = tr.loc[2987000]
    assert (first["isFraud"], first["TransactionDT"], first["TransactionAmt"]) == (0, 86400, 68.5)
    assert (first["ProductCD"], first["card1"], first["card4"], first["card6"]) == ("W", 13926, "discover", "credit")
    assert math.isnan(first["card2"]) and first["addr1"] == 315.0 and first["dist1"] == 19.0
    assert pd.isna(first["P_emaildomain"]) and first["C11"] == 2.0 and first["D1"] == 14.0 and first["D15"] == 0.0
    assert (first["M1"], first["M4"], first["M6"]) == ("T", "M2", "T") and pd.isna(first["M7"])
    assert first["V1"] == 1.0 and first["V3"] == 1.0 and math.isnan(first["V4"]) and math.isnan(first["V339"])
    assert tr.loc[2987001, "TransactionAmt"] == 29.0 and tr.loc[2987001, "P_emaildomain"] == "gmail.com"
    assert tr.loc[2987004, "ProductCD"] == "H" and tr.loc[2987004, "V337"] == 0.0
    assert math.isnan(tr.loc[2987004, "V336"])
    fraud = tr.loc[2987011]
    assert (fraud["isFraud"], fraud["TransactionAmt"], fraud["card4"], fraud["card6"]) == (
        1,
        0.251,
        "american express",
        "charge card",
    )
    assert [fraud[f"D{i}"] for i in (4, 6, 11, 14, 15)] == [-83.0, -5.0, -53.0, -193.0, -83.0]
    assert tr.loc[2987010, "TransactionAmt"] == 75.887 and tr.loc[2987012, "card6"] == "debit or credit"
    vblock = tr[[f"V{i}" for i in range(1, 340)]]
    assert vblock.isna().to_numpy().mean() > 0.95  # the V block is mostly empty
    assert good["test_transaction"].columns[1] == "TransactionDT"  # no isFraud in test
    assert good["test_transaction"].set_index(S.KEY).loc[3663551, "D11"] == -6.0
    ident = good["train_identity"].set_index(S.KEY).loc[2987004]
    assert (ident["id_01"], ident["id_02"], ident["id_14"], ident["id_15"]) == (0.0, 70787.0, -480.0, "New")
    assert (ident["id_28"], ident["id_34"], ident["DeviceType"]) == ("New", "match_status:2", "mobile")
    assert ident["DeviceInfo"] == "SAMSUNG SM-G892A Build/NRD90M" and math.isnan(ident["id_03"])
    test_ident = good["test_identity"].set_index(S.KEY).loc[3663586]
    assert test_ident["id_01"] == -45.0 and test_ident["id_31"] == "chrome 70.0 for android"
    assert (good["sample_submission"]["isFraud"] == 0.5).all()


# ------------------------------------------------------------------------------------------------- bad rows

# TransactionID -> (column, pandera check, offending value): one hand-written fault per row.
BAD_TRANSACTIONS = {
    2987100: ("card4", "isin", "visa "),
    2987101: ("ProductCD", "isin", "X"),
    2987102: ("isFraud", "isin", 2),
    2987103: ("TransactionAmt", "greater_than", 0.0),
    2987104: ("M4", "isin", "M3"),
}


def _failures(spec: S.TableSpec, frame: pd.DataFrame, state: S.KeyState) -> dict[int, list[tuple]]:
    with pytest.raises(pandera.errors.SchemaErrors) as err:
        _validate(spec, frame, state)
    out: dict[int, list[tuple]] = {}
    for row in err.value.failure_cases.itertuples(index=False):
        key = int(frame[S.KEY].iloc[int(row.index)])
        out.setdefault(key, []).append((row.column, re.sub(r"\(.*", "", row.check), row.failure_case))
    return out


def test_each_bad_transaction_row_is_rejected_by_its_rule():
    spec = S.BY_NAME["train_transaction"]
    frame = _read(spec, BAD / spec.file)
    assert _failures(spec, frame, S.KeyState()) == {k: [v] for k, v in BAD_TRANSACTIONS.items()}


def test_an_unknown_device_type_is_rejected(valid_keys):
    spec = S.BY_NAME["train_identity"]
    frame = _read(spec, BAD / spec.file)
    state = S.KeyState(valid={"train_transaction": valid_keys.valid["train_transaction"]})
    assert _failures(spec, frame, state) == {2987004: [("DeviceType", "isin", "tablet")]}


# ------------------------------------------------------------------------------------- the public facts

TX = S.BY_NAME["train_transaction"]
ID = S.BY_NAME["train_identity"]
NUMERIC_ID = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 17, 18, 19, 20, 21, 22, 24, 25, 26, 32}


def _domain(spec: S.TableSpec, name: str) -> set:
    return set(spec.col(name).isin)


def test_column_counts_and_kinds_are_the_documented_ones():
    widths = {t.name: len(t.columns) for t in S.TABLES}
    assert widths == {
        "train_transaction": 394,
        "test_transaction": 393,
        "train_identity": 41,
        "test_identity": 41,
        "sample_submission": 2,
    }
    # pandas' default read: train_transaction float64 x 376, int64 x 4, object x 14; identity 23 / 1 / 17
    kinds = {name: [c.kind for c in S.BY_NAME[name].columns] for name in ("train_transaction", "train_identity")}
    assert {k: kinds["train_transaction"].count(k) for k in ("float", "int", "str")} == {
        "float": 376,
        "int": 4,
        "str": 14,
    }
    assert {k: kinds["train_identity"].count(k) for k in ("float", "int", "str")} == {"float": 23, "int": 1, "str": 17}
    assert {c.name for c in TX.columns if c.kind == "int"} == {"TransactionID", "isFraud", "TransactionDT", "card1"}
    assert {int(c.name[3:]) for c in ID.columns if c.name.startswith("id_") and c.kind == "float"} == NUMERIC_ID
    assert [c.name for c in S.BY_NAME["sample_submission"].columns] == ["TransactionID", "isFraud"]
    assert "isFraud" not in S.BY_NAME["test_transaction"].names


def test_categorical_domains_are_the_documented_ones():
    assert _domain(TX, "ProductCD") == {"W", "C", "R", "H", "S"}
    assert _domain(TX, "card4") == {"visa", "mastercard", "american express", "discover"}
    assert _domain(TX, "card6") == {"debit", "credit", "debit or credit", "charge card"}
    for m in (1, 2, 3, 5, 6, 7, 8, 9):
        assert _domain(TX, f"M{m}") == {"T", "F"}
    assert _domain(TX, "M4") == {"M0", "M1", "M2"}
    assert _domain(ID, "DeviceType") == {"desktop", "mobile"}
    for i in (12, 16, 27, 29):
        assert _domain(ID, f"id_{i}") == {"Found", "NotFound"}
    # described as Found/NotFound, but the first train_identity row (2987004, in the fixture) has id_28 = New
    assert _domain(ID, "id_28") == {"Found", "NotFound", "New"}
    assert _domain(ID, "id_15") == {"New", "Found", "Unknown"}
    for i in (35, 36, 37, 38):
        assert _domain(ID, f"id_{i}") == {"T", "F"}
    assert _domain(ID, "id_23") == {"IP_PROXY:TRANSPARENT", "IP_PROXY:ANONYMOUS", "IP_PROXY:HIDDEN"}
    pattern = ID.col("id_34").pattern
    assert all(re.fullmatch(pattern, f"match_status:{k}") for k in (-1, 0, 1, 2))
    assert not any(re.fullmatch(pattern, v) for v in ("match_status:3", "match_status:", "2"))
    assert ID.col("DeviceInfo").isin is None and TX.col("P_emaildomain").isin is None  # open-ended


def test_key_label_and_amount_rules_are_the_documented_ones():
    assert _domain(TX, "isFraud") == {0, 1}
    assert TX.col("TransactionAmt").gt == 0 and not TX.col("TransactionAmt").nullable
    assert not TX.col("card1").nullable  # never empty
    sub = S.BY_NAME["sample_submission"].col("isFraud")
    assert (sub.ge, sub.le) == (0, 1)
    refs = {t.name: t.references for t in S.TABLES}
    assert refs["train_identity"] == "train_transaction" and refs["test_identity"] == "test_transaction"
    assert refs["sample_submission"] == "test_transaction"
