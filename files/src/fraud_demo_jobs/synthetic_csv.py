"""The generator's CSV text: one chunk of rows of one file, in the columns, kinds and domains of the contract.

Every chunk is built column by column through ``ChunkColumns``, which takes the next column from the contract's
``TableSpec`` (``ieee_contract``): a column the contract does not have next, a number written into a string column,
an integer column written with a decimal point (or the reverse), a label outside the column's domain or a value
range outside its bounds raises ``ContractMismatch`` before a byte is written. Float columns are written with a
decimal point (``117.0``, ``68.5``) so that any CSV reader infers float64, also in a chunk without missing values.

Numbers become text through dictionary-encoded string tables and pyarrow's CSV writer (no per-cell Python); the
values that are drawn per chunk (the V block, most identity columns) come from a random stream seeded by
``(seed, file, chunk)``, so the output does not depend on thread scheduling.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from . import ieee_contract as S
from .synthetic_model import (
    CARD4,
    CARD6,
    DAY,
    DEVICE_TYPES,
    DEVICES,
    FOUND_LABELS,
    ID15,
    ID15_FOUND,
    ID15_NEW,
    ID15_UNKNOWN,
    IS_FOUND,
    M4_LABELS,
    MATCH,
    MATCH_SHARE,
    NOT_FOUND,
    PRODUCT_W,
    PRODUCTS,
    PROXIES,
    TF_LABELS,
    TRAIN_DT_START,
    V_BINARY,
    V_BLOCKS,
    V_SIGNAL,
    F,
    T,
)
from .synthetic_world import World, cat, chance, geom

_WRITE_OPTIONS = pcsv.WriteOptions(include_header=False, quoting_style="none", batch_size=8192)


class ContractMismatch(Exception):
    """The generator was about to write something the contract (ieee_contract) does not allow: a bug to fix."""


# ------------------------------------------------------------------------------------------- text encoders


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


def _masked(values: np.ndarray, valid: np.ndarray | None, dtype: type) -> pa.Array:
    """``values`` as an Arrow array, null where ``valid`` is False (a validity bitmap over the same buffer)."""
    values = np.ascontiguousarray(values, dtype=dtype)
    if valid is None or valid.all():
        return pa.array(values)
    bits = np.packbits(valid, bitorder="little")
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, len(values), [pa.py_buffer(bits), pa.py_buffer(values)])


def _indices(idx: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    return _masked(idx, valid, np.int32)


def _enc_labels(idx: np.ndarray, valid: np.ndarray | None, labels: tuple) -> pa.Array:
    return pa.DictionaryArray.from_arrays(_indices(idx, valid), _labels(labels))


def _enc_int(values: np.ndarray, valid: np.ndarray | None, lo: int, hi: int, suffix: str) -> pa.Array:
    """Integer-valued column as CSV text: ``"12.0"`` (float columns) or ``"12"`` (int columns, suffix="")."""
    idx = np.clip(values, lo, hi).astype(np.int32) - lo
    return pa.DictionaryArray.from_arrays(_indices(idx, valid), _table(lo, hi, suffix))


def _enc_bigint(values: np.ndarray, valid: np.ndarray | None, suffix: str) -> pa.Array:
    """Integers of any range (IDs, TransactionDT): pyarrow's cast, optionally with a ``.0`` suffix."""
    arr = pc.cast(_masked(values, valid, np.int64), pa.string())
    return pc.binary_join_element_wise(arr, suffix, "") if suffix else arr


def _enc_decimal(units: np.ndarray, valid: np.ndarray | None, decimals: int) -> pa.Array:
    """Non-negative fixed-point numbers given in 10**-decimals units, e.g. 68500 -> "68.5", 29000 -> "29.0"."""
    scale = 10**decimals
    whole = _masked(units // scale, valid, np.int64)
    frac = pa.DictionaryArray.from_arrays(pa.array((units % scale).astype(np.int32)), _frac_table(decimals))
    return pc.binary_join_element_wise(pc.cast(whole, pa.string()), frac.dictionary_decode(), "")


# ------------------------------------------------------------------------------------ checks against the contract


@functools.cache
def _check_labels(table: str, col: S.Col, labels: tuple) -> None:
    """Every label the generator may write into ``col`` is in the column's domain (set or pattern)."""
    bad = [v for v in labels if col.isin is not None and v not in col.isin]
    bad += [v for v in labels if col.pattern is not None and not re.fullmatch(col.pattern, v)]
    if bad:
        raise ContractMismatch(f"{table}.{col.name}: {bad} outside the contract's domain {col.isin or col.pattern}")


def _check_range(table: str, col: S.Col, lo: float, hi: float) -> None:
    """The values lo..hi the generator writes into a numeric column satisfy the column's bounds and domain."""
    ok = (col.ge is None or lo >= col.ge) and (col.gt is None or lo > col.gt) and (col.le is None or hi <= col.le)
    if col.isin is not None:
        ok = ok and lo == int(lo) and all(v in col.isin for v in range(int(lo), int(hi) + 1))
    if not ok:
        raise ContractMismatch(f"{table}.{col.name}: values {lo}..{hi} break the contract's rules {col}")


class ChunkColumns:
    """One chunk's CSV columns, added in the contract's column order; each add checks kind, domain and bounds."""

    def __init__(self, spec: S.TableSpec):
        self.spec = spec
        self.arrays: list[pa.Array] = []

    def expects(self, name: str) -> bool:
        """Whether the contract's next column is ``name`` (the label is in train_transaction only)."""
        pos = len(self.arrays)
        return pos < len(self.spec.columns) and self.spec.columns[pos].name == name

    def _next(self, name: str, kinds: tuple[str, ...], offset: int = 0) -> S.Col:
        pos = len(self.arrays) + offset
        col = self.spec.columns[pos] if pos < len(self.spec.columns) else None
        if col is None or col.name != name:
            has = col.name if col else "no more columns"
            raise ContractMismatch(f"{self.spec.name}: column {pos + 1} written as {name}, the contract has {has}")
        if col.kind not in kinds:
            raise ContractMismatch(f"{self.spec.name}.{name}: the contract's kind is {col.kind}, not {kinds}")
        return col

    def labels(self, name: str, idx: np.ndarray, valid: np.ndarray | None, labels: tuple) -> None:
        """A categorical column: positions ``idx`` into ``labels``, empty where ``valid`` is False."""
        _check_labels(self.spec.name, self._next(name, ("str",)), labels)
        self.arrays.append(_enc_labels(idx, valid, labels))

    def ints(self, name: str, values: np.ndarray, valid: np.ndarray | None, lo: int, hi: int) -> None:
        """An integer-valued column clipped to lo..hi (``12`` in an int column, ``12.0`` in a float one)."""
        col = self._next(name, ("int", "float"))
        _check_range(self.spec.name, col, lo, hi)
        self.arrays.append(_enc_int(values, valid, lo, hi, "" if col.kind == "int" else ".0"))

    def bigints(self, name: str, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Integers of any range (keys, TransactionDT, id_02)."""
        col = self._next(name, ("int", "float"))
        if len(values):
            _check_range(self.spec.name, col, int(values.min()), int(values.max()))
        self.arrays.append(_enc_bigint(values, valid, "" if col.kind == "int" else ".0"))

    def decimals(self, name: str, units: np.ndarray, valid: np.ndarray | None, decimals: int = 3) -> None:
        """A float column given in 10**-decimals units (68500 -> ``68.5``)."""
        col = self._next(name, ("float",))
        units = np.asarray(units, dtype=np.int64)
        if len(units):
            _check_range(self.spec.name, col, units.min() / 10**decimals, units.max() / 10**decimals)
        self.arrays.append(_enc_decimal(units, valid, decimals))

    def constant(self, name: str, text: str, n: int) -> None:
        """A float column holding one value (sample_submission's 0.5)."""
        _check_range(self.spec.name, self._next(name, ("float",)), float(text), float(text))
        self.arrays.append(pa.array([text] * n, type=pa.string()))

    def block(self, names: list[str], arr2d: np.ndarray, valid2d: np.ndarray, lo: int = 0, hi: int = 0) -> None:
        """Float columns encoded in one call (counts clipped to lo..hi when hi > 0, else 10**-3 amounts),
        then sliced into zero-copy columns."""
        ncol, n = arr2d.shape
        flat, vflat = arr2d.reshape(-1), valid2d.reshape(-1)
        span = (lo, hi) if hi else (flat.min() / 1000, flat.max() / 1000)
        for i, name in enumerate(names):
            _check_range(self.spec.name, self._next(name, ("float",), offset=i), *span)
        enc = _enc_int(flat, vflat, lo, hi, ".0") if hi else _enc_decimal(np.asarray(flat, np.int64), vflat, 3)
        self.arrays.extend(enc.slice(i * n, n) for i in range(ncol))

    def csv(self) -> bytes:
        """The chunk as CSV lines (no header), once every column of the contract is there."""
        if len(self.arrays) != len(self.spec.columns):
            missing = self.spec.names[len(self.arrays) :]
            raise ContractMismatch(f"{self.spec.name}: the generator did not write {missing[:5]}")
        table = pa.Table.from_arrays(self.arrays, names=[f"c{i}" for i in range(len(self.arrays))])
        sink = pa.BufferOutputStream()
        pcsv.write_csv(table, sink, write_options=_WRITE_OPTIONS)
        return sink.getvalue()


# ------------------------------------------------------------------------------------------------ the tables


def transaction_chunk(w: World, part: str, lo: int, hi: int, chunk_no: int) -> bytes:
    """Rows lo..hi of ``<part>_transaction.csv``."""
    c = w.cols
    off = 0 if part == "train" else w.sizes.train
    g = slice(off + lo, off + hi)
    rng = w.rng(1 if part == "train" else 2, chunk_no)
    out = ChunkColumns(S.BY_NAME[f"{part}_transaction"])
    out.bigints(S.KEY, c["tid"][g])
    if out.expects(S.LABEL):
        out.ints(S.LABEL, c["y"][g].astype(np.int32), None, 0, 1)
    out.bigints("TransactionDT", c["dt"][g])
    out.decimals("TransactionAmt", c["amt"][g], None)
    out.labels("ProductCD", c["prod"][g], None, PRODUCTS)
    _card_address_email(out, c, g, w.batch.email_names)
    d11_ok = _counts_and_days(out, c, g, rng)
    for k in range(1, 10):
        out.labels(f"M{k}", c[f"M{k}"][g], c[f"M{k}_ok"][g], M4_LABELS if k == 4 else TF_LABELS)
    _v_columns(out, c, g, rng, d11_ok)
    return out.csv()


def _card_address_email(out: ChunkColumns, c: dict, g: slice, labels: tuple) -> None:
    out.ints("card1", c["card1"][g], None, 1000, 18396)
    out.ints("card2", c["card2"][g], c["card2_ok"][g], 100, 600)
    ok346 = c["card346_ok"][g]
    out.ints("card3", c["card3"][g], ok346, 100, 231)
    out.labels("card4", c["card4"][g], ok346, CARD4)
    out.ints("card5", c["card5"][g], c["card5_ok"][g], 100, 237)
    out.labels("card6", c["card6"][g], ok346, CARD6)
    aok = c["addr_ok"][g]
    out.ints("addr1", c["addr1"][g], aok, 100, 540)
    out.ints("addr2", c["addr2"][g], aok, 10, 102)
    out.ints("dist1", c["dist1"][g], c["dist1_ok"][g], 0, 10286)
    out.ints("dist2", c["dist2"][g], c["dist2_ok"][g], 0, 11623)
    for name, key in (("P_emaildomain", "pmail"), ("R_emaildomain", "rmail")):
        idx = c[key][g]  # len(labels) = missing
        out.labels(name, np.minimum(idx, len(labels) - 1), idx < len(labels), labels)


def _counts_and_days(out: ChunkColumns, c: dict, g: slice, rng: np.random.Generator) -> np.ndarray:
    """C1..C14 and D1..D15; returns D11's mask, which V1..V11 share."""
    cblock = np.stack([c[f"C{i}"][g] for i in range(1, 15)])
    out.block([f"C{i}" for i in range(1, 15)], cblock, np.ones_like(cblock, dtype=bool), 0, 3000)
    n = g.stop - g.start
    hours = c["hour"][g].astype(np.int64)
    for k in range(1, 16):
        if k == 8:  # day fractions: D8 days.hours, D9 the hour's fraction alone
            units = c["D8_day"][g].astype(np.int64) * 1_000_000 + (hours * 1_000_000) // 24
            out.decimals("D8", units, c["D8_ok"][g], 6)
        elif k == 9:
            out.decimals("D9", (hours * 1_000_000) // 24, c["D8_ok"][g], 6)
        elif k == 11:
            d11_ok = (c["prod"][g] == PRODUCT_W) & ~(rng.random(n) < 0.28)
            out.ints("D11", c["D11"][g], d11_ok, 0, 879)
        else:
            out.ints(f"D{k}", c[f"D{k}"][g], c[f"D{k}_ok"][g], 0, 879)
    return d11_ok


def _v_columns(out: ChunkColumns, c: dict, g: slice, rng: np.random.Generator, d11_ok: np.ndarray) -> None:
    """V1..V339 in blocks with shared missingness (V_BLOCKS), counts or amounts."""
    n = g.stop - g.start
    prod, active, ident, day = c["prod"][g], c["active"][g], c["ident"][g], c["day"][g]
    level = geom(rng, 0.35, n).astype(np.int16)
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
        names = [f"V{v}" for v in range(first, last + 1)]
        if kind == "count":
            noise = geom(rng, 0.12, (ncol, n))
            vals = np.minimum(level, 6)[None, :] * (noise > 0) + noise
            for vcol in range(first, last + 1):
                if vcol in V_BINARY:
                    vals[vcol - first] = 1
                if vcol in V_SIGNAL:
                    bump = np.where(active, geom(rng, 1 - 1 / (1 + V_SIGNAL[vcol]), n), 0)
                    vals[vcol - first] += bump.astype(vals.dtype)
            out.block(names, vals, valid2d, 0, 255)
        else:
            mult = geom(rng, 0.2, (ncol, n))
            out.block(names, mult.astype(np.int64) * amt[None, :], valid2d)


def identity_chunk(w: World, part: str, lo: int, hi: int, chunk_no: int) -> bytes:
    """Rows lo..hi of ``<part>_identity.csv`` (the contract's id_NN names; the header is written as the file's)."""
    c = w.cols
    rows = w.identity_rows[part][lo:hi]
    rng = w.rng(3 if part == "train" else 4, chunk_no)
    out = ChunkColumns(S.BY_NAME[f"{part}_identity"])
    out.bigints(S.KEY, c["tid"][rows])
    _identity_01_11(out, rng, c["active"][rows])
    _identity_12_29(out, rng, c, rows)
    _identity_device(out, rng, c, rows)
    return out.csv()


def _draws(rng: np.random.Generator, n: int):
    """``ok(p)``: present with probability 1-p; ``ints(lo, hi)``: uniform integers lo..hi."""

    def ok(p_miss: float) -> np.ndarray:
        return ~chance(rng, p_miss, n)

    def ints(lo: int, hi: int) -> np.ndarray:
        return rng.integers(lo, hi + 1, n)

    return ok, ints


def _identity_01_11(out: ChunkColumns, rng: np.random.Generator, active: np.ndarray) -> None:
    n = len(active)
    ok, ints = _draws(rng, n)
    id01 = -5 * np.where(chance(rng, 0.6, n), 0, geom(rng, 0.6, n, 20) + 1) - np.where(active, 10, 0)
    out.ints("id_01", id01, None, -100, 0)
    id02 = np.minimum(np.floor(np.exp(rng.normal(11.3, 1.3, n))), 999595).astype(np.int64) + 1
    out.bigints("id_02", id02, ok(0.02))
    m34 = ok(0.54)
    for i in (3, 4):
        out.ints(f"id_{i:02d}", np.where(chance(rng, 0.95, n), 0, ints(-13, 10)), m34, -13, 10)
    for i in (5, 6):
        out.ints(f"id_{i:02d}", np.where(chance(rng, 0.6, n), 0, ints(-20, 20)), ok(0.05), -20, 20)
    m78 = ok(0.96)
    for i in (7, 8):
        out.ints(f"id_{i:02d}", ints(-100, 50), m78, -100, 50)
    m910 = ok(0.48)
    for i in (9, 10):
        out.ints(f"id_{i:02d}", np.where(chance(rng, 0.9, n), 0, ints(-6, 25)), m910, -6, 25)
    out.decimals("id_11", np.where(chance(rng, 0.9, n), 100000, ints(90000, 99999)), ok(0.02))


def _found(rng: np.random.Generator, p_found: float, n: int) -> np.ndarray:
    return np.where(chance(rng, p_found, n), IS_FOUND, NOT_FOUND)


def _identity_12_29(out: ChunkColumns, rng: np.random.Generator, c: dict, rows: np.ndarray) -> None:
    n = len(rows)
    ok, ints = _draws(rng, n)
    out.labels("id_12", np.where(chance(rng, 0.76, n), NOT_FOUND, IS_FOUND), None, FOUND_LABELS)
    out.ints("id_13", ints(10, 64), ok(0.12), 10, 64)
    zones = np.array([-300, -360, -480, -420, -600, 60, 0, 180, 330, -180])  # UTC offsets in minutes
    id14 = zones[cat(rng, [30, 25, 20, 10, 3, 3, 3, 2, 2, 2], n)]
    out.ints("id_14", id14, ok(0.45), -660, 720)
    id15 = np.where(c["id15_new"][rows], ID15_NEW, np.where(chance(rng, 0.9, n), ID15_FOUND, ID15_UNKNOWN))
    out.labels("id_15", id15, ok(0.02), ID15)
    out.labels("id_16", _found(rng, 0.55, n), ok(0.10), FOUND_LABELS)
    out.ints("id_17", ints(100, 229), ok(0.03), 100, 229)
    out.ints("id_18", ints(10, 29), ok(0.69), 10, 29)
    out.ints("id_19", ints(100, 671), ok(0.03), 100, 671)
    out.ints("id_20", ints(100, 661), ok(0.03), 100, 661)
    m_rare = ok(0.99)
    out.ints("id_21", ints(100, 854), m_rare, 100, 854)
    out.ints("id_22", ints(10, 44), m_rare, 10, 44)
    out.labels("id_23", c["proxy_kind"][rows], c["proxy"][rows], PROXIES)
    out.ints("id_24", ints(11, 26), m_rare, 11, 26)
    out.ints("id_25", ints(100, 548), m_rare, 100, 548)
    out.ints("id_26", ints(100, 216), m_rare, 100, 216)
    out.labels("id_27", _found(rng, 0.9, n), m_rare, FOUND_LABELS)
    m2829 = ok(0.02)
    for i in (28, 29):
        out.labels(f"id_{i}", _found(rng, 0.45, n), m2829, FOUND_LABELS)


@functools.cache
def _device_labels(field: int) -> tuple[tuple, np.ndarray]:
    """Sorted distinct values of one field of DEVICES, and each profile's position among them."""
    labels = tuple(sorted({d[field] for d in DEVICES}))
    return labels, np.array([labels.index(d[field]) for d in DEVICES])


def _identity_device(out: ChunkColumns, rng: np.random.Generator, c: dict, rows: np.ndarray) -> None:
    """id_30..id_38, DeviceType, DeviceInfo: from the client's device profile (DEVICES)."""
    n = len(rows)
    ok, _ = _draws(rng, n)
    dev = c["device"][rows]
    m30 = ok(0.46)
    labels, idx = _device_labels(2)
    out.labels("id_30", idx[dev], m30, labels)
    labels, idx = _device_labels(3)
    out.labels("id_31", idx[dev], ok(0.03), labels)
    out.ints("id_32", np.array([d[4] for d in DEVICES])[dev], m30, 0, 32)
    labels, idx = _device_labels(5)
    out.labels("id_33", idx[dev], m30, labels)
    out.labels("id_34", cat(rng, MATCH_SHARE, n), m30, MATCH)
    m3538 = ok(0.02)
    for i, p_t in zip((35, 36, 37, 38), (0.55, 0.9, 0.5, 0.52), strict=True):
        out.labels(f"id_{i}", np.where(chance(rng, p_t, n), T, F), m3538, TF_LABELS)
    device_type = np.array([DEVICE_TYPES.index(d[0]) for d in DEVICES], dtype=np.int32)
    out.labels("DeviceType", device_type[dev], ok(0.02), DEVICE_TYPES)
    labels, idx = _device_labels(1)
    out.labels("DeviceInfo", idx[dev], c["devinfo_ok"][rows], labels)


def submission_chunk(w: World, part: str, lo: int, hi: int, chunk_no: int) -> bytes:
    """Rows lo..hi of ``sample_submission.csv``: the test keys, each with 0.5."""
    out = ChunkColumns(S.BY_NAME["sample_submission"])
    out.bigints(S.KEY, w.cols["tid"][w.sizes.train + lo : w.sizes.train + hi])
    out.constant(S.LABEL, "0.5", hi - lo)
    return out.csv()
