"""The model the scoring service serves, and how a new champion replaces it without dropping a request.

One reference (``ModelHolder.current``) points at an immutable ``Served`` (the loaded model and when it came).
A request reads it once and uses that object to the end, so it is scored wholly by the old or wholly by the new
model. The reload thread (every --reload-interval seconds, and at once on SIGHUP) asks the registry which version
the alias names; when it moved, it loads the new version *beside* the old one, scores a probe row through the
request path (``transform_records`` + ``predict``) and swaps the reference only when the probability is finite
and in [0, 1]. Otherwise the version is refused (logged with the reason), the old one keeps serving, and the
refused version is retried only after a backoff (doubling, up to an hour) or on SIGHUP.

A registry that does not answer, or has no such alias yet, leaves whatever is served in place; ``last_reload``
(shown by ``/health``) says what the last check found.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import numpy as np

from . import model_store as MS
from . import tracking as T
from .errors import JobError
from .telemetry import EventLog

SERVE_THREADS = 1  # LightGBM threads per prediction: one row is 0.08 ms on one thread, OpenMP only adds jitter
MAX_BACKOFF = 3600.0
# A transaction in the contract's format (the test file's first row as publicly quoted, trimmed): the probe that
# a new version must score before it is served. Its time is moved past the model's fitted window at probe time.
PROBE_ROW = {
    "TransactionID": 3663549, "TransactionDT": 18403224, "TransactionAmt": 31.95, "ProductCD": "W",
    "card1": 10409, "card2": 111.0, "card3": 150.0, "card4": "visa", "card5": 226.0, "card6": "debit",
    "addr1": 170.0, "addr2": 87.0, "dist1": 1.0, "P_emaildomain": "gmail.com", "C1": 6.0, "C2": 6.0,
    "C13": 115.0, "C14": 6.0, "D1": 419.0, "M4": None, "M6": "T", "V1": 1.0,
}  # fmt: skip


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry(Protocol):
    """What the holder needs from a model registry."""

    def lookup(self):
        """The ModelVersion the alias names now (None: no such model or alias); JobError when unreachable."""

    def load(self, mv) -> MS.LoadedModel:
        """Load ``mv`` (download + Booster + feature state); JobError on any failure."""


class TrackingRegistry:
    """The MLflow registry: ``<model-name>@<alias>``, versions downloaded under ``<model-dir>/<name>/<version>``."""

    def __init__(self, uri: str, model_name: str, alias: str, model_dir: str):
        self.uri, self.model_name, self.alias = uri, model_name, alias
        self.model_dir = Path(model_dir) / model_name
        self._tr: T.Tracking | None = None

    @property
    def tr(self) -> T.Tracking:
        if self._tr is None:
            self._tr = T.Tracking(self.uri)
        return self._tr

    def lookup(self):
        return MS.find_version(self.tr, self.model_name, alias=self.alias)

    def load(self, mv) -> MS.LoadedModel:
        dst = self.model_dir / str(mv.version)
        shutil.rmtree(dst, ignore_errors=True)  # a fresh download: never a half-written one from before
        dst.mkdir(parents=True, exist_ok=True)
        try:
            return MS.load_version(self.tr, self.model_name, mv, str(dst))
        except OSError as e:
            raise JobError(f"model {self.model_name} v{mv.version}: local file error under {dst}: {e}") from e

    def keep_only(self, version: str) -> None:
        """Remove the downloads of every other version (the served one is in memory; its files stay as a cache)."""
        if self.model_dir.is_dir():
            for d in self.model_dir.iterdir():
                if d.is_dir() and d.name != version:
                    shutil.rmtree(d, ignore_errors=True)


@dataclass(frozen=True)
class Served:
    model: MS.LoadedModel
    loaded_at: str

    @property
    def version(self) -> str:
        return self.model.lineage.model_version

    def predict_records(self, rows: list[dict]) -> np.ndarray:
        """Fraud probabilities of validated rows: the fast one-row feature path, then the Booster on one thread."""
        return self.model.predict_matrix(self.model.state.transform_records(rows), SERVE_THREADS)


@dataclass
class _Refusal:
    reason: str
    attempts: int
    retry_at: float  # time.monotonic()


def probe(model: MS.LoadedModel) -> str | None:
    """None when the model scores the probe row like a served model must; else why not."""
    row = dict(PROBE_ROW, TransactionDT=int(model.state.fitted_dt_max) + 86400)
    try:
        p = Served(model, "").predict_records([row])
    except Exception as e:  # a broken model can fail in any way: that is what the probe is for
        return f"scoring the probe row failed: {type(e).__name__}: {e}"
    if np.shape(p) != (1,):
        return f"scoring the probe row gave shape {np.shape(p)}, not one probability"
    value = float(p[0])
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return f"scoring the probe row gave {value}, not a probability in [0, 1]"
    return None


@dataclass
class ModelHolder:
    """The served model and the reload loop around it."""

    registry: Registry
    events: EventLog
    interval: float  # seconds between registry checks; 0: only on wake() (SIGHUP)
    current: Served | None = None
    last_reload: dict = field(default_factory=lambda: {"at": None, "outcome": "not_checked", "reason": None})
    _refused: dict[str, _Refusal] = field(default_factory=dict)
    _wake: threading.Event = field(default_factory=threading.Event)
    _forced: bool = False
    _stop: bool = False
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)  # one reload at a time

    # ---- what endpoints read ----

    def status(self) -> dict:
        served = self.current
        reason = None
        if served is None:
            reason = self.last_reload.get("reason") or "no model loaded yet"
        return {
            "status": "ok" if served is not None else "no_model",
            "model_version": served.version if served is not None else None,
            "reason": reason,
            "last_reload": dict(self.last_reload),
        }

    # ---- the reload ----

    def reload(self, forced: bool = False) -> dict:
        """Check the registry once and swap when the alias moved; returns the new ``last_reload``."""
        with self._lock:
            t = time.monotonic()
            outcome = self._reload(forced)
            outcome = {"at": now_iso(), **outcome, "seconds": round(time.monotonic() - t, 3)}
            self.last_reload = outcome
            return outcome

    def _reload(self, forced: bool) -> dict:
        served = self.current
        try:
            mv = self.registry.lookup()
        except JobError as e:
            self.events("reload_failed", level=logging.WARNING, reason=str(e), serving=_version(served))
            return {"outcome": "registry_unreachable", "reason": str(e), "version": _version(served)}
        if mv is None:
            reason = f"the registry has no version under alias {getattr(self.registry, 'alias', '?')} yet"
            if served is not None:  # the alias was removed: keep serving what we have
                reason += f"; still serving v{served.version}"
            return {"outcome": "no_alias", "reason": reason, "version": _version(served)}
        version = str(mv.version)
        if served is not None and served.version == version:
            return {"outcome": "unchanged", "reason": None, "version": version}
        refusal = self._refused.get(version)
        if refusal is not None and not forced and time.monotonic() < refusal.retry_at:
            return {"outcome": "refused", "reason": refusal.reason, "version": version}
        return self._load_and_swap(mv, version, served)

    def _load_and_swap(self, mv, version: str, served: Served | None) -> dict:
        try:
            model = self.registry.load(mv)
            problem = probe(model)
        except JobError as e:
            problem = str(e)
        except Exception as e:  # a broken artifact can fail a loader in any way; the old model keeps serving
            problem = f"model {version} could not be loaded: {type(e).__name__}: {e}"
        if problem is not None:
            attempts = self._refused[version].attempts + 1 if version in self._refused else 1
            backoff = min(MAX_BACKOFF, max(self.interval, 30.0) * 2 ** (attempts - 1))
            self._refused[version] = _Refusal(problem, attempts, time.monotonic() + backoff)
            self.events(
                "model_refused",
                level=logging.ERROR,
                version=version,
                reason=problem,
                serving=_version(served),
                attempts=attempts,
                retry_in_seconds=round(backoff),
            )
            return {"outcome": "refused", "reason": problem, "version": version}
        self.current = Served(model, now_iso())  # the swap: one reference, atomic for every reader
        self._refused.pop(version, None)
        self.events("model_swapped", **{"from": _version(served), "to": version}, lineage=model.lineage.as_dict())
        keep_only = getattr(self.registry, "keep_only", None)
        if keep_only is not None:
            keep_only(version)
        return {"outcome": "swapped", "reason": None, "version": version, "from": _version(served)}

    # ---- the thread ----

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve-reload", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check now (SIGHUP); safe to call from a signal handler."""
        self._forced = True
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval if self.interval > 0 else None)
            self._wake.clear()
            if self._stop:
                return
            forced, self._forced = self._forced, False
            try:
                self.reload(forced)
            except Exception as e:  # a bug here must not end the reloads for the life of the process
                self.events("reload_failed", level=logging.ERROR, reason=f"{type(e).__name__}: {e}")


def _version(served: Served | None) -> str | None:
    return served.version if served is not None else None
