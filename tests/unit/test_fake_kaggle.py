"""The fake Kaggle API's competition zip has the shape of the real ieee-fraud-detection.zip.

Expected values are public facts about the real files (/work/shared/docs/ieee-cis-dataset.md, Kaggle's data
page), not read back from the generator that makes the fake's files.
"""

import csv
import io
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import fake_kaggle as fk

ROWS = 1000
# Rows of the real files: train_transaction 590,540; train_identity 144,233; test_transaction 506,691; ...
REAL = {"train_identity": 144_233 / 590_540, "test_transaction": 506_691 / 590_540, "test_identity": 141_907 / 590_540}
TX = ["TransactionID", "isFraud", "TransactionDT", "TransactionAmt", "ProductCD"]
TX += [f"card{i}" for i in range(1, 7)] + ["addr1", "addr2", "dist1", "dist2", "P_emaildomain", "R_emaildomain"]
TX += [f"C{i}" for i in range(1, 15)] + [f"D{i}" for i in range(1, 16)] + [f"M{i}" for i in range(1, 10)]
TX += [f"V{i}" for i in range(1, 340)]


@pytest.fixture(scope="module")
def tables():
    path = fk.ieee_competition_zip(rows=ROWS)
    with zipfile.ZipFile(path) as z:
        assert {(i.filename, i.compress_type) for i in z.infolist()} == {
            (name, zipfile.ZIP_DEFLATED) for name in fk.IEEE_FILES
        }
        return {
            name.removesuffix(".csv"): list(csv.reader(io.StringIO(z.read(name).decode("utf-8"))))
            for name in fk.IEEE_FILES
        }


def test_columns_are_the_real_ones(tables):
    assert tables["train_transaction"][0] == TX  # 394 columns
    assert tables["test_transaction"][0] == [c for c in TX if c != "isFraud"]
    ids = [f"{i:02d}" for i in range(1, 39)]
    assert tables["train_identity"][0] == ["TransactionID", *(f"id_{i}" for i in ids), "DeviceType", "DeviceInfo"]
    assert tables["test_identity"][0] == ["TransactionID", *(f"id-{i}" for i in ids), "DeviceType", "DeviceInfo"]
    assert tables["sample_submission"][0] == ["TransactionID", "isFraud"]
    for name, rows in tables.items():
        assert {len(r) for r in rows} == {len(rows[0])}, name


def test_rows_keys_and_proportions(tables):
    def ids(name):
        return [int(r[0]) for r in tables[name][1:]]

    train, test = ids("train_transaction"), ids("test_transaction")
    assert train == list(range(2_987_000, 2_987_000 + ROWS))
    assert min(test) > max(train)
    assert ids("sample_submission") == test
    assert {r[1] for r in tables["sample_submission"][1:]} == {"0.5"}
    assert set(ids("train_identity")) <= set(train) and set(ids("test_identity")) <= set(test)
    for name, share in REAL.items():
        assert len(tables[name]) - 1 == pytest.approx(share * ROWS, rel=0.1), name


def test_the_zip_is_cached(tmp_path):
    first = fk.ieee_competition_zip(rows=ROWS, cache_dir=tmp_path)
    mtime = first.stat().st_mtime_ns
    assert fk.ieee_competition_zip(rows=ROWS, cache_dir=tmp_path) == first
    assert first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
