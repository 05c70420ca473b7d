"""The data contract of the IEEE-CIS fraud dataset: its tables, columns, kinds and rules, as plain data.

One ``TableSpec`` per raw file of Kaggle's ``ieee-fraud-detection.zip``: the columns in order, each column's
kind (``int``, ``float`` or ``str``), whether it may be empty, and its domain (a set of values, a range or a
pattern). The facts come from the dataset's public description (``ieee-cis-dataset.md`` in the design docs):
``TransactionID`` is unique per file, ``isFraud`` is 0 or 1, ``TransactionAmt`` is positive, the categorical
columns take the documented values, and every identity or submission row belongs to a transaction of the
matching transaction file. ``test_identity.csv`` spells the identity columns ``id-01``; they are normalised to
``id_01`` (``normalise``), so train and test share one curated schema; ``raw_header`` gives the file's spelling.

This module is the one source of these facts, and imports nothing heavy: ``ieee_schema`` renders it as pandera
schemas and Arrow types for ``fraud-demo-ingest``; the offline generator (``synthetic_csv``, ``synthetic_model``)
writes its files from it. ``fingerprint`` hashes the contract itself, so any change to it yields a new curated
dataset version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

# Bump when the meaning of the contract changes in a way the fields below do not capture.
SCHEMA_REVISION = 1

KEY = "TransactionID"
LABEL = "isFraud"


@dataclass(frozen=True)
class Col:
    name: str
    kind: str  # int | float | str
    nullable: bool = True
    isin: tuple[str | int, ...] | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str  # curated table name and raw file stem
    columns: tuple[Col, ...]
    references: str | None = None  # table whose keys every row's TransactionID must be one of
    raw_aliases: dict[str, str] = field(default_factory=dict)  # raw header name -> contract name

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def col(self, name: str) -> Col:
        return next(c for c in self.columns if c.name == name)


TF = ("T", "F")
FOUND = ("Found", "NotFound")
NUMERIC_ID = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 17, 18, 19, 20, 21, 22, 24, 25, 26, 32}
ID_DOMAINS: dict[int, dict] = {
    12: {"isin": FOUND},
    15: {"isin": ("New", "Found", "Unknown")},
    16: {"isin": FOUND},
    23: {"isin": ("IP_PROXY:TRANSPARENT", "IP_PROXY:ANONYMOUS", "IP_PROXY:HIDDEN")},
    27: {"isin": FOUND},
    28: {"isin": ("New", "Found", "NotFound")},  # the description says Found/NotFound; Kaggle's file has New
    29: {"isin": FOUND},
    34: {"pattern": r"^match_status:(-1|0|1|2)$"},
    35: {"isin": TF},
    36: {"isin": TF},
    37: {"isin": TF},
    38: {"isin": TF},
}


def _transaction_columns(with_label: bool) -> tuple[Col, ...]:
    cols = [Col(KEY, "int", nullable=False, ge=0)]
    if with_label:
        cols.append(Col(LABEL, "int", nullable=False, isin=(0, 1)))
    cols += [
        Col("TransactionDT", "int", nullable=False, ge=0),
        Col("TransactionAmt", "float", nullable=False, gt=0),
        Col("ProductCD", "str", nullable=False, isin=("W", "C", "R", "H", "S")),
        Col("card1", "int", nullable=False),
        Col("card2", "float"),
        Col("card3", "float"),
        Col("card4", "str", isin=("visa", "mastercard", "american express", "discover")),
        Col("card5", "float"),
        Col("card6", "str", isin=("debit", "credit", "debit or credit", "charge card")),
        Col("addr1", "float"),
        Col("addr2", "float"),
        Col("dist1", "float"),
        Col("dist2", "float"),
        Col("P_emaildomain", "str"),
        Col("R_emaildomain", "str"),
    ]
    cols += [Col(f"C{i}", "float") for i in range(1, 15)]
    cols += [Col(f"D{i}", "float") for i in range(1, 16)]
    cols += [Col(f"M{i}", "str", isin=("M0", "M1", "M2") if i == 4 else TF) for i in range(1, 10)]
    cols += [Col(f"V{i}", "float") for i in range(1, 340)]
    return tuple(cols)


def _identity_columns() -> tuple[Col, ...]:
    cols = [Col(KEY, "int", nullable=False, ge=0)]
    for i in range(1, 39):
        kind = "float" if i in NUMERIC_ID else "str"
        cols.append(Col(f"id_{i:02d}", kind, **ID_DOMAINS.get(i, {})))
    cols += [Col("DeviceType", "str", isin=("desktop", "mobile")), Col("DeviceInfo", "str")]
    return tuple(cols)


_IDENTITY = _identity_columns()
_HYPHENATED = {c.name.replace("id_", "id-"): c.name for c in _IDENTITY if c.name.startswith("id_")}

# Processing order matters: a table is validated after the table it references.
TABLES: tuple[TableSpec, ...] = (
    TableSpec("train_transaction", _transaction_columns(with_label=True)),
    TableSpec("test_transaction", _transaction_columns(with_label=False)),
    TableSpec("train_identity", _IDENTITY, references="train_transaction"),
    TableSpec("test_identity", _IDENTITY, references="test_transaction", raw_aliases=_HYPHENATED),
    TableSpec(
        "sample_submission",
        (Col(KEY, "int", nullable=False, ge=0), Col(LABEL, "float", nullable=False, ge=0, le=1)),
        references="test_transaction",
    ),
)
BY_NAME = {t.name: t for t in TABLES}
BY_FILE = {t.file: t for t in TABLES}


def normalise(spec: TableSpec, raw_names: list[str]) -> list[str]:
    """Raw header names -> contract names (``id-01`` -> ``id_01`` where the table allows it)."""
    return [spec.raw_aliases.get(n, n) for n in raw_names]


def raw_header(spec: TableSpec) -> list[str]:
    """The raw file's header as Kaggle writes it (``id-01`` in test_identity): ``normalise``'s inverse."""
    raw_of = {name: raw for raw, name in spec.raw_aliases.items()}
    return [raw_of.get(n, n) for n in spec.names]


def fingerprint(tables: tuple[TableSpec, ...] = TABLES) -> str:
    """sha256 of the whole contract (every table's columns, types and rules) and SCHEMA_REVISION."""
    doc = {"revision": SCHEMA_REVISION, "tables": [asdict(t) for t in tables]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
