"""curate.curate_file on small hand-written files (no AWS): what a byte that is not UTF-8 costs."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import curate
from fraud_demo_jobs import ieee_schema as S

# isort: on

IDENTITY = S.BY_NAME["train_identity"]
# The identity file's header, written out: TransactionID, id_01 … id_38, DeviceType, DeviceInfo.
HEADER = "TransactionID," + ",".join(f"id_{i:02d}" for i in range(1, 39)) + ",DeviceType,DeviceInfo"


def identity_row(tid: int, id_01: bytes = b"", id_12: bytes = b"", device: bytes = b"", info: bytes = b"") -> bytes:
    """One train_identity line: the given fields, every other one empty (41 fields, 40 commas)."""
    cells = [str(tid).encode(), id_01] + [b""] * 37 + [device, info]
    cells[12] = id_12  # id_12 is the 13th field
    return b",".join(cells)


def write(tmp_path, rows: list[bytes]):
    path = tmp_path / "train_identity.csv"
    path.write_bytes(HEADER.encode() + b"\n" + b"\n".join(rows) + b"\n")
    return path


def read_quarantine(path) -> pa.Table:
    return pcsv.read_csv(
        path,
        convert_options=pcsv.ConvertOptions(
            column_types={"_line": pa.int64(), "_reason": pa.string(), "DeviceInfo": pa.string(), "id_01": pa.string()},
            strings_can_be_null=True,
        ),
    )


def test_a_byte_that_is_not_utf8_costs_its_row_only(tmp_path):
    rows = [
        identity_row(2987004, b"0.0", b"NotFound", b"mobile", b"SAMSUNG SM-G892A Build/NRD90M"),  # line 2
        identity_row(2987008, b"-5.0", b"NotFound", b"mobile", b"iOS Device"),  # line 3
        identity_row(2987010, b"-5.0", b"Found", b"desktop", b"Windows\xe9"),  # line 4: latin-1 "é" in a text field
        identity_row(2987011, b"-5.0", b"Found", b"desktop", b"Windows"),  # line 5
        identity_row(2987016, b"-10\xff", b"Found", b"desktop", b"MacOS"),  # line 6: stray byte in a numeric field
        identity_row(2987017, b"-5.0", b"Not\xc3Found", b"desktop", b"Windows"),  # line 7: cut UTF-8 in a domain
        identity_row(2987022, b"-15.0", b"Found", b"mobile", b"Moto G (4)"),  # line 8
    ]
    path = write(tmp_path, rows)
    state = S.KeyState(valid={"train_transaction": {2987004, 2987008, 2987010, 2987011, 2987016, 2987017, 2987022}})
    res = curate.curate_file(IDENTITY, str(path), str(tmp_path / "out"), state, max_bad_fraction=0.5)

    assert (res.rows_in, res.rows_valid, res.rows_quarantined) == (7, 4, 3)
    assert res.reasons == {"DeviceInfo: not valid UTF-8": 1, "id_01: not valid UTF-8": 1, "id_12: not valid UTF-8": 1}
    q = read_quarantine(res.quarantine_path)
    assert q["_line"].to_pylist() == [4, 6, 7]
    # One reason per row: the value's other rules (not a number, not in the domain) are not piled on.
    assert q["_reason"].to_pylist() == [
        "DeviceInfo: not valid UTF-8",
        "id_01: not valid UTF-8",
        "id_12: not valid UTF-8",
    ]
    assert q["TransactionID"].to_pylist() == [2987010, 2987016, 2987017]
    # The bytes as written, escaped, so that the quarantine file itself is text.
    assert q["DeviceInfo"].to_pylist()[0] == "Windows\\xe9"
    assert q["id_01"].to_pylist()[1] == "-10\\xff"

    curated = pq.read_table(res.parquet_path)
    assert curated["TransactionID"].to_pylist() == [2987004, 2987008, 2987011, 2987022]
    assert curated["DeviceInfo"].to_pylist() == ["SAMSUNG SM-G892A Build/NRD90M", "iOS Device", "Windows", "Moto G (4)"]
    assert curated["id_01"].to_pylist() == [0.0, -5.0, -5.0, -15.0]
    assert curated.schema.field("id_01").type == pa.float64()
    assert res.text_columns == ["id_01"]  # re-read as text because of the stray byte, converted per row


def test_valid_multibyte_text_is_kept_as_is(tmp_path):
    path = write(
        tmp_path, [identity_row(1, b"0.0", b"Found", b"mobile", "Galaxy Note\u00ae \u2013 \u00e9t\u00e9".encode())]
    )
    state = S.KeyState(valid={"train_transaction": {1}})
    res = curate.curate_file(IDENTITY, str(path), str(tmp_path / "out"), state)
    assert (res.rows_valid, res.rows_quarantined) == (1, 0)
    assert pq.read_table(res.parquet_path)["DeviceInfo"].to_pylist() == ["Galaxy Note\u00ae \u2013 \u00e9t\u00e9"]


def test_a_row_with_a_bad_byte_and_the_wrong_number_of_fields_costs_its_row_only(tmp_path, capfd):
    """pyarrow cannot hand such a line to the bad-row handler (it decodes it first): the fallback copy replaces
    each line that is not UTF-8 by a stand-in, so the row is still quarantined alone, with its line and text."""
    rows = [
        identity_row(1, b"0.0", b"Found", b"mobile", b"iOS Device"),  # line 2
        identity_row(2, b"-5.0", b"Found", b"desktop", b"Windows\xe9") + b",extra",  # line 3: 42 fields, latin-1
        identity_row(3, b"-5.0", b"Found", b"desktop", b"MacOS"),  # line 4
        b"4,-5.0,short\xff",  # line 5: 3 fields, not UTF-8
        b"5,1.0,short",  # line 6: 3 fields, UTF-8
        identity_row(6, b"-5.0", b"Found", b"desktop", b"Linux"),  # line 7
    ]
    path = write(tmp_path, rows)
    state = S.KeyState(valid={"train_transaction": {1, 2, 3, 4, 5, 6}})
    res = curate.curate_file(IDENTITY, str(path), str(tmp_path / "out"), state, max_bad_fraction=0.6)

    assert (res.rows_in, res.rows_valid, res.rows_quarantined) == (6, 3, 3)
    assert res.reasons == {"row: not valid UTF-8": 2, "row: wrong number of fields (expected 41)": 1}
    q = pcsv.read_csv(
        res.quarantine_path,
        convert_options=pcsv.ConvertOptions(column_types={"_raw": pa.string()}, strings_can_be_null=True),
    )
    assert q["_line"].to_pylist() == [3, 5, 6]
    assert q["_reason"].to_pylist() == ["row: not valid UTF-8", "row: not valid UTF-8", "expected 41 fields, found 3"]
    assert q["_raw"].to_pylist()[1] == "4,-5.0,short\\xff"
    assert pq.read_table(res.parquet_path)["TransactionID"].to_pylist() == [1, 3, 6]
    assert "Traceback" not in capfd.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["curated", "quarantine"]  # no copy left
