"""Offline generator of an IEEE-CIS-shaped fraud dataset (``fraud-demo-generate``).

Writes the five CSV files of Kaggle's ``ieee-fraud-detection.zip`` (train/test transaction and identity tables and
``sample_submission.csv``) with the documented columns, column order, pandas dtypes, categorical domains, ID and
time ranges and realistic missingness, so that every later stage of the pipeline can run without a Kaggle
account.  The values are synthetic; the fraud label follows a planted, documented model whose true
probabilities are known, so the best achievable ROC AUC (the *oracle AUC*) is known too.

Planted fraud signal
--------------------
Every transaction belongs to a latent *client*: a card (``card1`` and the BIN-like ``card2``..``card6`` that
``card1`` determines), a billing address (``addr1``/``addr2``), a purchaser e-mail domain, a device profile and a
card start day ``a``.  ``D1`` is ``day - a`` (``day = TransactionDT // 86400``), so the winners' client key
``uid = card1 + addr1 + (day - D1)`` recovers the client, as in the real data.

A few clients are *compromised* (light clients more often than heavy ones) from one of their transactions onward
(the host's label logic: once a card is charged back, its later linked transactions are fraud); about 3 % of all
rows are "active" (compromised client, at/after the compromise).  The true log-odds of fraud of a transaction is::

    logit = b0 + 5.0 * active                                  # latent, not a column
          + 1.5 * ( product[ProductCD]                         # W 0, C 1.4, R 0.5, H 0.2 (+drift), S 0.9
                  + 0.6 * [card6 == credit] + email[P_emaildomain]   # e.g. protonmail.com 2.8, mail.com 1.6
                  + 0.8 * [R_emaildomain present and != P_emaildomain]
                  + 0.4 * (ln TransactionAmt - 4.3) + 0.5 * [amount with 3 decimals (foreign currency)]
                  + 0.7 * [hour of TransactionDT in 5..10]     # the quiet (night-time) hours
                  + 0.5 * [D1 == 0] + 0.3 * ln(C1) + 0.4 * [M4 == M2]
                  + device[identity device profile]            # e.g. Linux 1.2, Android 0.5..1.0, IE -0.6
                  + 1.2 * [id_23 proxy present]
                  + drift(t) )

``b0`` is solved so that the mean probability over the train rows is 3.5 %; ``isFraud ~ Bernoulli(sigmoid(logit))``.
The compromised state itself is not a column, but it leaves observable traces, mostly visible through client
aggregates: higher amounts, more R/P e-mail mismatches, higher ``C1``/``C2``/``C13``/``C14`` counts, larger
``dist1``, ``M4 == M2``/``M6 == F`` more often, proxies/new devices in identity (``id_23``, ``id_15 == New``),
lower ``id_01`` and shifted ``V45, V70, V87, V91, V257, V258, V294`` counts.  The constants are the module's
``PRODUCT_EFFECT``, ``EMAILS``, ``DEVICES``, ``HOUR_EFFECT``, ``ACTIVE_EFFECT`` and ``FEATURE_SCALE``.

Temporal drift: ``drift(t) = 1.0 * (1 - t) * [ProductCD == H] + 1.2 * t * [P_emaildomain in {outlook.com,
mail.com, hotmail.com}]`` with ``t`` in 0..1 along the whole train + gap + test timeline; amounts inflate slightly
(+8 % over the timeline); ``V138``..``V166`` and ``V322``..``V339`` are only filled in the first two months.
Everything else is stationary, so time-based validation (train on earlier months) works and is a little harder
than a random split.

Oracle AUC: the AUC of the true probability against the drawn train labels (``oracle_auc``), plus the same on the
time-ordered last 20 % of train (``oracle_auc_last20pct``).  No model can beat it in expectation; since the
compromised state is latent, a good model should come close (within a few points) but stay below it.
See ``SYNTHETIC.md`` next to this file.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

GENERATOR_VERSION = "1"
JOB = "generate"
SIDECAR = ".fraud-demo-synthetic.json"

FULL_TRAIN_ROWS = 590540
FULL_TEST_ROWS = 506691
FULL_TRAIN_IDENTITY = 144233
FULL_TEST_IDENTITY = 141907
MIN_ROWS = 1000
MAX_ROWS = 20_000_000
TRAIN_ID_START = 2987000
TEST_ID_START = 3663549
TRAIN_DT_START = 86400
DAY = 86400
TRAIN_DAYS = 182
GAP_DAYS = 30
TEST_DAYS = 183
FRAUD_RATE = 0.035
CHUNK_ROWS = 32768

FILE_NAMES = (
    "train_transaction.csv",
    "train_identity.csv",
    "test_transaction.csv",
    "test_identity.csv",
    "sample_submission.csv",
)

# ----------------------------------------------------------------------------------------------------- schema

TRANSACTION_COLUMNS = (
    ["TransactionID", "isFraud", "TransactionDT", "TransactionAmt", "ProductCD"]
    + [f"card{i}" for i in range(1, 7)]
    + ["addr1", "addr2", "dist1", "dist2", "P_emaildomain", "R_emaildomain"]
    + [f"C{i}" for i in range(1, 15)]
    + [f"D{i}" for i in range(1, 16)]
    + [f"M{i}" for i in range(1, 10)]
    + [f"V{i}" for i in range(1, 340)]
)
TEST_TRANSACTION_COLUMNS = [c for c in TRANSACTION_COLUMNS if c != "isFraud"]
IDENTITY_COLUMNS = ["TransactionID"] + [f"id_{i:02d}" for i in range(1, 39)] + ["DeviceType", "DeviceInfo"]
TEST_IDENTITY_COLUMNS = [c.replace("id_", "id-") for c in IDENTITY_COLUMNS]
SUBMISSION_COLUMNS = ["TransactionID", "isFraud"]

INT_COLUMNS = {"TransactionID", "isFraud", "TransactionDT", "card1"}
NUMERIC_ID = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 17, 18, 19, 20, 21, 22, 24, 25, 26, 32}
STRING_TRANSACTION_COLUMNS = {"ProductCD", "card4", "card6", "P_emaildomain", "R_emaildomain"} | {
    f"M{i}" for i in range(1, 10)
}
STRING_IDENTITY_COLUMNS = {f"id_{i:02d}" for i in range(1, 39) if i not in NUMERIC_ID} | {"DeviceType", "DeviceInfo"}

PRODUCTS = ["W", "C", "R", "H", "S"]
PRODUCT_SHARE_TRAIN = [0.7345, 0.1200, 0.0640, 0.0590, 0.0225]
PRODUCT_SHARE_TEST = [0.6950, 0.1370, 0.0740, 0.0680, 0.0260]
PRODUCT_EFFECT = np.array([0.0, 1.4, 0.5, 0.2, 0.9])
H_DRIFT = 1.0  # product H: +1.0 at the start of the timeline, fading to 0 at its end

CARD4 = ["visa", "mastercard", "american express", "discover"]
CARD6 = ["debit", "credit", "debit or credit", "charge card"]
# (domain, share among non-missing, log-odds effect)
EMAILS = [
    ("gmail.com", 0.460, 0.25),
    ("yahoo.com", 0.203, -0.35),
    ("hotmail.com", 0.092, 0.15),
    ("anonymous.com", 0.075, -0.2),
    ("aol.com", 0.057, -0.4),
    ("comcast.net", 0.016, -0.1),
    ("icloud.com", 0.013, 0.1),
    ("outlook.com", 0.010, 0.6),
    ("msn.com", 0.0085, -0.3),
    ("att.net", 0.0083, -0.3),
    ("live.com", 0.0062, 0.1),
    ("sbcglobal.net", 0.0060, -0.3),
    ("verizon.net", 0.0054, -0.3),
    ("ymail.com", 0.0048, -0.1),
    ("bellsouth.net", 0.0038, -0.3),
    ("yahoo.com.mx", 0.0031, -0.3),
    ("me.com", 0.0031, -0.3),
    ("cox.net", 0.0029, -0.2),
    ("optonline.net", 0.0020, -0.4),
    ("charter.net", 0.0016, 0.0),
    ("live.com.mx", 0.0012, -0.2),
    ("rocketmail.com", 0.0013, -0.2),
    ("mail.com", 0.0012, 1.6),
    ("earthlink.net", 0.0011, 0.0),
    ("gmail", 0.0010, -0.4),
    ("outlook.es", 0.0009, 1.2),
    ("mac.com", 0.0009, -0.6),
    ("hotmail.es", 0.0006, 0.6),
    ("aim.com", 0.0004, 1.0),
    ("protonmail.com", 0.0002, 2.8),
]
EMAIL_NAMES = [e[0] for e in EMAILS]
EMAIL_EFFECT = np.array([e[2] for e in EMAILS] + [0.3])  # last entry: missing P_emaildomain
DRIFT_EMAILS = [EMAIL_NAMES.index(d) for d in ("outlook.com", "mail.com", "hotmail.com")]
EMAIL_DRIFT = 1.2  # +0 at the start of the timeline, +1.2 at its end

# Device profiles: DeviceType, DeviceInfo, id_30 (OS), id_31 (browser), id_32, id_33, weight, log-odds effect
DEVICES = [
    ("desktop", "Windows", "Windows 10", "chrome 63.0", 24, "1920x1080", 0.20, 0.0),
    ("desktop", "Windows", "Windows 7", "chrome 62.0", 24, "1366x768", 0.10, -0.1),
    ("desktop", "Trident/7.0", "Windows 7", "ie 11.0 for desktop", 24, "1366x768", 0.07, -0.6),
    ("desktop", "rv:11.0", "Windows 10", "firefox 57.0", 24, "1920x1080", 0.03, 0.2),
    ("desktop", "MacOS", "Mac OS X 10_12_6", "safari generic", 24, "2560x1600", 0.06, -0.5),
    ("desktop", "MacOS", "Mac OS X 10_13_1", "chrome 63.0", 24, "1440x900", 0.04, -0.2),
    ("desktop", "Windows", "Windows 8.1", "edge 16.0", 24, "1600x900", 0.04, -0.1),
    ("desktop", "Linux", "Linux", "chrome 63.0", 24, "1920x1080", 0.01, 1.2),
    ("mobile", "iOS Device", "iOS 11.2.1", "mobile safari 11.0", 32, "2208x1242", 0.15, 0.3),
    ("mobile", "iOS Device", "iOS 11.1.2", "mobile safari generic", 32, "1334x750", 0.08, 0.3),
    ("mobile", "SM-G930V Build/NRD90M", "Android 7.0", "chrome 63.0 for android", 32, "1920x1080", 0.03, 0.6),
    ("mobile", "SM-J700M Build/MMB29K", "Android 6.0.1", "samsung browser 6.2", 32, "1280x720", 0.03, 0.9),
    ("mobile", "SAMSUNG", "Android 7.0", "chrome 63.0 for android", 32, "2560x1440", 0.03, 0.5),
    ("mobile", "Moto G (4) Build/NPJ25.93-14.7", "Android 7.0", "chrome 63.0 for android", 32, "1920x1080", 0.02, 0.6),
    ("mobile", "LG-H872 Build/NRD90U", "Android 7.0", "chrome 62.0 for android", 32, "2880x1440", 0.02, 0.5),
    (
        "mobile",
        "HUAWEI VNS-L31 Build/HUAWEIVNS-L31",
        "Android 7.0",
        "chrome 63.0 for android",
        32,
        "1920x1080",
        0.01,
        1.0,
    ),
    ("mobile", "SM-G950U Build/NRD90M", "Android 7.0", "samsung browser 6.2", 32, "2220x1080", 0.02, 0.6),
    ("desktop", "Windows", "Windows 10", "edge 15.0", 24, "1280x1024", 0.03, 0.0),
    ("desktop", "MacOS", "Mac OS X 10_11_6", "firefox 57.0", 24, "1280x800", 0.02, 0.1),
]
DEVICE_EFFECT = np.array([d[7] for d in DEVICES])
PROXIES = ["IP_PROXY:TRANSPARENT", "IP_PROXY:ANONYMOUS", "IP_PROXY:HIDDEN"]
MATCH = ["match_status:2", "match_status:1", "match_status:0", "match_status:-1"]

# log-odds effect of the hour of day (hour of TransactionDT; the quiet hours 5-10 are night in the US)
HOUR_VOLUME = np.array([90, 80, 70, 55, 40, 26, 16, 10, 8, 9, 14, 25, 40, 55, 65, 72, 78, 84, 90, 95, 97, 98, 97, 94])
HOUR_EFFECT = np.where((np.arange(24) >= 5) & (np.arange(24) <= 10), 0.7, 0.0)

ACTIVE_EFFECT = 5.0
FEATURE_SCALE = 1.5  # multiplies all observable terms of the logit
ACTIVE_SHARE = 0.03  # share of all rows that belong to a compromised client at/after its compromise

# V blocks: (first, last, missing probability per ProductCD W,C,R,H,S, rule, kind)
# rule "early": only filled in the first 60 days; rule "identity": only on rows with an identity row.
V_BLOCKS = [
    (1, 11, (0.28, 1.0, 1.0, 1.0, 1.0), "", "count"),
    (12, 34, (0.03, 0.45, 0.45, 0.45, 0.45), "", "count"),
    (35, 52, (0.15, 0.6, 0.5, 0.5, 0.5), "", "count"),
    (53, 74, (0.04, 0.40, 0.40, 0.40, 0.40), "", "count"),
    (75, 94, (0.06, 0.40, 0.40, 0.40, 0.40), "", "count"),
    (95, 125, (0.0005,) * 5, "", "count"),
    (126, 137, (0.0005,) * 5, "", "amount"),
    (138, 166, (1.0, 0.3, 0.3, 0.3, 0.3), "early", "count"),
    (167, 201, (1.0, 0.1, 0.1, 0.1, 0.1), "identity", "count"),
    (202, 216, (1.0, 0.1, 0.1, 0.1, 0.1), "identity", "amount"),
    (217, 262, (1.0, 0.15, 0.15, 0.15, 0.15), "identity", "count"),
    (263, 278, (1.0, 0.15, 0.15, 0.15, 0.15), "identity", "amount"),
    (279, 305, (0.00002,) * 5, "", "count"),
    (306, 321, (0.00002,) * 5, "", "amount"),
    (322, 330, (1.0, 0.3, 0.3, 0.3, 0.3), "early", "count"),
    (331, 339, (1.0, 0.3, 0.3, 0.3, 0.3), "early", "amount"),
]
V_BINARY = {1, 14, 41, 65, 88, 107, 305}  # always 1 when present, like V1 in the real data
V_SIGNAL = {45: 1.5, 70: 1.0, 87: 1.2, 91: 1.0, 257: 2.0, 258: 2.5, 294: 2.0}  # extra count when compromised

# --------------------------------------------------------------------------------------------- formatting


@functools.cache
def _table(lo: int, hi: int, suffix: str) -> pa.Array:
    """Strings ``f"{k}{suffix}"`` for k in lo..hi (the CSV text of an integer or integer-valued float)."""
    return pa.array([f"{k}{suffix}" for k in range(lo, hi + 1)], type=pa.string())


@functools.cache
def _frac_table(decimals: int) -> pa.Array:
    scale = 10**decimals
    return pa.array(
        [".0" if f == 0 else ("." + str(f).rjust(decimals, "0")).rstrip("0") for f in range(scale)], type=pa.string()
    )


@functools.cache
def _labels(values: tuple) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _indices(idx: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    idx = np.ascontiguousarray(idx, dtype=np.int32)
    if valid is None or valid.all():
        return pa.array(idx)
    bits = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(pa.int32(), len(idx), [pa.py_buffer(bits), pa.py_buffer(idx)])


def _enc_labels(idx: np.ndarray, valid: np.ndarray | None, labels: tuple) -> pa.Array:
    return pa.DictionaryArray.from_arrays(_indices(idx, valid), _labels(labels))


def _enc_int(values: np.ndarray, valid: np.ndarray | None, lo: int, hi: int, suffix: str = ".0") -> pa.Array:
    """Integer-valued column as CSV text: ``"12.0"`` (float columns) or ``"12"`` (int columns, suffix="")."""
    idx = np.clip(values, lo, hi).astype(np.int32) - lo
    return pa.DictionaryArray.from_arrays(_indices(idx, valid), _table(lo, hi, suffix))


def _enc_bigint(values: np.ndarray, valid: np.ndarray | None = None, suffix: str = "") -> pa.Array:
    """Integers of any range (IDs, TransactionDT): pyarrow's cast, optionally with a ``.0`` suffix."""
    arr = pc.cast(_as_arrow_int64(values, valid), pa.string())
    return pc.binary_join_element_wise(arr, suffix, "") if suffix else arr


def _as_arrow_int64(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int64)
    if valid is None or valid.all():
        return pa.array(values)
    bits = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(pa.int64(), len(values), [pa.py_buffer(bits), pa.py_buffer(values)])


def _enc_decimal(units: np.ndarray, valid: np.ndarray | None, decimals: int = 3) -> pa.Array:
    """Non-negative fixed-point numbers given in 10**-decimals units, e.g. 68500 -> "68.5", 29000 -> "29.0"."""
    scale = 10**decimals
    units = np.asarray(units, dtype=np.int64)
    whole = _as_arrow_int64(units // scale, valid)
    frac = pa.DictionaryArray.from_arrays(pa.array((units % scale).astype(np.int32)), _frac_table(decimals))
    return pc.binary_join_element_wise(pc.cast(whole, pa.string()), frac.dictionary_decode(), "")


def _block(kind: str, arr2d: np.ndarray, valid2d: np.ndarray, lo: int = 0, hi: int = 0) -> list[pa.Array]:
    """Encode a (columns, rows) block in one call and slice it into zero-copy columns."""
    ncol, n = arr2d.shape
    flat, vflat = arr2d.reshape(-1), valid2d.reshape(-1)
    enc = _enc_int(flat, vflat, lo, hi) if kind == "count" else _enc_decimal(flat, vflat)
    return [enc.slice(i * n, n) for i in range(ncol)]


# ------------------------------------------------------------------------------------------------- random


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _cat(rng: np.random.Generator, probs, size) -> np.ndarray:
    """Categorical draw (indices into probs) via a cumulative table."""
    cdf = np.cumsum(np.asarray(probs, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1).astype(np.int16)


def _geom(rng: np.random.Generator, q: float, size, cap: int = 255) -> np.ndarray:
    """Geometric counts P(k) ~ (1-q) q^k, k >= 0, from one random byte each (fast, cap-limited)."""
    u = (np.arange(256) + 0.5) / 256.0
    table = np.minimum(np.floor(np.log1p(-u) / np.log(q)), cap).astype(np.int16)
    return table[rng.integers(0, 256, size=size, dtype=np.uint8)]


def _chance(rng: np.random.Generator, p, size) -> np.ndarray:
    return rng.random(size) < p


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC with ties handled by average ranks."""
    label = label.astype(bool)
    npos = int(label.sum())
    nneg = len(label) - npos
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s), dtype=np.float64)
    start = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    end = np.r_[start[1:], len(s)]
    avg = (start + end + 1) / 2.0
    ranks[order] = np.repeat(avg, end - start)
    return float((ranks[label].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------- the world


@dataclass
class Sizes:
    train: int
    test: int
    train_identity: int
    test_identity: int

    @classmethod
    def for_rows(cls, rows: int) -> Sizes:
        test = round(rows * FULL_TEST_ROWS / FULL_TRAIN_ROWS)
        return cls(
            rows,
            test,
            round(rows * FULL_TRAIN_IDENTITY / FULL_TRAIN_ROWS),
            round(test * FULL_TEST_IDENTITY / FULL_TEST_ROWS),
        )


@dataclass
class World:
    """Row-level columns for train+test (train rows first), computed once; the V block and most identity
    columns are drawn per chunk."""

    sizes: Sizes
    seed: int
    cols: dict = field(default_factory=dict)
    oracle_auc: float = float("nan")
    oracle_auc_last20pct: float = float("nan")
    fraud_rate: float = float("nan")
    identity_rows: dict = field(default_factory=dict)  # "train"/"test" -> global row indices with identity


def _times(rng: np.random.Generator, n: int, start: int, days: int) -> np.ndarray:
    day = np.floor(rng.random(n) * days).astype(np.int64)
    hour = _cat(rng, HOUR_VOLUME, n).astype(np.int64)
    dt = start + day * DAY + hour * 3600 + rng.integers(0, 3600, n)
    dt.sort()
    dt[0] = start
    return dt


def _exact_shares(rng: np.random.Generator, n: int, shares) -> np.ndarray:
    counts = np.floor(np.asarray(shares) * n).astype(np.int64)
    counts[0] += n - counts.sum()
    out = np.repeat(np.arange(len(shares), dtype=np.int16), counts)
    rng.shuffle(out)
    return out


def build_world(rows: int, seed: int) -> World:
    sz = Sizes.for_rows(rows)
    w = World(sz, seed)
    rng = _rng(seed, 0)
    ntr, nte = sz.train, sz.test
    n = ntr + nte
    c = w.cols

    train_last = TRAIN_ID_START + ntr - 1
    test_start = TEST_ID_START if train_last < TEST_ID_START else train_last + 86010
    c["tid"] = np.r_[np.arange(TRAIN_ID_START, TRAIN_ID_START + ntr), np.arange(test_start, test_start + nte)]
    test_dt0 = TRAIN_DT_START + (TRAIN_DAYS + GAP_DAYS) * DAY + 24
    dt = np.r_[_times(rng, ntr, TRAIN_DT_START, TRAIN_DAYS), _times(rng, nte, test_dt0, TEST_DAYS)]
    c["dt"] = dt
    day = dt // DAY
    hour = (dt // 3600) % 24
    tfrac = (dt - TRAIN_DT_START) / float((TRAIN_DAYS + GAP_DAYS + TEST_DAYS) * DAY)

    prod = np.r_[_exact_shares(rng, ntr, PRODUCT_SHARE_TRAIN), _exact_shares(rng, nte, PRODUCT_SHARE_TEST)]
    c["prod"] = prod
    nonw = prod != 0

    # ---- clients: card catalogue (card1 -> card2..card6), addresses, e-mail, device, card start day
    ncard = 13553
    card1_values = np.sort(rng.choice(np.arange(1000, 18397), size=ncard, replace=False))
    cat_card2 = rng.integers(100, 601, ncard)
    cat_card3 = np.where(_chance(rng, 0.88, ncard), 150, np.where(_chance(rng, 0.8, ncard), 185, 0))
    cat_card3 = np.where(cat_card3 == 0, rng.integers(100, 232, ncard), cat_card3)
    cat_card4 = _cat(rng, [0.652, 0.321, 0.016, 0.011], ncard)
    cat_card5 = np.where(_chance(rng, 0.5, ncard), 226, rng.integers(100, 238, ncard))
    cat_card6 = _cat(rng, [0.745, 0.2535, 0.001, 0.0005], ncard)

    nclient = max(200, int(n * 0.3))
    weight = rng.pareto(1.5, nclient) + 1.0
    client = np.searchsorted(np.cumsum(weight) / weight.sum(), rng.random(n), side="right")
    client = np.minimum(client, nclient - 1)
    cnt = np.bincount(client, minlength=nclient)

    card_idx = np.minimum(rng.zipf(1.25, nclient) - 1, ncard - 1)
    card_idx = (card_idx * 7919 + rng.integers(0, 4, nclient)) % ncard  # scatter popular cards over the range
    naddr = 332
    addr_values = np.sort(rng.choice(np.arange(100, 541), size=naddr, replace=False))
    addr_idx = np.minimum(rng.zipf(1.3, nclient) - 1, naddr - 1)
    addr_idx = (addr_idx * 97) % naddr
    addr2_c = np.where(_chance(rng, 0.99, nclient), 87, rng.integers(10, 103, nclient))
    email_c = _cat(rng, [e[1] * 0.84 for e in EMAILS] + [0.16], nclient)  # last = missing
    device_c = _cat(rng, [d[6] for d in DEVICES], nclient)
    devinfo_missing_c = _chance(rng, 0.18, nclient)
    activity_c = _geom(rng, 0.45, nclient, cap=40)

    # time order == row order (train then test, both sorted), so a stable sort by client orders each client's rows
    order = np.argsort(client, kind="stable")
    starts = np.r_[0, np.cumsum(cnt)[:-1]]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n) - starts[client[order]]
    first_day = np.full(nclient, 10**6, dtype=np.int64)
    np.minimum.at(first_day, client, day)
    prev_dt = np.empty(n, dtype=np.int64)
    srt = dt[order]
    prev_dt[order] = np.r_[srt[0], srt[:-1]]
    gap_days = np.where(pos > 0, (dt - prev_dt) // DAY, -1)

    card_age = np.where(_chance(rng, 0.30, nclient), 0, np.floor(rng.exponential(140, nclient)))
    a_c = first_day - card_age.astype(np.int64)
    b_c = a_c + np.floor(rng.exponential(60, nclient)).astype(np.int64)
    c_c = a_c + np.floor(rng.exponential(40, nclient)).astype(np.int64)
    e_c = a_c + np.floor(rng.exponential(30, nclient)).astype(np.int64)

    # ---- compromise: light clients more often; from a random one of their transactions onwards
    g = 1.0 / (1.0 + cnt / 25.0)
    expected = (g * cnt * 0.7).sum()
    scale = ACTIVE_SHARE * n / max(expected, 1e-9)
    comp = rng.random(nclient) < np.minimum(scale * g, 0.9)
    comp_start = np.floor(rng.random(nclient) * cnt * 0.6).astype(np.int64)
    active = comp[client] & (pos >= comp_start[client])
    c["active"] = active

    # ---- transaction columns
    ci = card_idx[client]
    c["card1"] = card1_values[ci]
    c["card2"] = cat_card2[ci]
    c["card2_ok"] = ~_chance(rng, 0.015, n)
    c["card3"] = cat_card3[ci]
    c["card4"] = cat_card4[ci]
    c["card5"] = cat_card5[ci]
    c["card6"] = cat_card6[ci]
    c["card346_ok"] = ~_chance(rng, 0.0027, n)
    c["card5_ok"] = ~_chance(rng, 0.007, n) & c["card346_ok"]

    c["addr1"] = addr_values[addr_idx[client]]
    c["addr2"] = addr2_c[client]
    c["addr_ok"] = ~_chance(rng, np.where(prod == 1, 0.9, np.where(nonw, 0.2, 0.02)), n)

    amt_units = np.exp(rng.normal(4.1 + 0.08 * tfrac, 0.95, n) + np.where(active, 0.45, 0.0))
    foreign = (prod == 1) & _chance(rng, 0.8, n)
    cents = np.where(_chance(rng, 0.55, n), 0, np.where(_chance(rng, 0.5, n), 500, rng.integers(0, 100, n) * 10))
    amt_milli = np.where(
        foreign,
        np.maximum(np.round(amt_units * 0.35 * 1000), 251),
        np.maximum(np.floor(amt_units), 1) * 1000 + np.where(amt_units > 1, cents, 0),
    ).astype(np.int64)
    amt_milli = np.minimum(amt_milli, 31_937_391)
    c["amt"] = amt_milli
    amt = amt_milli / 1000.0
    three_dec = (amt_milli % 10) != 0

    dist_scale = np.where(active, 400.0, 60.0)
    c["dist1"] = np.minimum(np.floor(rng.exponential(1.0, n) * dist_scale), 10286).astype(np.int64)
    c["dist1_ok"] = (prod == 0) & _chance(rng, 0.55, n)
    c["dist2"] = np.minimum(np.floor(rng.exponential(180.0, n)), 11623).astype(np.int64)
    c["dist2_ok"] = nonw & _chance(rng, 0.27, n)

    c["pmail"] = email_c[client]
    r_same = _chance(rng, np.where(active, 0.35, 0.85), n)
    r_other = _cat(rng, [e[1] for e in EMAILS], n)
    rmail = np.where(r_same & (email_c[client] < len(EMAILS)), email_c[client], r_other)
    r_ok = _chance(rng, np.where(nonw, 0.85, 0.06), n)
    c["rmail"] = np.where(r_ok, rmail, len(EMAILS))
    mismatch = r_ok & (c["rmail"] != c["pmail"])

    # C counts
    act = activity_c[client].astype(np.int64)
    extra = np.where(active, _geom(rng, 0.7, n), 0)
    c1 = 1 + act + _geom(rng, 0.3, n) + extra
    cc = {}
    cc[1] = c1
    cc[2] = c1 + _geom(rng, 0.2, n) + extra
    cc[3] = np.where(_chance(rng, 0.004, n), 1 + _geom(rng, 0.3, n), 0)
    cc[4] = np.where(nonw, _geom(rng, 0.5, n) + extra // 2, 0)
    cc[5] = np.where(nonw, 0, _geom(rng, 0.55, n))
    cc[6] = np.maximum(c1 - _geom(rng, 0.3, n), 0)
    cc[7] = np.where(nonw & _chance(rng, 0.3, n), _geom(rng, 0.4, n), 0)
    cc[8] = np.where(nonw, _geom(rng, 0.5, n) + extra // 2, 0)
    cc[9] = np.where(nonw, 0, _geom(rng, 0.6, n))
    cc[10] = np.where(nonw, _geom(rng, 0.5, n), 0)
    cc[11] = np.maximum(c1 - _geom(rng, 0.4, n), 1)
    cc[12] = np.where(nonw & _chance(rng, 0.3, n), _geom(rng, 0.4, n), 0)
    cc[13] = np.minimum(pos, 2500) + _geom(rng, 0.5, n) + extra
    cc[14] = np.maximum(c1 - _geom(rng, 0.5, n), 0)
    for i in range(1, 15):
        c[f"C{i}"] = np.minimum(cc[i], 3000)

    # D (days) columns
    d = {}
    dok = {}
    d[1] = np.clip(day - a_c[client], 0, 640)
    dok[1] = ~_chance(rng, 0.002, n)
    d[2] = d[1]
    dok[2] = (d[1] > 0) & ~_chance(rng, 0.25, n)
    d[3] = np.clip(gap_days, 0, 819)
    dok[3] = (pos > 0) & ~_chance(rng, np.where(nonw, 0.6, 0.3), n)
    d[4] = np.clip(day - b_c[client], 0, 869)
    dok[4] = ~_chance(rng, np.where(nonw, 0.55, 0.2), n)
    d[5] = np.clip(gap_days + _geom(rng, 0.5, n), 0, 819)
    dok[5] = (pos > 0) & ~_chance(rng, np.where(nonw, 0.6, 0.45), n)
    for k, miss in ((6, 0.6), (7, 0.75), (12, 0.62), (13, 0.66), (14, 0.6)):
        d[k] = np.clip(_geom(rng, 0.85, n, cap=200), 0, 870)
        dok[k] = nonw & ~_chance(rng, miss, n)
    d8_day = np.clip(day - c_c[client], 0, 1707)
    dok[8] = nonw & ~_chance(rng, 0.5, n)
    d[10] = np.clip(day - c_c[client], 0, 876)
    dok[10] = ~_chance(rng, np.where(prod == 1, 0.6, 0.02), n)
    d[11] = np.clip(day - e_c[client], 0, 670)
    d[15] = np.clip(day - e_c[client] + _geom(rng, 0.6, n), 0, 879)
    dok[15] = ~_chance(rng, np.where(prod == 1, 0.6, 0.03), n)
    for k, v in d.items():
        c[f"D{k}"] = v
    for k, v in dok.items():
        c[f"D{k}_ok"] = v
    c["D8_day"] = d8_day
    c["hour"] = hour
    c["tfrac"] = tfrac
    c["day"] = day

    # M flags: index 0 = T / M0, 1 = F / M1, 2 = M2 (M4 only)
    m = {}
    mok = {}
    w_rows = prod == 0
    mask13 = w_rows & ~_chance(rng, 0.2, n)
    for k, p_t in ((1, 0.9999), (2, 0.9), (3, 0.8)):
        m[k] = np.where(_chance(rng, p_t, n), 0, 1)
        mok[k] = mask13
    m[4] = np.where(prod == 1, _cat(rng, [0.45, 0.05, 0.50], n), _cat(rng, [0.65, 0.20, 0.15], n))
    m[4] = np.where(active & _chance(rng, 0.4, n), 2, m[4])
    mok[4] = np.where(prod == 1, ~_chance(rng, 0.15, n), np.where(w_rows, ~_chance(rng, 0.45, n), _chance(rng, 0.2, n)))
    m[5] = np.where(_chance(rng, 0.45, n), 0, 1)
    mok[5] = w_rows & ~_chance(rng, 0.45, n)
    m[6] = np.where(_chance(rng, np.where(active, 0.25, 0.47), n), 0, 1)
    mok[6] = w_rows & ~_chance(rng, 0.05, n)
    mask79 = w_rows & ~_chance(rng, 0.62, n)
    for k, p_t in ((7, 0.15), (8, 0.35), (9, 0.85)):
        m[k] = np.where(_chance(rng, p_t, n), 0, 1)
        mok[k] = mask79
    for k, v in m.items():
        c[f"M{k}"] = v
        c[f"M{k}_ok"] = mok[k]

    # ---- identity: exactly the documented share, non-W rows only
    ident = np.zeros(n, dtype=bool)
    for name, lo, hi, want in (("train", 0, ntr, sz.train_identity), ("test", ntr, n, sz.test_identity)):
        cand = lo + np.flatnonzero(nonw[lo:hi])
        pick = np.sort(rng.choice(cand, size=min(want, len(cand)), replace=False))
        ident[pick] = True
        w.identity_rows[name] = pick
    c["ident"] = ident
    c["device"] = device_c[client]
    c["devinfo_ok"] = ~devinfo_missing_c[client]
    proxy = ident & _chance(rng, np.where(active, 0.25, 0.03), n)
    c["proxy"] = proxy
    c["proxy_kind"] = _cat(rng, [0.6, 0.25, 0.15], n)
    c["id15_new"] = _chance(rng, np.where(active, 0.6, 0.12), n)

    # ---- the planted label
    s = PRODUCT_EFFECT[prod] + np.where(prod == 3, H_DRIFT * (1.0 - tfrac), 0.0)
    s = s + 0.6 * (c["card6"] == 1) + EMAIL_EFFECT[c["pmail"]]
    s = s + np.where(np.isin(c["pmail"], DRIFT_EMAILS), EMAIL_DRIFT * tfrac, 0.0)
    s = s + 0.8 * mismatch + 0.4 * (np.log(amt) - 4.3) + 0.5 * three_dec + HOUR_EFFECT[hour]
    s = s + 0.5 * (d[1] == 0) + 0.3 * np.log(c1) + 0.4 * (mok[4] & (m[4] == 2))
    s = s + np.where(ident, DEVICE_EFFECT[c["device"]], 0.0) + 1.2 * proxy
    s = FEATURE_SCALE * s + ACTIVE_EFFECT * active
    lo_b, hi_b = -20.0, 5.0
    for _ in range(60):
        mid = (lo_b + hi_b) / 2
        if _sigmoid(mid + s[:ntr]).mean() > FRAUD_RATE:
            hi_b = mid
        else:
            lo_b = mid
    p = _sigmoid((lo_b + hi_b) / 2 + s)
    y = rng.random(n) < p
    c["p"] = p
    c["y"] = y
    w.oracle_auc = _auc(p[:ntr], y[:ntr])
    cut = int(ntr * 0.8)
    w.oracle_auc_last20pct = _auc(p[cut:ntr], y[cut:ntr])
    w.fraud_rate = float(y[:ntr].mean())
    del c["tfrac"]
    _compact(c)
    return w


def _compact(cols: dict) -> None:
    """Downcast the integer columns in place (keeps the world at a few hundred MB at full scale)."""
    for key, v in cols.items():
        if v.dtype.kind == "i" and len(v):
            lo, hi = int(v.min()), int(v.max())
            if -(2**15) <= lo and hi < 2**15:
                cols[key] = v.astype(np.int16)
            elif -(2**31) <= lo and hi < 2**31:
                cols[key] = v.astype(np.int32)


# ------------------------------------------------------------------------------------------- chunk writers

EMAIL_LABELS = tuple(EMAIL_NAMES)
TF = ("T", "F")
M4_LABELS = ("M0", "M1", "M2")
FOUND = ("Found", "NotFound")


def _transaction_chunk(w: World, part: str, lo: int, hi: int, chunk_no: int) -> bytes:
    c = w.cols
    off = 0 if part == "train" else w.sizes.train
    g = slice(off + lo, off + hi)
    n = hi - lo
    rng = _rng(w.seed, 1 if part == "train" else 2, chunk_no)
    prod = c["prod"][g]
    active = c["active"][g]
    ident = c["ident"][g]
    day = c["day"][g]

    cols: list[pa.Array] = [_enc_bigint(c["tid"][g])]
    if part == "train":
        cols.append(_enc_int(c["y"][g].astype(np.int32), None, 0, 1, ""))
    cols.append(_enc_bigint(c["dt"][g]))
    cols.append(_enc_decimal(c["amt"][g], None))
    cols.append(_enc_labels(prod, None, tuple(PRODUCTS)))
    cols.append(_enc_int(c["card1"][g], None, 1000, 18396, ""))
    cols.append(_enc_int(c["card2"][g], c["card2_ok"][g], 100, 600))
    ok346 = c["card346_ok"][g]
    cols.append(_enc_int(c["card3"][g], ok346, 100, 231))
    cols.append(_enc_labels(c["card4"][g], ok346, tuple(CARD4)))
    cols.append(_enc_int(c["card5"][g], c["card5_ok"][g], 100, 237))
    cols.append(_enc_labels(c["card6"][g], ok346, tuple(CARD6)))
    aok = c["addr_ok"][g]
    cols.append(_enc_int(c["addr1"][g], aok, 100, 540))
    cols.append(_enc_int(c["addr2"][g], aok, 10, 102))
    cols.append(_enc_int(c["dist1"][g], c["dist1_ok"][g], 0, 10286))
    cols.append(_enc_int(c["dist2"][g], c["dist2_ok"][g], 0, 11623))
    pm, rm = c["pmail"][g], c["rmail"][g]
    cols.append(_enc_labels(np.minimum(pm, len(EMAILS) - 1), pm < len(EMAILS), EMAIL_LABELS))
    cols.append(_enc_labels(np.minimum(rm, len(EMAILS) - 1), rm < len(EMAILS), EMAIL_LABELS))
    cblock = np.stack([c[f"C{i}"][g] for i in range(1, 15)])
    cols.extend(_block("count", cblock, np.ones_like(cblock, dtype=bool), 0, 3000))
    for k in range(1, 16):
        if k == 8:
            hours = c["hour"][g].astype(np.int64)
            units = c["D8_day"][g].astype(np.int64) * 1_000_000 + (hours * 1_000_000) // 24
            cols.append(_enc_decimal(units, c["D8_ok"][g], 6))
        elif k == 9:
            cols.append(_enc_decimal((hours * 1_000_000) // 24, c["D8_ok"][g], 6))
        elif k == 11:
            d11_ok = (prod == 0) & ~(rng.random(n) < 0.28)  # shares its mask with V1..V11
            cols.append(_enc_int(c["D11"][g], d11_ok, 0, 879))
        else:
            cols.append(_enc_int(c[f"D{k}"][g], c[f"D{k}_ok"][g], 0, 879))
    for k in range(1, 10):
        cols.append(_enc_labels(c[f"M{k}"][g], c[f"M{k}_ok"][g], M4_LABELS if k == 4 else TF))

    # V block
    level = _geom(rng, 0.35, n).astype(np.int16)
    amt = c["amt"][g]
    for first, last, miss, rule, kind in V_BLOCKS:
        ncol = last - first + 1
        if first == 1:
            valid = d11_ok
        else:
            u = rng.random(n)
            valid = ~(u < np.asarray(miss)[prod])
            if rule == "early":
                valid &= day < TRAIN_DT_START // DAY + 60
            elif rule == "identity":
                valid &= ident & ((day >= 61) | (u < 0.45))
        valid2d = np.broadcast_to(valid, (ncol, n))
        if kind == "count":
            noise = _geom(rng, 0.12, (ncol, n))
            vals = np.minimum(level, 6)[None, :] * (noise > 0) + noise
            for vcol in range(first, last + 1):
                if vcol in V_BINARY:
                    vals[vcol - first] = 1
                if vcol in V_SIGNAL:
                    bump = np.where(active, _geom(rng, 1 - 1 / (1 + V_SIGNAL[vcol]), n), 0)
                    vals[vcol - first] += bump.astype(vals.dtype)
            cols.extend(_block("count", vals, valid2d, 0, 255))
        else:
            mult = _geom(rng, 0.2, (ncol, n))
            units = mult.astype(np.int64) * amt[None, :]
            cols.extend(_block("amount", units, valid2d))
    return _csv(cols)


def _identity_chunk(w: World, part: str, lo: int, hi: int, chunk_no: int) -> bytes:
    c = w.cols
    rows = w.identity_rows[part][lo:hi]
    n = len(rows)
    rng = _rng(w.seed, 3 if part == "train" else 4, chunk_no)
    active = c["active"][rows]
    dev = c["device"][rows]
    devs = DEVICES

    def ok(p_miss):
        return ~_chance(rng, p_miss, n)

    def ints(lo_, hi_, size=n):
        return rng.integers(lo_, hi_ + 1, size)

    cols: list[pa.Array] = [_enc_bigint(c["tid"][rows])]
    id01 = -5 * np.where(_chance(rng, 0.6, n), 0, _geom(rng, 0.6, n, 20) + 1) - np.where(active, 10, 0)
    cols.append(_enc_int(id01, None, -100, 0))  # id_01
    id02 = np.minimum(np.floor(np.exp(rng.normal(11.3, 1.3, n))), 999595).astype(np.int64) + 1
    cols.append(_enc_bigint(id02, ok(0.02), ".0"))  # id_02
    m34 = ok(0.54)
    for _ in (3, 4):
        cols.append(_enc_int(np.where(_chance(rng, 0.95, n), 0, ints(-13, 10)), m34, -13, 10))
    for _ in (5, 6):
        cols.append(_enc_int(np.where(_chance(rng, 0.6, n), 0, ints(-20, 20)), ok(0.05), -20, 20))
    m78 = ok(0.96)
    for _ in (7, 8):
        cols.append(_enc_int(ints(-100, 50), m78, -100, 50))
    m910 = ok(0.48)
    for _ in (9, 10):
        cols.append(_enc_int(np.where(_chance(rng, 0.9, n), 0, ints(-6, 25)), m910, -6, 25))
    id11 = np.where(_chance(rng, 0.9, n), 100000, ints(90000, 99999))
    cols.append(_enc_decimal(id11, ok(0.02)))  # id_11
    cols.append(_enc_labels(np.where(_chance(rng, 0.76, n), 1, 0), None, FOUND))  # id_12
    cols.append(_enc_int(ints(10, 64), ok(0.12), 10, 64))  # id_13
    id14 = np.array([-300, -360, -480, -420, -600, 60, 0, 180, 330, -180])[
        _cat(rng, [30, 25, 20, 10, 3, 3, 3, 2, 2, 2], n)
    ]
    cols.append(_enc_int(id14, ok(0.45), -660, 720))  # id_14
    id15 = np.where(c["id15_new"][rows], 0, np.where(_chance(rng, 0.9, n), 1, 2))
    cols.append(_enc_labels(id15, ok(0.02), ("New", "Found", "Unknown")))  # id_15
    cols.append(_enc_labels(np.where(_chance(rng, 0.55, n), 0, 1), ok(0.10), FOUND))  # id_16
    cols.append(_enc_int(ints(100, 229), ok(0.03), 100, 229))  # id_17
    cols.append(_enc_int(ints(10, 29), ok(0.69), 10, 29))  # id_18
    cols.append(_enc_int(ints(100, 671), ok(0.03), 100, 671))  # id_19
    cols.append(_enc_int(ints(100, 661), ok(0.03), 100, 661))  # id_20
    m_rare = ok(0.99)
    cols.append(_enc_int(ints(100, 854), m_rare, 100, 854))  # id_21
    cols.append(_enc_int(ints(10, 44), m_rare, 10, 44))  # id_22
    cols.append(_enc_labels(c["proxy_kind"][rows], c["proxy"][rows], tuple(PROXIES)))  # id_23
    cols.append(_enc_int(ints(11, 26), m_rare, 11, 26))  # id_24
    cols.append(_enc_int(ints(100, 548), m_rare, 100, 548))  # id_25
    cols.append(_enc_int(ints(100, 216), m_rare, 100, 216))  # id_26
    cols.append(_enc_labels(np.where(_chance(rng, 0.9, n), 0, 1), m_rare, FOUND))  # id_27
    m2829 = ok(0.02)
    for _ in (28, 29):
        cols.append(_enc_labels(np.where(_chance(rng, 0.45, n), 0, 1), m2829, FOUND))
    m30 = ok(0.46)
    os_labels = tuple(sorted({d[2] for d in devs}))
    br_labels = tuple(sorted({d[3] for d in devs}))
    res_labels = tuple(sorted({d[5] for d in devs}))
    info_labels = tuple(sorted({d[1] for d in devs}))
    os_idx = np.array([os_labels.index(d[2]) for d in devs])
    br_idx = np.array([br_labels.index(d[3]) for d in devs])
    res_idx = np.array([res_labels.index(d[5]) for d in devs])
    info_idx = np.array([info_labels.index(d[1]) for d in devs])
    bits32 = np.array([d[4] for d in devs])
    cols.append(_enc_labels(os_idx[dev], m30, os_labels))  # id_30
    cols.append(_enc_labels(br_idx[dev], ok(0.03), br_labels))  # id_31
    cols.append(_enc_int(bits32[dev], m30, 0, 32))  # id_32
    cols.append(_enc_labels(res_idx[dev], m30, res_labels))  # id_33
    cols.append(_enc_labels(_cat(rng, [0.85, 0.1, 0.04, 0.01], n), m30, tuple(MATCH)))  # id_34
    m3538 = ok(0.02)
    for p_t in (0.55, 0.9, 0.5, 0.52):
        cols.append(_enc_labels(np.where(_chance(rng, p_t, n), 0, 1), m3538, TF))
    cols.append(
        _enc_labels((np.array([d[0] for d in devs]) == "mobile").astype(np.int32)[dev], ok(0.02), ("desktop", "mobile"))
    )
    cols.append(_enc_labels(info_idx[dev], c["devinfo_ok"][rows], info_labels))
    return _csv(cols)


def _submission_chunk(w: World, part: str, lo: int, hi: int, chunk_no: int) -> bytes:
    off = w.sizes.train
    ids = _enc_bigint(w.cols["tid"][off + lo : off + hi])
    return _csv([ids, pa.array(["0.5"] * (hi - lo), type=pa.string())])


_WRITE_OPTIONS = pcsv.WriteOptions(include_header=False, quoting_style="none", batch_size=8192)


def _csv(cols: list[pa.Array]) -> bytes:
    table = pa.Table.from_arrays(cols, names=[f"c{i}" for i in range(len(cols))])
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink, write_options=_WRITE_OPTIONS)
    return sink.getvalue()


# -------------------------------------------------------------------------------------------- file output


class GenerateError(Exception):
    """A failure with a message meant for the user."""


def _plan(w: World):
    sz = w.sizes
    return [
        ("train_transaction.csv", TRANSACTION_COLUMNS, _transaction_chunk, "train", sz.train),
        ("train_identity.csv", IDENTITY_COLUMNS, _identity_chunk, "train", len(w.identity_rows["train"])),
        ("test_transaction.csv", TEST_TRANSACTION_COLUMNS, _transaction_chunk, "test", sz.test),
        ("test_identity.csv", TEST_IDENTITY_COLUMNS, _identity_chunk, "test", len(w.identity_rows["test"])),
        ("sample_submission.csv", SUBMISSION_COLUMNS, _submission_chunk, "test", sz.test),
    ]


def _write_file(pool, out: str, name: str, header, fn, w: World, part: str, nrows: int, temps: list) -> int:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
    temps.append(tmp)
    os.fchmod(fd, 0o666 & ~_UMASK)
    with os.fdopen(fd, "wb") as f:
        f.write((",".join(header) + "\n").encode())
        bounds = [(lo, min(lo + CHUNK_ROWS, nrows)) for lo in range(0, nrows, CHUNK_ROWS)]
        pending = []
        for i, (lo, hi) in enumerate(bounds):
            pending.append(pool.submit(fn, w, part, lo, hi, i))
            if len(pending) >= 3:
                f.write(pending.pop(0).result())
        for fut in pending:
            f.write(fut.result())
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, os.path.join(out, name))
    temps.remove(tmp)
    return size


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _read_sidecar(out: str) -> dict | None:
    try:
        with open(os.path.join(out, SIDECAR), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: str, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".sidecar.", suffix=".tmp", dir=os.path.dirname(path))
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _up_to_date(out: str, rows: int, seed: int) -> dict | None:
    meta = _read_sidecar(out)
    if not meta or meta.get("status") != "complete":
        return None
    if (meta.get("rows"), meta.get("seed"), meta.get("generator_version")) != (rows, seed, GENERATOR_VERSION):
        return None
    for entry in meta.get("files", []):
        path = os.path.join(out, entry["name"])
        if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"]:
            return None
    if sorted(e["name"] for e in meta.get("files", [])) != sorted(FILE_NAMES):
        return None
    return meta


def estimate_bytes(rows: int) -> int:
    """Rough output size (about 2.15 kB per train row over all five files) for the free-space check."""
    return int(rows * 2200) + 1_000_000


def generate(out: str, rows: int = FULL_TRAIN_ROWS, seed: int = 42, force: bool = False, workers: int = 2) -> dict:
    """Generate the five files into ``out``; returns the summary dict (see module docstring)."""
    t0 = time.monotonic()
    if not isinstance(rows, int) or rows < MIN_ROWS or rows > MAX_ROWS:
        raise GenerateError(f"--rows must be an integer between {MIN_ROWS} and {MAX_ROWS}, got {rows!r}")
    if not isinstance(seed, int) or seed < 0:
        raise GenerateError(f"--seed must be a non-negative integer, got {seed!r}")
    out = os.path.abspath(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise GenerateError(f"cannot create output directory {out}: {e.strerror or e}") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise GenerateError(f"output directory {out} is not writable")

    if not force:
        meta = _up_to_date(out, rows, seed)
        if meta is not None:
            return _summary(out, False, meta, time.monotonic() - t0)
        foreign = [f for f in FILE_NAMES if os.path.exists(os.path.join(out, f))]
        if foreign and _read_sidecar(out) is None:
            raise GenerateError(
                f"{out} already holds {', '.join(foreign)} not written by this generator (no {SIDECAR}); "
                "refusing to overwrite them without --force"
            )
    free = shutil.disk_usage(out).free
    need = estimate_bytes(rows)
    if free < need:
        raise GenerateError(
            f"not enough disk space in {out}: about {need // 2**20} MiB needed, {free // 2**20} MiB free"
        )

    sidecar = os.path.join(out, SIDECAR)
    base = {"generator_version": GENERATOR_VERSION, "rows": rows, "seed": seed}
    temps: list[str] = []
    try:
        _write_json_atomic(sidecar, {**base, "status": "in-progress"})
        w = build_world(rows, seed)
        files = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for name, header, fn, part, nrows in _plan(w):
                size = _write_file(pool, out, name, header, fn, w, part, nrows, temps)
                files.append({"name": name, "rows": nrows, "bytes": size})
        meta = {
            **base,
            "status": "complete",
            "files": files,
            "oracle_auc": round(w.oracle_auc, 6),
            "oracle_auc_last20pct": round(w.oracle_auc_last20pct, 6),
            "fraud_rate": round(w.fraud_rate, 6),
        }
        _write_json_atomic(sidecar, meta)
    except OSError as e:
        if e.errno == 28:
            raise GenerateError(f"disk full while writing to {out}; partial files removed") from e
        raise GenerateError(f"writing to {out} failed: {e}") from e
    finally:
        for tmp in temps:
            _unlink(tmp)
    return _summary(out, True, meta, time.monotonic() - t0)


def _summary(out: str, changed: bool, meta: dict, seconds: float) -> dict:
    return {
        "job": JOB,
        "changed": changed,
        "out": out,
        "rows": meta["rows"],
        "seed": meta["seed"],
        "generator_version": meta["generator_version"],
        "files": meta["files"],
        "fraud_rate": meta["fraud_rate"],
        "oracle_auc": meta["oracle_auc"],
        "oracle_auc_last20pct": meta["oracle_auc_last20pct"],
        "seconds": round(seconds, 2),
    }


# ---------------------------------------------------------------------------------------------------- CLI


def _env_int(name: str, default: int) -> int | str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraud-demo-generate",
        description="Write an offline, IEEE-CIS-shaped synthetic fraud dataset (the five CSV files of Kaggle's "
        "ieee-fraud-detection.zip) with a planted, documented fraud signal. Idempotent: does nothing when the "
        "files for the same --rows/--seed are already there. Prints one JSON summary line last.",
    )
    parser.add_argument(
        "--out",
        default=os.environ.get("FRAUD_DEMO_SYNTHETIC_OUT"),
        help="output directory (env FRAUD_DEMO_SYNTHETIC_OUT)",
    )
    parser.add_argument(
        "--rows",
        default=_env_int("FRAUD_DEMO_SYNTHETIC_ROWS", FULL_TRAIN_ROWS),
        help=f"train transaction rows, >= {MIN_ROWS}; test rows scale along (default {FULL_TRAIN_ROWS} = full scale; "
        "env FRAUD_DEMO_SYNTHETIC_ROWS)",
    )
    parser.add_argument(
        "--seed",
        default=_env_int("FRAUD_DEMO_SYNTHETIC_SEED", 42),
        help="random seed (default 42; env FRAUD_DEMO_SYNTHETIC_SEED)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date; overwrite foreign files")
    args = parser.parse_args(argv)

    def fail(msg: str, code: int) -> int:
        print(f"fraud-demo-generate: error: {msg}", file=sys.stderr)
        print(json.dumps({"job": JOB, "changed": False, "failed": True, "msg": msg}))
        return code

    if not args.out:
        return fail("--out DIR (or FRAUD_DEMO_SYNTHETIC_OUT) is required", 2)
    try:
        rows, seed = int(args.rows), int(args.seed)
    except (TypeError, ValueError):
        return fail(f"--rows and --seed must be integers, got {args.rows!r} and {args.seed!r}", 2)
    try:
        summary = generate(args.out, rows=rows, seed=seed, force=args.force)
    except GenerateError as e:
        return fail(str(e), 1)
    except MemoryError:
        return fail("out of memory", 1)
    except Exception as e:  # a bug: keep the traceback, still end with the summary line
        traceback.print_exc()
        return fail(f"unexpected error: {type(e).__name__}: {e}", 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
