"""The promotion gate: does a newly trained model become the ``champion``, or stay a ``challenger``?

Guardrails first (they hold whatever the champion scores: a model trained on corrupted labels fails the AUC floor
even when the champion, re-scored on the same corrupted holdout, is as bad), then the comparison with the champion
re-scored on the same holdout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class GateSettings:
    """--min-auc: the AUC floor every promoted model passes; --min-auc-gain: how much it must beat the champion."""

    min_auc: float = 0.75
    min_auc_gain: float = 0.0

    def validate(self) -> str | None:
        for name, low, high in (("min_auc", 0.0, 1.0), ("min_auc_gain", -1.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"--{name.replace('_', '-')} must be a number between {low:g} and {high:g}, got {value!r}"
            if not low <= value <= high:
                return f"--{name.replace('_', '-')} must be a number between {low:g} and {high:g}, got {value!r}"
        return None


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    alias: str
    reason: str
    candidate_auc: float | None
    champion_auc: float | None
    gain: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    candidate: Mapping | float,
    champion_auc: float | None,
    nan_predictions: int = 0,
    schema_problem: str | None = None,
    settings: GateSettings = GateSettings(),
) -> GateDecision:
    """The gate's decision for a candidate (its holdout metrics dict with ``roc_auc``, or the AUC itself).

    ``champion_auc``: the current champion re-scored on the same holdout (None: there is no champion);
    ``nan_predictions``: how many holdout rows the candidate scored NaN; ``schema_problem``: why the data does not
    match the contract the model was trained for (None: it matches)."""
    auc = candidate.get("roc_auc") if isinstance(candidate, Mapping) else candidate
    auc = float(auc) if auc is not None else None
    champ = float(champion_auc) if champion_auc is not None else None
    gain = (
        auc - champ if auc is not None and champ is not None and math.isfinite(auc) and math.isfinite(champ) else None
    )

    def no(reason: str) -> GateDecision:
        return GateDecision(False, CHALLENGER, reason, auc, champ, gain)

    if schema_problem:
        return no(f"guardrail: the data does not match the contract: {schema_problem}")
    if nan_predictions:
        return no(f"guardrail: the candidate scored {nan_predictions} holdout rows as NaN")
    if auc is None or not math.isfinite(auc):
        return no(f"guardrail: the candidate's holdout AUC is not a number ({auc!r})")
    if auc < settings.min_auc:
        return no(f"guardrail: holdout AUC {auc:.4f} is below the floor min_auc={settings.min_auc:g}")
    if champ is None or not math.isfinite(champ):
        what = "no champion" if champ is None else f"the champion's re-scored AUC is not a number ({champ!r})"
        return GateDecision(
            True, CHAMPION, f"{what}; the candidate passes the guardrails (AUC {auc:.4f})", auc, champ, gain
        )
    assert gain is not None
    # "Beats": strictly better (an equal model is not worth a new champion), and by at least the required gain.
    if gain > 0 and gain >= settings.min_auc_gain:
        reason = (
            f"holdout AUC {auc:.4f} beats the champion's {champ:.4f} by {gain:+.4f} "
            f"(min_auc_gain={settings.min_auc_gain:g})"
        )
        return GateDecision(True, CHAMPION, reason, auc, champ, gain)
    return no(
        f"holdout AUC {auc:.4f} does not beat the champion's {champ:.4f} (gain {gain:+.4f}, "
        f"min_auc_gain={settings.min_auc_gain:g})"
    )
