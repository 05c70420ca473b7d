"""The generator's world: every row-level value of train and test, drawn once from the planted model.

``build_world`` draws the clients, their cards, addresses, e-mail domains and devices, the compromise, every
transaction column that is not drawn per chunk, the identity rows and the planted label with its true
probability (so the oracle AUC is known). Categorical values are positions in the contract's domains
(``synthetic_model``); ``synthetic_csv`` turns them into text. The random helpers here are shared by both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .synthetic_model import (
    ACTIVE_EFFECT,
    ACTIVE_SHARE,
    CARD4_SHARE,
    CARD6_CREDIT,
    DAY,
    DEVICE_EFFECT,
    DRIFT_EMAILS,
    EMAIL_DRIFT,
    FEATURE_SCALE,
    FRAUD_RATE,
    FULL_TEST_IDENTITY,
    FULL_TEST_ROWS,
    FULL_TRAIN_IDENTITY,
    FULL_TRAIN_ROWS,
    GAP_DAYS,
    H_DRIFT,
    HOUR_VOLUME,
    ID_GAP,
    M4_M2,
    M4_SHARE_C,
    M4_SHARE_OTHER,
    PRODUCT_C,
    PRODUCT_EFFECT,
    PRODUCT_H,
    PRODUCT_W,
    TEST_DAYS,
    TEST_ID_START,
    TRAIN_DAYS,
    TRAIN_DT_START,
    TRAIN_ID_START,
    Batch,
    F,
    T,
    batch,
)

DRIFT_STREAM = 1  # the extra key of the drifted batch's streams


def rng_for(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def cat(rng: np.random.Generator, probs, size) -> np.ndarray:
    """Categorical draw (indices into probs) via a cumulative table."""
    cdf = np.cumsum(np.asarray(probs, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1).astype(np.int16)


def geom(rng: np.random.Generator, q: float, size, cap: int = 255) -> np.ndarray:
    """Geometric counts P(k) ~ (1-q) q^k, k >= 0, from one random byte each (fast, cap-limited)."""
    u = (np.arange(256) + 0.5) / 256.0
    table = np.minimum(np.floor(np.log1p(-u) / np.log(q)), cap).astype(np.int16)
    return table[rng.integers(0, 256, size=size, dtype=np.uint8)]


def chance(rng: np.random.Generator, p, size) -> np.ndarray:
    return rng.random(size) < p


def auc(score: np.ndarray, label: np.ndarray) -> float:
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
    def for_rows(cls, rows: int, scale: float = 1.0) -> Sizes:
        """``rows`` train rows at 1x; ``scale`` times that many (train, then test and identity in proportion)."""
        rows = round(rows * scale)
        test = round(rows * FULL_TEST_ROWS / FULL_TRAIN_ROWS)
        return cls(
            rows,
            test,
            round(rows * FULL_TRAIN_IDENTITY / FULL_TRAIN_ROWS),
            round(test * FULL_TEST_IDENTITY / FULL_TEST_ROWS),
        )


@dataclass(frozen=True)
class Timeline:
    """Days of the train and test periods: ``scale`` times the real ones, so that ``scale`` times the rows keep the
    real rows per day (more months, not denser ones). The 30-day gap between them stays a month."""

    train_days: int
    test_days: int

    @classmethod
    def for_scale(cls, scale: float = 1.0) -> Timeline:
        return cls(round(TRAIN_DAYS * scale), round(TEST_DAYS * scale))

    @property
    def days(self) -> int:
        """The normal batch's whole timeline: train + gap + test."""
        return self.train_days + GAP_DAYS + self.test_days

    @property
    def extra_days(self) -> int:
        """Days beyond the real timeline (0 up to 1x): the day-count columns' caps grow by this much, or a client's
        ``D1`` would stop at the real data's maximum and ``uid`` (``day - D1``) would no longer recover it."""
        return max(0, self.days - (TRAIN_DAYS + GAP_DAYS + TEST_DAYS))


@dataclass
class World:
    """Row-level columns for train+test (train rows first), computed once; the V block and most identity
    columns are drawn per chunk."""

    sizes: Sizes
    seed: int
    batch: Batch
    timeline: Timeline
    cols: dict = field(default_factory=dict)
    oracle_auc: float = float("nan")
    oracle_auc_last20pct: float = float("nan")
    fraud_rate: float = float("nan")
    identity_rows: dict = field(default_factory=dict)  # "train"/"test" -> global row indices with identity

    def rng(self, *key: int) -> np.random.Generator:
        """The random stream for ``key``; the drifted batch draws from its own streams (not the normal batch's)."""
        return rng_for(self.seed, *key, *((DRIFT_STREAM,) if self.batch.drift else ()))


def _times(rng: np.random.Generator, n: int, start: int, days: int) -> np.ndarray:
    day = np.floor(rng.random(n) * days).astype(np.int64)
    hour = cat(rng, HOUR_VOLUME, n).astype(np.int64)
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


def build_world(rows: int, seed: int, drift: bool = False, scale: float = 1.0) -> World:
    """Draw the world for ``rows`` train rows; one random stream, drawn in a fixed order (output is pinned).
    ``drift``: the later, drifted batch (``synthetic_model.DRIFTED_BATCH``) instead of the normal one. ``scale``:
    ``scale`` times the rows over ``scale`` times the train and test periods (``Timeline``)."""
    sz = Sizes.for_rows(rows, scale)
    w = World(sz, seed, batch(drift), Timeline.for_scale(scale))
    r = _time_and_products(w, w.rng(0))
    cl = _clients(r)
    amount = _card_address_amount(w.cols, r, cl)
    c1 = _counts(w.cols, r, cl)
    d1 = _days(w.cols, r, cl)
    m4_is_m2 = _match_flags(w.cols, r)
    ident, proxy = _identity(w, r, cl)
    _label(w, r, amount, c1, d1, m4_is_m2, ident, proxy)
    _compact(w.cols)
    return w


@dataclass
class _Rows:
    """Row-level values the sections of build_world share (train rows first, then test)."""

    rng: np.random.Generator
    batch: Batch
    timeline: Timeline
    n: int
    ntr: int
    dt: np.ndarray
    day: np.ndarray
    hour: np.ndarray
    tfrac: np.ndarray  # position on the normal batch's whole train + gap + test timeline, 0..1
    prod: np.ndarray
    nonw: np.ndarray
    active: np.ndarray | None = None  # compromised client, at/after the compromise (set by _clients)


@dataclass
class _Clients:
    """Per-client draws (index: client) and each row's client, position in its history and day gap."""

    client: np.ndarray
    pos: np.ndarray
    gap_days: np.ndarray
    card_idx: np.ndarray
    catalogue: dict  # card1..card6 per card
    addr_values: np.ndarray
    addr_idx: np.ndarray
    addr2_c: np.ndarray
    email_c: np.ndarray
    device_c: np.ndarray
    devinfo_missing_c: np.ndarray
    activity_c: np.ndarray
    start_days: dict  # "a" (card start), "b", "c", "e": per-client reference days of the D columns


def _time_and_products(w: World, rng: np.random.Generator) -> _Rows:
    ntr, nte = w.sizes.train, w.sizes.test
    c = w.cols
    train_start, test_start = _id_starts(ntr, nte, w.batch.drift)
    c["tid"] = np.r_[np.arange(train_start, train_start + ntr), np.arange(test_start, test_start + nte)]
    tl = w.timeline
    # the drifted batch starts a month after the normal batch's test period (of the same scale)
    train_dt0 = TRAIN_DT_START + ((tl.days + GAP_DAYS) if w.batch.drift else 0) * DAY
    test_dt0 = train_dt0 + (tl.train_days + GAP_DAYS) * DAY + 24
    dt = np.r_[_times(rng, ntr, train_dt0, tl.train_days), _times(rng, nte, test_dt0, tl.test_days)]
    c["dt"] = dt
    day = dt // DAY
    hour = (dt // 3600) % 24
    if w.batch.fixed_tfrac is None:
        tfrac = (dt - TRAIN_DT_START) / float(tl.days * DAY)
    else:
        tfrac = np.full(len(dt), w.batch.fixed_tfrac)
    share_train, share_test = w.batch.product_share
    prod = np.r_[_exact_shares(rng, ntr, share_train), _exact_shares(rng, nte, share_test)]
    c["prod"] = prod
    c["hour"] = hour
    c["day"] = day
    return _Rows(rng, w.batch, tl, ntr + nte, ntr, dt, day, hour, tfrac, prod, prod != PRODUCT_W)


def _id_starts(ntr: int, nte: int, drift: bool) -> tuple[int, int]:
    """First TransactionID of train and of test: test after train and the gap's IDs; the drifted batch's train
    after the normal batch's test (for the same rows) and the next gap's IDs."""
    train_start = TRAIN_ID_START
    if drift:
        normal_test = _id_starts(ntr, nte, False)[1]
        train_start = normal_test + nte + ID_GAP
    train_last = train_start + ntr - 1
    test_start = TEST_ID_START if train_last < TEST_ID_START else train_last + ID_GAP + 1
    return train_start, test_start


def _card_catalogue(rng: np.random.Generator, card6_share: list) -> dict:
    """card1 -> card2..card6: the card's BIN-like attributes, fixed per card."""
    ncard = 13553
    cat_card = {"card1": np.sort(rng.choice(np.arange(1000, 18397), size=ncard, replace=False))}
    cat_card["card2"] = rng.integers(100, 601, ncard)
    cat_card3 = np.where(chance(rng, 0.88, ncard), 150, np.where(chance(rng, 0.8, ncard), 185, 0))
    cat_card["card3"] = np.where(cat_card3 == 0, rng.integers(100, 232, ncard), cat_card3)
    cat_card["card4"] = cat(rng, CARD4_SHARE, ncard)
    cat_card["card5"] = np.where(chance(rng, 0.5, ncard), 226, rng.integers(100, 238, ncard))
    cat_card["card6"] = cat(rng, card6_share, ncard)
    return cat_card


def _clients(r: _Rows) -> _Clients:
    """Clients: a card, an address, an e-mail domain, a device, a card start day; some get compromised."""
    rng, n, day, dt = r.rng, r.n, r.day, r.dt
    catalogue = _card_catalogue(rng, r.batch.card6_share)
    ncard = len(catalogue["card1"])
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
    addr2_c = np.where(chance(rng, 0.99, nclient), 87, rng.integers(10, 103, nclient))
    email_c = cat(rng, [e[1] * 0.84 for e in r.batch.emails] + [0.16], nclient)  # last = missing
    device_c = cat(rng, r.batch.device_weight, nclient)
    devinfo_missing_c = chance(rng, 0.18, nclient)
    activity_c = geom(rng, 0.45, nclient, cap=40)

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

    card_age = np.where(chance(rng, 0.30, nclient), 0, np.floor(rng.exponential(140, nclient)))
    a_c = first_day - card_age.astype(np.int64)
    start_days = {"a": a_c}
    for key, mean in (("b", 60), ("c", 40), ("e", 30)):
        start_days[key] = a_c + np.floor(rng.exponential(mean, nclient)).astype(np.int64)

    # ---- compromise: light clients more often; from a random one of their transactions onwards
    g = 1.0 / (1.0 + cnt / 25.0)
    expected = (g * cnt * 0.7).sum()
    scale = ACTIVE_SHARE * n / max(expected, 1e-9)
    comp = rng.random(nclient) < np.minimum(scale * g, 0.9)
    comp_start = np.floor(rng.random(nclient) * cnt * 0.6).astype(np.int64)
    r.active = comp[client] & (pos >= comp_start[client])
    return _Clients(
        client,
        pos,
        gap_days,
        card_idx,
        catalogue,
        addr_values,
        addr_idx,
        addr2_c,
        email_c,
        device_c,
        devinfo_missing_c,
        activity_c,
        start_days,
    )


def _card_address_amount(c: dict, r: _Rows, cl: _Clients) -> dict:
    """card*, addr*, TransactionAmt, dist*, e-mail domains; returns the label's terms (amount, 3 decimals, R/P
    mismatch)."""
    rng, n, prod, nonw, active, client = r.rng, r.n, r.prod, r.nonw, r.active, cl.client
    c["active"] = active
    ci = cl.card_idx[client]
    c["card1"] = cl.catalogue["card1"][ci]
    c["card2"] = cl.catalogue["card2"][ci]
    c["card2_ok"] = ~chance(rng, 0.015, n)
    for k in (3, 4, 5, 6):
        c[f"card{k}"] = cl.catalogue[f"card{k}"][ci]
    c["card346_ok"] = ~chance(rng, 0.0027, n)
    c["card5_ok"] = ~chance(rng, 0.007, n) & c["card346_ok"]

    c["addr1"] = cl.addr_values[cl.addr_idx[client]]
    c["addr2"] = cl.addr2_c[client]
    c["addr_ok"] = ~chance(rng, np.where(prod == PRODUCT_C, 0.9, np.where(nonw, 0.2, 0.02)), n)

    shift = 0.08 * r.tfrac + r.batch.amount_log_shift
    amt_units = np.exp(rng.normal(4.1 + shift, 0.95, n) + np.where(active, 0.45, 0.0))
    foreign = (prod == PRODUCT_C) & chance(rng, 0.8, n)
    cents = np.where(chance(rng, 0.55, n), 0, np.where(chance(rng, 0.5, n), 500, rng.integers(0, 100, n) * 10))
    amt_milli = np.where(
        foreign,
        np.maximum(np.round(amt_units * 0.35 * 1000), 251),
        np.maximum(np.floor(amt_units), 1) * 1000 + np.where(amt_units > 1, cents, 0),
    ).astype(np.int64)
    amt_milli = np.minimum(amt_milli, 31_937_391)
    c["amt"] = amt_milli

    dist_scale = np.where(active, 400.0, 60.0)
    c["dist1"] = np.minimum(np.floor(rng.exponential(1.0, n) * dist_scale), 10286).astype(np.int64)
    c["dist1_ok"] = (prod == PRODUCT_W) & chance(rng, 0.55, n)
    c["dist2"] = np.minimum(np.floor(rng.exponential(180.0, n)), 11623).astype(np.int64)
    c["dist2_ok"] = nonw & chance(rng, 0.27, n)

    email_c = cl.email_c
    c["pmail"] = email_c[client]
    r_same = chance(rng, np.where(active, 0.35, 0.85), n)
    emails = r.batch.emails
    r_other = cat(rng, [e[1] for e in emails], n)
    rmail = np.where(r_same & (email_c[client] < len(emails)), email_c[client], r_other)
    r_ok = chance(rng, np.where(nonw, 0.85, 0.06), n)
    c["rmail"] = np.where(r_ok, rmail, len(emails))
    return {
        "amt": amt_milli / 1000.0,
        "three_dec": (amt_milli % 10) != 0,
        "mismatch": r_ok & (c["rmail"] != c["pmail"]),
    }


def _counts(c: dict, r: _Rows, cl: _Clients) -> np.ndarray:
    """C1..C14 (counts; C1 from the client's activity); returns C1."""
    rng, n, nonw, active, pos = r.rng, r.n, r.nonw, r.active, cl.pos
    act = cl.activity_c[cl.client].astype(np.int64)
    extra = np.where(active, geom(rng, 0.7, n), 0)
    c1 = 1 + act + geom(rng, 0.3, n) + extra
    cc = {}
    cc[1] = c1
    cc[2] = c1 + geom(rng, 0.2, n) + extra
    cc[3] = np.where(chance(rng, 0.004, n), 1 + geom(rng, 0.3, n), 0)
    cc[4] = np.where(nonw, geom(rng, 0.5, n) + extra // 2, 0)
    cc[5] = np.where(nonw, 0, geom(rng, 0.55, n))
    cc[6] = np.maximum(c1 - geom(rng, 0.3, n), 0)
    cc[7] = np.where(nonw & chance(rng, 0.3, n), geom(rng, 0.4, n), 0)
    cc[8] = np.where(nonw, geom(rng, 0.5, n) + extra // 2, 0)
    cc[9] = np.where(nonw, 0, geom(rng, 0.6, n))
    cc[10] = np.where(nonw, geom(rng, 0.5, n), 0)
    cc[11] = np.maximum(c1 - geom(rng, 0.4, n), 1)
    cc[12] = np.where(nonw & chance(rng, 0.3, n), geom(rng, 0.4, n), 0)
    cc[13] = np.minimum(pos, 2500) + geom(rng, 0.5, n) + extra
    cc[14] = np.maximum(c1 - geom(rng, 0.5, n), 0)
    for i in range(1, 15):
        c[f"C{i}"] = np.minimum(cc[i], 3000)
    return c1


def _days(c: dict, r: _Rows, cl: _Clients) -> np.ndarray:
    """D1..D15 (days since the client's reference days, gaps between its transactions); returns D1."""
    rng, n, day, prod, nonw, pos, gap_days = r.rng, r.n, r.day, r.prod, r.nonw, cl.pos, cl.gap_days
    a_c, b_c, c_c, e_c = (cl.start_days[k][cl.client] for k in ("a", "b", "c", "e"))
    x = r.timeline.extra_days  # a longer timeline raises the caps of the day counts (0 up to 1x)
    d = {}
    dok = {}
    d[1] = np.clip(day - a_c, 0, 640 + x)
    dok[1] = ~chance(rng, 0.002, n)
    d[2] = d[1]
    dok[2] = (d[1] > 0) & ~chance(rng, 0.25, n)
    d[3] = np.clip(gap_days, 0, 819 + x)
    dok[3] = (pos > 0) & ~chance(rng, np.where(nonw, 0.6, 0.3), n)
    d[4] = np.clip(day - b_c, 0, 869 + x)
    dok[4] = ~chance(rng, np.where(nonw, 0.55, 0.2), n)
    d[5] = np.clip(gap_days + geom(rng, 0.5, n), 0, 819 + x)
    dok[5] = (pos > 0) & ~chance(rng, np.where(nonw, 0.6, 0.45), n)
    for k, miss in ((6, 0.6), (7, 0.75), (12, 0.62), (13, 0.66), (14, 0.6)):
        d[k] = np.clip(geom(rng, 0.85, n, cap=200), 0, 870)
        dok[k] = nonw & ~chance(rng, miss, n)
    c["D8_day"] = np.clip(day - c_c, 0, 1707 + x)
    dok[8] = nonw & ~chance(rng, 0.5, n)
    d[10] = np.clip(day - c_c, 0, 876 + x)
    dok[10] = ~chance(rng, np.where(prod == PRODUCT_C, 0.6, 0.02), n)
    d[11] = np.clip(day - e_c, 0, 670 + x)
    d[15] = np.clip(day - e_c + geom(rng, 0.6, n), 0, 879 + x)
    dok[15] = ~chance(rng, np.where(prod == PRODUCT_C, 0.6, 0.03), n)
    for k, v in d.items():
        c[f"D{k}"] = v
    for k, v in dok.items():
        c[f"D{k}_ok"] = v
    return d[1]


def _match_flags(c: dict, r: _Rows) -> np.ndarray:
    """M1..M9: positions in the contract's domains (TF, M4_LABELS); returns the label's term M4 == M2."""
    rng, n, prod, active = r.rng, r.n, r.prod, r.active
    m = {}
    mok = {}
    w_rows = prod == PRODUCT_W
    mask13 = w_rows & ~chance(rng, 0.2, n)
    for k, p_t in ((1, 0.9999), (2, 0.9), (3, 0.8)):
        m[k] = np.where(chance(rng, p_t, n), T, F)
        mok[k] = mask13
    m[4] = np.where(prod == PRODUCT_C, cat(rng, M4_SHARE_C, n), cat(rng, M4_SHARE_OTHER, n))
    m[4] = np.where(active & chance(rng, 0.4, n), M4_M2, m[4])
    is_c = prod == PRODUCT_C
    mok[4] = np.where(is_c, ~chance(rng, 0.15, n), np.where(w_rows, ~chance(rng, 0.45, n), chance(rng, 0.2, n)))
    m[5] = np.where(chance(rng, 0.45, n), T, F)
    mok[5] = w_rows & ~chance(rng, 0.45, n)
    m[6] = np.where(chance(rng, np.where(active, 0.25, 0.47), n), T, F)
    mok[6] = w_rows & ~chance(rng, 0.05, n)
    mask79 = w_rows & ~chance(rng, 0.62, n)
    for k, p_t in ((7, 0.15), (8, 0.35), (9, 0.85)):
        m[k] = np.where(chance(rng, p_t, n), T, F)
        mok[k] = mask79
    for k, v in m.items():
        c[f"M{k}"] = v
        c[f"M{k}_ok"] = mok[k]
    return mok[4] & (m[4] == M4_M2)


def _identity(w: World, r: _Rows, cl: _Clients) -> tuple[np.ndarray, np.ndarray]:
    """Which rows have an identity row (exactly the documented share, non-W rows only), device, proxy."""
    rng, n, ntr, active, c, sz = r.rng, r.n, r.ntr, r.active, w.cols, w.sizes
    ident = np.zeros(n, dtype=bool)
    for name, lo, hi, want in (("train", 0, ntr, sz.train_identity), ("test", ntr, n, sz.test_identity)):
        cand = lo + np.flatnonzero(r.nonw[lo:hi])
        pick = np.sort(rng.choice(cand, size=min(want, len(cand)), replace=False))
        ident[pick] = True
        w.identity_rows[name] = pick
    c["ident"] = ident
    c["device"] = cl.device_c[cl.client]
    c["devinfo_ok"] = ~cl.devinfo_missing_c[cl.client]
    proxy = ident & chance(rng, np.where(active, 0.25, 0.03), n)
    c["proxy"] = proxy
    c["proxy_kind"] = cat(rng, r.batch.proxy_share, n)
    c["id15_new"] = chance(rng, np.where(active, 0.6, 0.12), n)
    return ident, proxy


def _label(w: World, r: _Rows, amount: dict, c1, d1, m4_is_m2, ident, proxy) -> None:
    """The planted label: the true probability (b0 solved for a 3.5 % train rate), isFraud, the oracle AUCs."""
    c, prod, tfrac, ntr = w.cols, r.prod, r.tfrac, r.ntr
    s = PRODUCT_EFFECT[prod] + np.where(prod == PRODUCT_H, H_DRIFT * (1.0 - tfrac), 0.0)
    s = s + 0.6 * (c["card6"] == CARD6_CREDIT) + r.batch.email_effect[c["pmail"]]
    s = s + np.where(np.isin(c["pmail"], DRIFT_EMAILS), EMAIL_DRIFT * tfrac, 0.0)
    s = s + 0.8 * amount["mismatch"] + 0.4 * (np.log(amount["amt"]) - 4.3) + 0.5 * amount["three_dec"]
    s = s + r.batch.hour_effect[r.hour]
    s = s + 0.5 * (d1 == 0) + 0.3 * np.log(c1) + 0.4 * m4_is_m2
    s = s + np.where(ident, DEVICE_EFFECT[c["device"]], 0.0) + 1.2 * proxy
    s = FEATURE_SCALE * s + ACTIVE_EFFECT * r.active
    lo_b, hi_b = -20.0, 5.0
    for _ in range(60):
        mid = (lo_b + hi_b) / 2
        if _sigmoid(mid + s[:ntr]).mean() > FRAUD_RATE:
            hi_b = mid
        else:
            lo_b = mid
    p = _sigmoid((lo_b + hi_b) / 2 + s)
    y = r.rng.random(r.n) < p
    c["p"] = p
    c["y"] = y
    w.oracle_auc = auc(p[:ntr], y[:ntr])
    cut = int(ntr * 0.8)
    w.oracle_auc_last20pct = auc(p[cut:ntr], y[cut:ntr])
    w.fraud_rate = float(y[:ntr].mean())


def _compact(cols: dict) -> None:
    """Downcast the integer columns in place (keeps the world at a few hundred MB at full scale)."""
    for key, v in cols.items():
        if v.dtype.kind == "i" and len(v):
            lo, hi = int(v.min()), int(v.max())
            if -(2**15) <= lo and hi < 2**15:
                cols[key] = v.astype(np.int16)
            elif -(2**31) <= lo and hi < 2**31:
                cols[key] = v.astype(np.int32)
