"""``fraud-demo-generate --scale K``: K times the rows over K times the months, at small --rows.

Expected values are worked out by hand from the documented sizes (590,540 train / 506,691 test / 144,233 and 141,907
identity rows at 1x, 182 train days, a 30-day gap, 183 test days, TransactionDT from 86400, IDs from 2987000 and
3663549), not with the generator's own helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import features as F
from fraud_demo_jobs import synthetic as syn
from fraud_demo_jobs import synthetic_world

# isort: on

DAY = 86400


def _rows(summary: dict) -> dict:
    return {f["name"]: f["rows"] for f in summary["files"]}


@pytest.fixture(scope="module")
def doubled(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale2")
    summary = syn.generate(str(out), rows=2000, seed=42, scale=2)
    tx = {
        part: pd.read_csv(out / f"{part}_transaction.csv", usecols=["TransactionID", "TransactionDT"])
        for part in ("train", "test")
    }
    return out, summary, tx


def test_twice_the_rows(doubled):
    _, summary, _ = doubled
    # 4000 train rows; test 4000 * 506691 / 590540 = 3432.05; identity 4000 * 144233 / 590540 = 976.96 and
    # 3432 * 141907 / 506691 = 961.19
    assert _rows(summary) == {
        "train_transaction.csv": 4000,
        "train_identity.csv": 977,
        "test_transaction.csv": 3432,
        "test_identity.csv": 961,
        "sample_submission.csv": 3432,
    }
    assert summary["rows"] == 2000 and summary["scale"] == 2


def test_twice_the_months(doubled):
    _, _, tx = doubled
    train, test = tx["train"]["TransactionDT"], tx["test"]["TransactionDT"]
    # train: 2 x 182 = 364 days from 86400; test: 2 x 183 = 366 days from 86400 + (364 + 30) days + 24 s
    assert train.iloc[0] == 86400 and train.max() < 86400 + 364 * DAY
    assert train.max() > 86400 + 360 * DAY  # the last days are filled too (about 11 rows a day)
    assert test.min() >= 86400 + 394 * DAY + 24 and test.max() < 86400 + (394 + 366) * DAY + 24
    assert test.max() > 86400 + (394 + 362) * DAY
    # rows per day as at 1x: 2000 / 182 = 10.99 a day; 4000 / 364 the same
    per_month = train.groupby((train - 86400) // (30 * DAY)).size()
    assert len(per_month) == 13 and per_month.iloc[:12].between(250, 420).all()


def test_ids_stay_consecutive(doubled):
    _, _, tx = doubled
    assert tx["train"]["TransactionID"].tolist() == list(range(2987000, 2987000 + 4000))
    assert tx["test"]["TransactionID"].tolist() == list(range(3663549, 3663549 + 3432))


def test_half_scale(tmp_path):
    summary = syn.generate(str(tmp_path), rows=2000, seed=42, scale=0.5)
    # 1000 train rows over 91 days; test 1000 * 506691 / 590540 = 858.0 rows over round(91.5) = 92 days
    assert _rows(summary)["train_transaction.csv"] == 1000 and _rows(summary)["test_transaction.csv"] == 858
    train = pd.read_csv(tmp_path / "train_transaction.csv", usecols=["TransactionDT"])["TransactionDT"]
    test = pd.read_csv(tmp_path / "test_transaction.csv", usecols=["TransactionDT"])["TransactionDT"]
    assert train.iloc[0] == 86400 and 86400 + 85 * DAY < train.max() < 86400 + 91 * DAY
    assert test.min() >= 86400 + 121 * DAY + 24 and test.max() < 86400 + (121 + 92) * DAY + 24


def test_the_train_jobs_split_holds_out_the_last_30_days(doubled):
    _, _, tx = doubled
    dt = tx["train"]["TransactionDT"].to_numpy()
    edges = F.SplitSpec().edges(int(dt.max()))
    holdout = dt[dt > edges["holdout_start"]]
    # the last 30 of 364 days: about 30 / 364 of 4000 rows = 330
    assert 250 < len(holdout) < 420
    assert (dt.max() - holdout.min()) / DAY < 30 and dt[dt <= edges["train_end"]].size > 3000


def test_sizes_and_ids_at_full_scale():
    # 4x the documented counts
    assert synthetic_world.Sizes.for_rows(590540, 4) == synthetic_world.Sizes(2362160, 2026764, 576932, 567628)
    # 2x full scale: 1,181,080 train IDs reach past 3663549, so test starts after them and the 86009 IDs of the gap
    # (3663549 - 2987000 - 590540): 2987000 + 1181080 + 86009 = 4254089
    assert synthetic_world._id_starts(1181080, 1013382, False) == (2987000, 4254089)
    timeline = synthetic_world.Timeline.for_scale(4)
    assert (timeline.train_days, timeline.test_days, timeline.days, timeline.extra_days) == (728, 732, 1490, 1095)


def test_scale_one_is_todays_output(tmp_path):
    # the golden sha256 of (2000 rows, seed 42) in test_synthetic.py, with --scale 1 given explicitly
    syn.generate(str(tmp_path), rows=2000, seed=42, scale=1.0)
    sha = hashlib.sha256((tmp_path / "train_transaction.csv").read_bytes()).hexdigest()
    assert sha == "f1de0ed4aa65a56d499a152d0bb292d8bd9359163178e7ca276432033d20a557"
    assert json.loads((tmp_path / syn.SIDECAR).read_text())["scale"] == 1


def test_drifted_batch_follows_the_longer_timeline(tmp_path):
    syn.generate(str(tmp_path), rows=1000, seed=42, scale=2, drift=True)
    train = pd.read_csv(tmp_path / "train_transaction.csv", usecols=["TransactionDT"])["TransactionDT"]
    # a month after the normal batch's 2x test period: 86400 + (364 + 30 + 366 + 30) days
    assert train.iloc[0] == 86400 + 790 * DAY


def test_scale_is_part_of_the_settings(tmp_path):
    out = tmp_path / "d"
    assert syn.generate(str(out), rows=1000, seed=1)["changed"] is True
    side = out / syn.SIDECAR
    meta = json.loads(side.read_text())
    del meta["scale"]  # a sidecar from before --scale describes 1x
    side.write_text(json.dumps(meta))
    assert syn.generate(str(out), rows=1000, seed=1, scale=1)["changed"] is False
    assert syn.generate(str(out), rows=1000, seed=1, scale=1.5)["changed"] is True
    assert syn.generate(str(out), rows=1000, seed=1, scale=1.5)["changed"] is False


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fraud_demo_jobs.synthetic", *args], capture_output=True, text=True, check=False
    )


def test_cli_scale_from_the_environment(tmp_path):
    env_res = subprocess.run(
        [sys.executable, "-m", "fraud_demo_jobs.synthetic", "--out", str(tmp_path), "--rows", "1000"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "FRAUD_DEMO_SYNTHETIC_SCALE": "1.5"},
    )
    summary = json.loads(env_res.stdout.splitlines()[-1])
    assert summary["scale"] == 1.5 and _rows(summary)["train_transaction.csv"] == 1500
