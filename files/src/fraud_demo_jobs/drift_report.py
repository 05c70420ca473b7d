"""The Evidently side of ``fraud-demo-drift``: run a data-drift report on two samples, and read its result into
our own typed ``DriftResult`` (what the job's summary, metrics and decisions use; Evidently's dict is kept as is
in ``report.json``).

Stattest: PSI (population stability index) for every column, numerical and categorical alike: one fast method
(no per-column test choice that changes with the sample size), a score that reads the same everywhere. The
convention of credit-risk model monitoring: PSI < 0.1 no shift, 0.1-0.2 moderate, >= 0.2 a significant shift.
A column is drifted when its PSI is at or above ``--column-threshold`` (0.2); the dataset has drifted when the
share of drifted columns is at or above ``--threshold`` (0.3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

DEFAULT_STATTEST = "psi"
DEFAULT_COLUMN_THRESHOLD = 0.2
DEFAULT_DRIFT_SHARE = 0.3
# Evidently's metric types (config.type) we read; each ends with the metric's class name.
VALUE_DRIFT = "ValueDrift"
DRIFTED_COUNT = "DriftedColumnsCount"
# Stattests whose score is a distance (drift when it is at or above the threshold); for the others (p-values),
# drift is a score below it.
DISTANCE_TESTS = frozenset({"psi", "wasserstein", "jensenshannon", "kl_div", "hellinger", "ed", "emd"})


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    score: float
    stattest: str
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """The parsed report: every compared column, and the dataset-level drift."""

    columns: list[ColumnDrift]
    drifted_columns: int
    drift_share: float
    threshold: float  # share of drifted columns at/above which the dataset has drifted
    drift_detected: bool
    extras: dict = field(default_factory=dict)

    def top(self, n: int, exclude: tuple[str, ...] = ()) -> list[ColumnDrift]:
        """The ``n`` most drifted columns: drifted first, then by how far past (or short of) their threshold."""
        cols = [c for c in self.columns if c.column not in exclude]
        return sorted(cols, key=lambda c: (not c.drifted, -_severity(c), c.column))[:n]

    def column(self, name: str) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == name), None)

    def as_dict(self) -> dict:
        return {
            "columns": [asdict(c) for c in self.columns],
            "drifted_columns": self.drifted_columns,
            "drift_share": self.drift_share,
            "threshold": self.threshold,
            "drift_detected": self.drift_detected,
        }


def _severity(c: ColumnDrift) -> float:
    if c.stattest in DISTANCE_TESTS:
        return c.score
    return -c.score  # a smaller p-value is a stronger drift


def is_drifted(stattest: str, score: float, threshold: float) -> bool:
    """Evidently's per-column rule: a distance at/above the threshold, a p-value below it."""
    if math.isnan(score):
        return False
    return score >= threshold if stattest in DISTANCE_TESTS else score < threshold


class ReportFormatError(ValueError):
    """Evidently's result does not have the shape this module reads (another Evidently version?)."""


def parse_result(report: dict, threshold: float) -> DriftResult:
    """Our DriftResult from Evidently's ``Snapshot.dict()`` of a DataDriftPreset report: one ``ValueDrift`` per
    column (score, method, threshold) and one ``DriftedColumnsCount`` (count, share). The per-column flags are
    re-derived from each score and its threshold by Evidently's rule, and must agree with its count."""
    columns: list[ColumnDrift] = []
    count = None
    for m in report.get("metrics", []):
        config = m.get("config") or {}
        kind = str(config.get("type", ""))
        if kind.endswith(VALUE_DRIFT):
            method = str(config.get("method") or "")
            col_threshold = config.get("threshold")
            score = m.get("value")
            if not isinstance(score, (int, float)) or col_threshold is None:
                raise ReportFormatError(f"ValueDrift of {config.get('column')!r} has no numeric value or threshold")
            stattest = _stattest_name(method)
            t = float(col_threshold)
            columns.append(
                ColumnDrift(str(config.get("column")), float(score), stattest, t, is_drifted(stattest, float(score), t))
            )
        elif kind.endswith(DRIFTED_COUNT):
            value = m.get("value") or {}
            count = (int(value.get("count")), float(value.get("share")))
    if count is None or not columns:
        raise ReportFormatError("the report has no DriftedColumnsCount or no ValueDrift metrics")
    drifted = sum(c.drifted for c in columns)
    if drifted != count[0]:
        raise ReportFormatError(f"Evidently counts {count[0]} drifted columns, its per-column scores give {drifted}")
    share = drifted / len(columns)
    return DriftResult(columns, drifted, share, threshold, share >= threshold)


def _stattest_name(method: str) -> str:
    """Evidently's method label (e.g. 'PSI', 'Wasserstein distance (normed)') as a stattest id."""
    low = method.lower()
    for name, words in (("psi", "psi"), ("wasserstein", "wasserstein"), ("jensenshannon", "jensen"),
                        ("kl_div", "kullback"), ("hellinger", "hellinger")):  # fmt: skip
        if words in low:
            return name
    return low or "unknown"


@dataclass
class Schema:
    numerical: list[str]
    categorical: list[str]

    def comparable(self, reference: pd.DataFrame, current: pd.DataFrame) -> tuple[Schema, list[str]]:
        """The schema without the columns that have no value in either sample (Evidently refuses an empty
        column: it compares the values present, never the share missing), and those columns' names."""
        empty = [
            c for c in [*self.numerical, *self.categorical] if reference[c].isna().all() or current[c].isna().all()
        ]
        keep = Schema([c for c in self.numerical if c not in empty], [c for c in self.categorical if c not in empty])
        return keep, empty


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: Schema,
    stattest: str = DEFAULT_STATTEST,
    column_threshold: float = DEFAULT_COLUMN_THRESHOLD,
    drift_share: float = DEFAULT_DRIFT_SHARE,
):
    """Evidently's DataDriftPreset over the schema's columns, one stattest and threshold for all; the Snapshot
    (``save_html``, ``dict``)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=schema.numerical, categorical_columns=schema.categorical)
    cols = [*schema.numerical, *schema.categorical]
    ref = Dataset.from_pandas(reference[cols], data_definition=dd)
    cur = Dataset.from_pandas(current[cols], data_definition=dd)
    preset = DataDriftPreset(columns=cols, method=stattest, threshold=column_threshold, drift_share=drift_share)
    return Report([preset]).run(current_data=cur, reference_data=ref)
