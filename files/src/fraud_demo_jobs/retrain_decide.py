"""The retraining loop's decisions (``fraud-demo-retrain``), from the jobs' last-line JSON summaries alone.

Pure functions, no I/O: ``decide`` says whether to train, ``outcome`` what the training came to; both with reasons
written for a person reading the loop's summary or its log.

Train when any of these holds, else there is nothing to do:

- there is no champion yet (the train probe, ``fraud-demo-train --check``, names none);
- new curated data: the version ``curated/<dataset>/latest`` names differs from the champion's dataset version
  (or, in check mode, the ingest step would create/promote a new version);
- drift: the drift job says ``drift_detected`` (drift share at or above its threshold).

After training: ``promoted`` (the gate made the new version champion), ``refused`` (the gate kept the champion;
its reason), ``unchanged`` (a model with this data, code and settings exists: nothing new to learn from).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Ingest actions that make (or, with --check, would make) a new curated version the latest.
NEW_VERSION_ACTIONS = ("created", "promoted", "would_create", "would_promote")
TOP_DRIFTED_NAMED = 3


@dataclass(frozen=True)
class Decision:
    train: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    status: str  # promoted | refused | unchanged
    reasons: list[str]
    model_version: str | None
    champion_after: str | None


def champion_of(probe: dict) -> dict | None:
    """The champion record ({version, run_id, dataset_version}) the train probe reports, or None."""
    champion = probe.get("champion")
    return champion if isinstance(champion, dict) and champion.get("version") else None


def decide(probe: dict, drift: dict | None, ingest: dict | None = None) -> Decision:
    """Whether to train. ``probe``: the summary of ``fraud-demo-train --check`` (the latest curated version and the
    champion); ``drift``: the drift job's summary (None when it did not run: no champion to compare with);
    ``ingest``: the ingest step's summary, if there was one."""
    champion = champion_of(probe)
    latest = probe.get("dataset_version")
    if champion is None:
        return Decision(True, [f"there is no champion yet: train the first model on curated version {latest}"])
    yes: list[str] = []
    no: list[str] = []
    name = f"the champion v{champion['version']}"
    trained_on = champion.get("dataset_version")
    if ingest and ingest.get("action") in ("would_create", "would_promote"):
        yes.append(f"ingest would make curated version {ingest.get('version')} the latest (new data)")
    elif latest != trained_on:
        yes.append(f"new curated data: latest is version {latest}, {name} was trained on {trained_on}")
    else:
        no.append(f"no new curated data: {name} was trained on the latest version {latest}")
    (yes if drift and drift.get("drift_detected") else no).append(_drift_reason(drift))
    return Decision(True, yes) if yes else Decision(False, no)


def _drift_reason(drift: dict | None) -> str:
    if drift is None:
        return "drift was not measured"
    share, threshold = drift.get("drift_share"), drift.get("threshold")
    if share is None:  # e.g. the drift job's --check: it reads, it does not compute
        return f"drift was not computed (drift job {drift.get('status')})"
    cols = f"{drift.get('drifted_columns')} of {drift.get('columns')} columns drifted"
    if drift.get("drift_detected"):
        top = [t.get("column") for t in drift.get("top_drifted") or [] if t.get("drifted")][:TOP_DRIFTED_NAMED]
        named = f"; most: {', '.join(top)}" if top else ""
        return f"drift: share {share:.2f} is at or above the threshold {threshold:g} ({cols}{named})"
    return f"no drift: share {share:.2f} is below the threshold {threshold:g} ({cols})"


def outcome(train: dict) -> Outcome:
    """What a finished ``fraud-demo-train`` run came to, from its summary."""
    version = train.get("model_version")
    champion = (train.get("champion") or {}).get("version")
    reason = train.get("reason") or "no reason recorded"
    if train.get("action") == "unchanged":
        text = (
            f"nothing new to learn from: model v{version} was already trained on curated version "
            f"{train.get('dataset_version')} with this code and these settings (its gate: {reason})"
        )
        return Outcome("unchanged", [text], version, champion)
    if train.get("promoted"):
        return Outcome("promoted", [f"v{version} is the new champion: {reason}"], version, champion)
    kept = f"the champion stays v{champion}" if champion else "there is still no champion"
    return Outcome("refused", [f"the gate refused v{version} ({kept}): {reason}"], version, champion)
