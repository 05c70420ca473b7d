"""The planted model of the offline generator: the shape of the real data and every parameter of the signal.

The generator's distribution knowledge lives here (shares, effects, e-mail domains, device profiles, missingness);
the dataset's columns, kinds and categorical domains do not: they come from the contract (``ieee_contract``), and
every table below that is keyed by a categorical value is checked against the contract's domain at import.

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

Drifted batch (``--drift``, ``DRIFTED_BATCH``): a later period, amounts x1.49, four new real e-mail domains (two
risky, two safe), a new fraud pattern (an evening ring replaces the quiet-hours risk) and a new business mix (more
C products, credit cards, mobile devices, anonymous proxies); see SYNTHETIC.md.

Oracle AUC: the AUC of the true probability against the drawn train labels (``oracle_auc``), plus the same on the
time-ordered last 20 % of train (``oracle_auc_last20pct``).  No model can beat it in expectation; since the
compromised state is latent, a good model should come close (within a few points) but stay below it.
See ``SYNTHETIC.md`` next to this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ieee_contract as S

FULL_TRAIN_ROWS = 590540
FULL_TEST_ROWS = 506691
FULL_TRAIN_IDENTITY = 144233
FULL_TEST_IDENTITY = 141907
TRAIN_ID_START = 2987000
TEST_ID_START = 3663549
TRAIN_DT_START = 86400
DAY = 86400
TRAIN_DAYS = 182
GAP_DAYS = 30
TEST_DAYS = 183
FRAUD_RATE = 0.035

_TRANSACTION_SPEC = S.BY_NAME["train_transaction"]
_IDENTITY_SPEC = S.BY_NAME["train_identity"]


def by_value(table: dict[str, float], domain: tuple) -> list[float]:
    """A table keyed by categorical value -> a list in the contract domain's order (drawn indices = positions)."""
    if set(table) != set(domain):
        raise ValueError(f"generator table {sorted(table)} does not cover the contract's domain {list(domain)} exactly")
    return [table[v] for v in domain]


# Label tuples are the contract's domains; the model's index arithmetic names the values it means.
PRODUCTS = _TRANSACTION_SPEC.col("ProductCD").isin
PRODUCT_W, PRODUCT_C, PRODUCT_H = (PRODUCTS.index(p) for p in ("W", "C", "H"))
PRODUCT_SHARE_TRAIN = by_value({"W": 0.7345, "C": 0.1200, "R": 0.0640, "H": 0.0590, "S": 0.0225}, PRODUCTS)
PRODUCT_SHARE_TEST = by_value({"W": 0.6950, "C": 0.1370, "R": 0.0740, "H": 0.0680, "S": 0.0260}, PRODUCTS)
PRODUCT_EFFECT = np.array(by_value({"W": 0.0, "C": 1.4, "R": 0.5, "H": 0.2, "S": 0.9}, PRODUCTS))
H_DRIFT = 1.0  # product H: +1.0 at the start of the timeline, fading to 0 at its end

CARD4 = _TRANSACTION_SPEC.col("card4").isin
CARD4_SHARE = by_value({"visa": 0.652, "mastercard": 0.321, "american express": 0.016, "discover": 0.011}, CARD4)
CARD6 = _TRANSACTION_SPEC.col("card6").isin
CARD6_CREDIT = CARD6.index("credit")
CARD6_SHARE = by_value({"debit": 0.745, "credit": 0.2535, "debit or credit": 0.001, "charge card": 0.0005}, CARD6)

TF_LABELS = S.TF  # M1..M3, M5..M9, id_35..id_38
T, F = TF_LABELS.index("T"), TF_LABELS.index("F")
M4_LABELS = _TRANSACTION_SPEC.col("M4").isin
M4_M2 = M4_LABELS.index("M2")
M4_SHARE_C = by_value({"M0": 0.45, "M1": 0.05, "M2": 0.50}, M4_LABELS)  # ProductCD C
M4_SHARE_OTHER = by_value({"M0": 0.65, "M1": 0.20, "M2": 0.15}, M4_LABELS)
FOUND_LABELS = S.FOUND  # id_12, id_16, id_27..id_29 (id_28's domain also allows New; the generator writes none)
IS_FOUND, NOT_FOUND = FOUND_LABELS.index("Found"), FOUND_LABELS.index("NotFound")
ID15 = _IDENTITY_SPEC.col("id_15").isin
ID15_NEW, ID15_FOUND, ID15_UNKNOWN = (ID15.index(v) for v in ("New", "Found", "Unknown"))
DEVICE_TYPES = _IDENTITY_SPEC.col("DeviceType").isin
PROXIES = _IDENTITY_SPEC.col("id_23").isin
PROXY_SHARE = by_value({"IP_PROXY:TRANSPARENT": 0.6, "IP_PROXY:ANONYMOUS": 0.25, "IP_PROXY:HIDDEN": 0.15}, PROXIES)
# id_34's domain is a pattern: the encoder checks each of these against it
MATCH = ("match_status:2", "match_status:1", "match_status:0", "match_status:-1")
MATCH_SHARE = [0.85, 0.1, 0.04, 0.01]

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


# ---- the batch: the normal one, or the later drifted one (``--drift``) ----------------------------------------------

ID_GAP = TEST_ID_START - TRAIN_ID_START - FULL_TRAIN_ROWS  # TransactionIDs of the 30-day gap between train and test
# New purchaser/recipient domains of the drifted batch: real IEEE-CIS domains outside the top 30 above (so the normal
# batch never writes them), two risky and two safe. A model fitted on the normal batch sees all four as one unknown
# value (no category, frequency 0), so it cannot tell them apart. (domain, share among non-missing, log-odds effect)
NEW_EMAILS = [
    ("gmx.de", 0.06, 2.2),
    ("web.de", 0.04, 1.6),
    ("yahoo.co.jp", 0.06, -0.6),
    ("hotmail.co.uk", 0.04, -0.4),
]
NEW_EMAIL_SHARE = sum(e[1] for e in NEW_EMAILS)  # the old domains' shares shrink by (1 - this)
# The new fraud pattern: an evening ring. The quiet-hours effect (5..10) is gone; hours 17..22 carry the risk.
EVENING_HOUR_EFFECT = np.where((np.arange(24) >= 17) & (np.arange(24) <= 22), 0.9, 0.0)
# The later period's business: more C (foreign) and fewer W transactions, twice the credit cards, mobile devices
# three times as common, anonymous proxies more often (columns a drift report can see: categorical or few values).
DRIFT_PRODUCT_SHARE = by_value({"W": 0.50, "C": 0.30, "R": 0.09, "H": 0.08, "S": 0.03}, PRODUCTS)
DRIFT_CARD6_SHARE = by_value({"debit": 0.498, "credit": 0.5, "debit or credit": 0.001, "charge card": 0.001}, CARD6)
DRIFT_MOBILE_WEIGHT = 3.0
DRIFT_PROXY_SHARE = by_value({"IP_PROXY:TRANSPARENT": 0.3, "IP_PROXY:ANONYMOUS": 0.5, "IP_PROXY:HIDDEN": 0.2}, PROXIES)


@dataclass(frozen=True)
class Batch:
    """What differs between the normal batch and the drifted one; everything else is the same planted model."""

    drift: bool
    emails: tuple  # (domain, share among non-missing, log-odds effect); index len(emails) = missing
    hour_effect: np.ndarray
    amount_log_shift: float  # added to ln(amount) of every row (the drifted batch's start: synthetic_world)
    fixed_tfrac: float | None  # None: the position on the normal timeline; else the slow drifts frozen at it
    product_share: tuple  # (train, test) ProductCD shares
    card6_share: list
    device_weight: list  # per DEVICES profile
    proxy_share: list

    @property
    def email_names(self) -> tuple:
        return tuple(e[0] for e in self.emails)

    @property
    def email_effect(self) -> np.ndarray:
        return np.array([e[2] for e in self.emails] + [EMAIL_EFFECT[-1]])


NORMAL_BATCH = Batch(
    False,
    tuple(EMAILS),
    HOUR_EFFECT,
    0.0,
    None,
    (PRODUCT_SHARE_TRAIN, PRODUCT_SHARE_TEST),
    CARD6_SHARE,
    [d[6] for d in DEVICES],
    PROXY_SHARE,
)
# About a month after the normal test period, amounts x e^0.4 = x1.49, the new domains and the evening ring; the
# normal timeline's slow drifts (H fading, outlook/mail/hotmail rising, +8 % amounts) stay at their end values.
DRIFTED_BATCH = Batch(
    True,
    tuple((d, share * (1.0 - NEW_EMAIL_SHARE), eff) for d, share, eff in EMAILS) + tuple(NEW_EMAILS),
    EVENING_HOUR_EFFECT,
    0.4,
    1.0,
    (DRIFT_PRODUCT_SHARE, DRIFT_PRODUCT_SHARE),
    DRIFT_CARD6_SHARE,
    [d[6] * (DRIFT_MOBILE_WEIGHT if d[0] == "mobile" else 1.0) for d in DEVICES],
    DRIFT_PROXY_SHARE,
)
if set(EMAIL_NAMES) & {e[0] for e in NEW_EMAILS}:
    raise ImportError("the drifted batch's new e-mail domains must not be among the normal batch's")


def batch(drift: bool) -> Batch:
    return DRIFTED_BATCH if drift else NORMAL_BATCH
