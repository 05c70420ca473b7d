"""Request bodies of the scoring service's ``POST /predict``, checked against the dataset contract.

A body is one JSON object (one transaction) or a JSON array of objects (a batch), with the contract's column names
of the test tables: ``test_transaction`` and ``test_identity`` (``TransactionID`` once, identity fields optional,
``isFraud`` unknown). The rules are ``ieee_contract``'s, the same ones ingestion checks: each column's kind
(strict: ``"12"`` or ``1.5`` is not an integer, ``3`` is not a string, a JSON integer is a number), whether it may
be empty (``null`` or absent), its domain (``isin``, ``gt``/``ge``/``le``, ``pattern``).

The contract is rendered once into a pydantic ``TypedDict`` (as ``ieee_schema`` renders it as pandera schemas):
pydantic-core parses and validates the raw bytes in one pass, and a valid row comes out as a plain ``dict`` of the
fields the client sent, ready for ``FeatureState.transform_records``. Every problem is reported (up to
``MAX_PROBLEMS``) as ``{"row", "field", "rule"}`` with the rule worded from the contract.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json
from typing_extensions import Required, TypedDict  # pydantic's own dependency; needed for TypedDict < 3.12

from . import ieee_contract as C

MAX_PROBLEMS = 50
_TRANSACTION = C.BY_NAME["test_transaction"]
_IDENTITY = C.BY_NAME["test_identity"]
_COLUMNS: dict[str, C.Col] = {c.name: c for c in _TRANSACTION.columns}
_COLUMNS.update({c.name: c for c in _IDENTITY.columns if c.name != C.KEY})

INPUT_COLUMNS: tuple[str, ...] = tuple(_COLUMNS)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c.name for c in _TRANSACTION.columns if not c.nullable)


class InputError(Exception):
    """A request body the service refuses: ``status`` is the HTTP status, ``problems`` the per-field findings."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


_PY_TYPES = {"int": int, "float": float, "str": str}


def _field_type(col: C.Col) -> Any:
    """The pydantic type of one contract column: kind, domain, and Optional when it may be empty."""
    if col.isin is not None:
        base: Any = Literal[tuple(col.isin)]  # type: ignore[valid-type]
    else:
        constraints = {k: getattr(col, k) for k in ("gt", "ge", "le", "pattern") if getattr(col, k) is not None}
        if col.kind == "float":
            constraints["allow_inf_nan"] = False  # JSON has no NaN: a missing value is null
        base = Annotated[_PY_TYPES[col.kind], Field(**constraints)] if constraints else _PY_TYPES[col.kind]
    if col.nullable:
        return base | None
    return Required[base]


def _row_type() -> type:
    fields = {name: _field_type(col) for name, col in _COLUMNS.items()}
    row = TypedDict("PredictRow", fields, total=False)  # type: ignore[operator]
    row.__pydantic_config__ = ConfigDict(strict=True, extra="forbid")  # type: ignore[attr-defined]
    return row


_ROW = _row_type()
_ONE = TypeAdapter(_ROW)
_MANY = TypeAdapter(list[_ROW])


def _number(x: float | None) -> str:
    return f"{x:g}" if x is not None and math.isfinite(x) else str(x)


def _rule(col: C.Col | None, error_type: str, value: Any) -> str:
    """A readable rule for one pydantic error, worded from the contract's column."""
    if error_type == "extra_forbidden" or col is None:
        return "unknown field"
    if error_type == "missing":
        return "required"
    if value is None:
        return "required, must not be null"
    if error_type == "literal_error":
        return "must be one of " + ", ".join(str(v) for v in col.isin or ())
    if error_type == "greater_than":
        return f"must be greater than {_number(col.gt)}"
    if error_type == "greater_than_equal":
        return f"must be at least {_number(col.ge)}"
    if error_type == "less_than_equal":
        return f"must be at most {_number(col.le)}"
    if error_type == "string_pattern_mismatch":
        return f"must match {col.pattern}"
    if error_type == "finite_number":
        return "must be a finite number"
    return "must be " + {"int": "an integer", "float": "a number", "str": "a string"}[col.kind]


def _problems(err: ValidationError, batch: bool) -> list[dict]:
    """One {row, field, rule} per failing field (pydantic reports each union member: keep the first)."""
    out: list[dict] = []
    seen: set[tuple] = set()
    for e in err.errors(include_url=False):
        loc = e["loc"]
        row = loc[0] if batch and loc and isinstance(loc[0], int) else 0
        rest = loc[1:] if batch and loc and isinstance(loc[0], int) else loc
        if not rest:
            problem = {"row": row, "field": None, "rule": "must be a JSON object"}
        else:
            field = str(rest[0])
            if (row, field) in seen:
                continue
            problem = {"row": row, "field": field, "rule": _rule(_COLUMNS.get(field), e["type"], e.get("input"))}
        seen.add((row, problem["field"]))
        out.append(problem)
        if len(out) >= MAX_PROBLEMS:
            break
    return out


def parse_predict_body(body: bytes, max_rows: int) -> tuple[list[dict], bool]:
    """Validated rows of a ``/predict`` body and whether it was a batch (a JSON array).

    Raises InputError: 400 for a body that is not JSON (or not an object/array), 413 for a batch of more than
    ``max_rows`` rows, 422 for an empty batch or rows that break the contract (every problem listed)."""
    start = body.lstrip()[:1]
    if start not in (b"{", b"["):
        try:
            from_json(body)
        except ValueError as exc:
            raise InputError(400, f"the body is not valid JSON: {exc}") from None
        raise InputError(400, "the body must be a JSON object (one transaction) or an array of objects")
    batch = start == b"["
    try:
        if batch:
            items = from_json(body)
            if not items:
                raise InputError(422, "the batch is empty: send at least one transaction")
            if len(items) > max_rows:
                raise InputError(413, f"the batch has {len(items)} rows, more than the limit of {max_rows}")
            return _MANY.validate_python(items), True
        return [_ONE.validate_json(body)], False
    except ValidationError as err:
        if err.error_count() and err.errors(include_url=False)[0]["type"] == "json_invalid":
            raise InputError(400, f"the body is not valid JSON: {err.errors(include_url=False)[0]['msg']}") from None
        problems = _problems(err, batch)
        raise InputError(422, f"{err.error_count()} problem(s) in the request body", problems) from None
    except ValueError as exc:  # from_json: malformed array
        raise InputError(400, f"the body is not valid JSON: {exc}") from None
