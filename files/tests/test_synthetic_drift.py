"""Tests of the generator's drifted batch (``fraud-demo-generate --drift``), at small scale.

Expected values come from the documented shift (SYNTHETIC.md, "The drifted batch"), worked out by hand here, and
from a second AUC method (scikit-learn) on hand-written one-feature scores; never from the generator's own tables.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import curate, synthetic_world
from fraud_demo_jobs import ieee_schema as S
from fraud_demo_jobs import synthetic as syn

# isort: on
from sklearn.metrics import roc_auc_score

ROWS = 5000
DAY = 86400
# Real IEEE-CIS e-mail domains outside the normal batch's top 30 (SYNTHETIC.md): two risky, two safe.
NEW_RISKY = {"gmx.de", "web.de"}
NEW_SAFE = {"yahoo.co.jp", "hotmail.co.uk"}
NEW_DOMAINS = NEW_RISKY | NEW_SAFE


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    out = {}
    for name, drift in (("normal", False), ("drifted", True)):
        d = tmp_path_factory.mktemp(name)
        summary = syn.generate(str(d), rows=ROWS, seed=42, drift=drift)
        frames = {f: pd.read_csv(d / f) for f in ("train_transaction.csv", "test_transaction.csv")}
        out[name] = (d, summary, frames)
    return out


def test_drifted_batch_comes_after_the_normal_batch(batches):
    _, _, normal = batches["normal"]
    _, _, drifted = batches["drifted"]
    tr, te = drifted["train_transaction.csv"], drifted["test_transaction.csv"]
    n_te = normal["test_transaction.csv"]
    # Hand-computed for 5000 rows: normal test = round(5000 * 506691 / 590540) = 4290 rows from 3663549; the
    # drifted train starts after them and the 86009 IDs of a 30-day gap (3663549 + 4290 + 86009), its test after
    # its own 5000 train rows and another gap (3753848 + 4999 + 86010).
    assert n_te["TransactionID"].max() == 3663549 + 4290 - 1
    assert (tr["TransactionID"].to_numpy() == np.arange(3753848, 3753848 + ROWS)).all()
    assert (te["TransactionID"].to_numpy() == np.arange(3844857, 3844857 + 4290)).all()
    # Time: the drifted train starts 425 days after the normal one (182 train + 30 gap + 183 test + 30 gap).
    assert tr["TransactionDT"].iloc[0] == 86400 + 425 * DAY
    assert 25 <= (tr["TransactionDT"].min() - n_te["TransactionDT"].max()) / DAY <= 35
    assert 170 <= (tr["TransactionDT"].max() - tr["TransactionDT"].min()) / DAY <= 190
    assert 25 <= (te["TransactionDT"].min() - tr["TransactionDT"].max()) / DAY <= 35
    assert tr["TransactionDT"].is_monotonic_increasing and te["TransactionDT"].is_monotonic_increasing


def test_amounts_are_shifted_up(batches):
    normal = batches["normal"][2]["train_transaction.csv"]["TransactionAmt"]
    drifted = batches["drifted"][2]["train_transaction.csv"]["TransactionAmt"]
    # ln(amount) + 0.4, plus the normal timeline's +8 % inflation frozen at its end: the normal train rows sit at
    # t = 0..182/395 (mean 0.23), so the medians differ by about exp(0.4 + 0.08 * (1 - 0.23)) = 1.59.
    expected = math.exp(0.4 + 0.08 * (1 - 0.23))
    ratio = drifted.median() / normal.median()
    assert expected * 0.92 <= ratio <= expected * 1.08, ratio
    assert drifted.quantile(0.9) / normal.quantile(0.9) > 1.3


def test_new_email_domains_only_in_the_drifted_batch(batches):
    for name in ("normal", "drifted"):
        frames = batches[name][2]
        seen = set()
        for frame in frames.values():
            for col in ("P_emaildomain", "R_emaildomain"):
                seen |= set(frame[col].dropna())
        if name == "normal":
            assert not seen & NEW_DOMAINS
        else:
            assert NEW_DOMAINS <= seen
            tr = frames["train_transaction.csv"]
            p = tr["P_emaildomain"].dropna()
            # 20 % of the clients (with a purchaser domain) use a new one; rows follow clients, with heavy ones
            assert 0.08 <= p.isin(NEW_DOMAINS).mean() <= 0.35
            assert tr["R_emaildomain"].dropna().isin(NEW_DOMAINS).any()


def test_the_new_fraud_pattern(batches):
    """Evening ring: hours 17..22 carry the risk, the old quiet-hours signal (5..10) is gone; the new risky
    domains defraud far more often than the new safe ones. Checked on 20000 rows of labels (world only)."""
    rows = 20000
    stats = {}
    for drift in (False, True):
        w = synthetic_world.build_world(rows, 42, drift)
        y = w.cols["y"][:rows]
        hour = w.cols["hour"][:rows]
        night, evening = (hour >= 5) & (hour <= 10), (hour >= 17) & (hour <= 22)
        stats[drift] = {
            "night_auc": roc_auc_score(y, night.astype(float)),
            "evening_auc": roc_auc_score(y, evening.astype(float)),
            "night_rate": y[night].mean(),
            "evening_rate": y[evening].mean(),
        }
        if drift:
            domain = np.array([*w.batch.email_names, None], dtype=object)[w.cols["pmail"][:rows]]
            risky, safe = np.isin(domain, list(NEW_RISKY)), np.isin(domain, list(NEW_SAFE))
            # documented effects: 1.5 * (2.2 or 1.6) vs 1.5 * (-0.6 or -0.4): several times the fraud rate
            assert y[risky].mean() > 3 * y[safe].mean()
            assert y[risky].mean() > 2 * y.mean()
    assert stats[False]["night_rate"] > 1.3 * stats[False]["evening_rate"]  # the normal batch: night is risky
    assert stats[True]["evening_rate"] > 1.5 * stats[True]["night_rate"]  # the drifted batch: evening is
    assert stats[False]["night_auc"] > 0.5 > stats[True]["night_auc"]  # the old signal now points the wrong way
    assert stats[True]["evening_auc"] > 0.55 > stats[False]["evening_auc"]


def test_oracle_and_fraud_rate_of_the_drifted_batch(batches):
    _, summary, frames = batches["drifted"]
    assert summary["drift"] is True and batches["normal"][1]["drift"] is False
    assert 0.90 <= summary["oracle_auc"] <= 0.98  # the same planted strength, other terms
    assert 0.025 <= frames["train_transaction.csv"]["isFraud"].mean() <= 0.045  # b0 solved for 3.5 % again


def test_the_drifted_files_pass_the_ingest_contract(batches, tmp_path):
    d = batches["drifted"][0]
    state = S.KeyState()
    for table in ("train_transaction", "train_identity"):
        spec = S.BY_NAME[table]
        result = curate.curate_file(spec, str(d / spec.file), str(tmp_path), state)
        assert result.rows_quarantined == 0, result.reasons
        assert result.rows_valid == result.rows_in > 0


def test_sidecar_records_the_flag_and_switching_regenerates(tmp_path):
    out = tmp_path / "d"
    first = syn.generate(str(out), rows=1000, seed=1)
    assert json.loads((out / syn.SIDECAR).read_text())["drift"] is False
    normal_bytes = (out / "train_transaction.csv").read_bytes()
    drifted = syn.generate(str(out), rows=1000, seed=1, drift=True)
    assert drifted["changed"] is True and drifted["drift"] is True
    assert json.loads((out / syn.SIDECAR).read_text())["drift"] is True
    assert (out / "train_transaction.csv").read_bytes() != normal_bytes
    assert syn.generate(str(out), rows=1000, seed=1, drift=True)["changed"] is False
    back = syn.generate(str(out), rows=1000, seed=1)
    assert back["changed"] is True and back["files"] == first["files"]
    assert (out / "train_transaction.csv").read_bytes() == normal_bytes  # deterministic both ways


def test_sidecar_from_before_the_flag_means_a_normal_batch(tmp_path):
    out = tmp_path / "d"
    syn.generate(str(out), rows=1000, seed=1)
    side = json.loads((out / syn.SIDECAR).read_text())
    del side["drift"]
    (out / syn.SIDECAR).write_text(json.dumps(side))
    assert syn.generate(str(out), rows=1000, seed=1)["changed"] is False
    assert syn.generate(str(out), rows=1000, seed=1, drift=True)["changed"] is True


def test_cli_flag_and_env(tmp_path):
    def run(*args, env=None):
        res = subprocess.run(
            [sys.executable, "-m", "fraud_demo_jobs.synthetic", "--rows", "1000", "--seed", "3", *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    assert run("--out", str(tmp_path / "a"), "--drift")["drift"] is True
    assert run("--out", str(tmp_path / "b"), env={"FRAUD_DEMO_SYNTHETIC_DRIFT": "1"})["drift"] is True
    assert run("--out", str(tmp_path / "c"), env={"FRAUD_DEMO_SYNTHETIC_DRIFT": ""})["drift"] is False
    assert (
        "--drift"
        in subprocess.run(
            [sys.executable, "-m", "fraud_demo_jobs.synthetic", "--help"], capture_output=True, text=True, check=True
        ).stdout
    )
