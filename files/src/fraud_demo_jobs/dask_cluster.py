"""The Dask cluster the train stage's Dask backend runs on: connect with mutual TLS, wait for the expected workers,
watch them during training, and read their peak memory.

The scheduler (on the node) and the workers (one per worker node, named by its inventory hostname) are systemd
services the playbooks start (``playbooks/train.yml``), with certificates signed by a CA the playbook keeps on the
controller. A client needs a certificate from that CA too (``Security(require_encryption=True)``): nobody outside
the cluster can submit work or read results.

Imported only by the Dask backend (``--backend dask``), so the local backend never loads Dask.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import JobError

RENEW_HINT = "re-run playbooks/train.yml: it regenerates expired certificates and restarts the cluster's services"
# Words of ssl's errors (after the address is taken out: it says "tls://" itself).
_TLS_WORDS = ("ssl", "certificate", "handshake", "tlsv1", "alert", "wrong version number")
R = TypeVar("R")


def connect(scheduler: str, ca: str, cert: str, key: str, timeout: float = 30.0):
    """A ``distributed.Client`` of the scheduler at ``tls://HOST:PORT``, over mutual TLS (encryption required)."""
    from distributed import Client
    from distributed.security import Security

    if not scheduler.startswith("tls://"):
        raise JobError(f"--dask-scheduler {scheduler!r} must be a tls:// address (the cluster accepts TLS only)")
    files = {"--dask-tls-ca": ca, "--dask-tls-cert": cert, "--dask-tls-key": key}
    missing = [f"{flag} {path}" for flag, path in files.items() if not path or not os.access(path, os.R_OK)]
    if missing:
        raise JobError(f"the Dask TLS files are missing or unreadable: {', '.join(missing)}; {RENEW_HINT}")
    security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    try:
        return Client(scheduler, security=security, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise JobError(_connect_problem(scheduler, ca, cert, key, timeout, e)) from e
    except Exception as e:  # ssl errors surface wrapped differently across Python versions
        if _is_tls(str(e), scheduler):
            raise JobError(_connect_problem(scheduler, ca, cert, key, timeout, e)) from e
        raise


def _connect_problem(scheduler: str, ca: str, cert: str, key: str, timeout: float, e: BaseException) -> str:
    text = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x)
    if _is_tls(text, scheduler):
        return (
            f"the Dask scheduler {scheduler} refused the TLS handshake ({first_line(text)}): the certificates "
            f"(CA {ca}, certificate {cert}, key {key}) are expired or not from the cluster's CA; {RENEW_HINT}"
        )
    return (
        f"the Dask scheduler {scheduler} is unreachable within {timeout:g} s ({first_line(text)}); check that "
        "fraud-demo-dask-scheduler.service runs on the node and the port is open between the nodes, or re-run "
        "playbooks/train.yml"
    )


def _is_tls(text: str, scheduler: str) -> bool:
    plain = text.replace(scheduler, "").lower()
    return any(w in plain for w in _TLS_WORDS)


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def worker_names(client) -> dict[str, str]:
    """Address → name of every worker the scheduler knows now."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: str(info.get("name", addr)) for addr, info in workers.items()}


def wait_for_expected_workers(client, expected: dict[str, str], timeout: float, poll: float = 0.5) -> dict[str, str]:
    """Wait until every expected worker (name → address) has joined; returns address → name of the joined ones.

    Workers are matched by name (``--name`` of their service: the inventory hostname)."""
    deadline = time.monotonic() + timeout
    while True:
        joined = worker_names(client)
        missing = [n for n in expected if n not in joined.values()]
        if not missing:
            return {a: n for a, n in joined.items() if n in expected}
        if time.monotonic() >= deadline:
            names = ", ".join(f"{n} ({expected[n]})" for n in missing)
            raise JobError(
                f"{len(missing)} of {len(expected)} expected Dask workers did not join the scheduler "
                f"{client.scheduler.address} within {timeout:g} s: {names}; check fraud-demo-dask-worker.service "
                "on them (journalctl -u fraud-demo-dask-worker), or re-run playbooks/train.yml"
            )
        time.sleep(poll)


class WorkerWatch:
    """Notices any of the watched workers leaving the cluster (even when its nanny restarts it at once: the
    scheduler's remove-worker event is kept), so a training that would hang or be rescheduled fails instead."""

    TOPIC = "all"
    CHECK_EVERY = 2.0  # seconds between two questions to the scheduler

    def __init__(self, client, workers: dict[str, str]):
        self.client = client
        self.workers = dict(workers)  # address -> name, as at the start
        self.lost: dict[str, str] = {}
        self._ids: dict[str, str] = {}  # address -> the worker process's server id, as at the start
        self._checked = -self.CHECK_EVERY

    def __enter__(self) -> WorkerWatch:
        self.client.subscribe_topic(self.TOPIC, self._on_event)
        # A worker restarted by its nanny or by systemd comes back at the same address (fixed ports), as another
        # process: its server id tells the two apart.
        with contextlib.suppress(Exception):  # without the ids, the events and the addresses still decide
            self._ids = self._scheduler_workers()
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):  # the client may be closed by then (after a loss)
            self.client.unsubscribe_topic(self.TOPIC)

    def _on_event(self, event) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if isinstance(msg, dict) and msg.get("action") == "remove-worker":
            address = msg.get("worker")
            if address in self.workers:
                self.lost[address] = self.workers[address]

    def check(self) -> None:
        """Record watched workers no longer known to the scheduler (a backup for a missed event). Asks the
        scheduler itself, at most every CHECK_EVERY seconds: the client's cached scheduler_info() can lag behind
        or come back partial on a loaded machine, which once failed a healthy training."""
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY:
            return
        self._checked = now
        try:
            current = self._scheduler_workers()
        except Exception:  # the scheduler slow or gone: the events (or the training's own error) decide
            return
        for address, name in self.workers.items():
            if address not in current or current[address] != self._ids.get(address, current[address]):
                self.lost.setdefault(address, name)

    def _scheduler_workers(self) -> dict[str, str]:
        """Address -> server id of every worker the scheduler knows now (asked of the scheduler itself)."""
        return self.client.run_on_scheduler(
            lambda dask_scheduler: {a: ws.server_id for a, ws in dask_scheduler.workers.items()}
        )

    def message(self, what: str) -> str:
        lost = ", ".join(f"{n} ({a})" for a, n in sorted(self.lost.items(), key=lambda x: x[1]))
        return (
            f"Dask worker {lost} left the cluster during {what}: the run is failed and nothing is registered; "
            "check the worker (journalctl -u fraud-demo-dask-worker; out of memory?) and run the job again, it "
            "retrains"
        )


def run_watched(client, watch: WorkerWatch, what: str, fn: Callable[[], R], poll: float = 0.5) -> R:
    """Run ``fn`` (which drives the cluster) in a thread; when a watched worker is lost, restart the surviving
    workers and fail naming the lost one."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target, name=f"dask-{what}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll)
        watch.check()
        if watch.lost:
            message = watch.message(what)  # before the restarts, which the watch would see as losses too
            restart_survivors(client, watch)
            client.close(timeout=10)
            thread.join(10)
            raise JobError(message)
    if "error" in result:
        time.sleep(poll)  # the remove-worker event may trail the error it caused
        watch._checked = -watch.CHECK_EVERY
        watch.check()
        if watch.lost:
            message = watch.message(what)
            restart_survivors(client, watch)
            raise JobError(message) from result["error"]
        raise result["error"]
    return result["value"]


RESTART_TIMEOUT = 60.0


def restart_survivors(client, watch: WorkerWatch) -> dict[str, str]:
    """Restart the watched workers that are still there (their nannies start a new worker process). Cancelling
    the run's futures does not stop a task that is running: a LightGBM task waiting for its lost peer (in the
    ring's set-up it listens for up to LightGBM's socket time-out, two hours) would hold its worker's thread, and
    the next run's tasks would queue behind it. Best effort: the run fails either way."""
    survivors = [a for a in watch.workers if a not in watch.lost]
    if not survivors:
        return {}
    try:
        return client.restart_workers(survivors, timeout=RESTART_TIMEOUT, raise_for_error=False)
    except Exception as e:  # the scheduler gone too: nothing left to free
        return {a: f"not restarted: {first_line(str(e))}" for a in survivors}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_rss(client, workers: dict[str, str]) -> list[dict]:
    """[{"name", "address", "peak_rss_mb"}] of the workers (address → name) still there (None for one gone)."""
    try:
        peaks = client.run(_peak_rss_mb, workers=list(workers), on_error="return")
    except Exception:
        peaks = {}
    out = []
    for address, name in sorted(workers.items(), key=lambda x: x[1]):
        value = peaks.get(address)
        out.append({"name": name, "address": address, "peak_rss_mb": value if isinstance(value, float) else None})
    return out


def client_peak_rss_mb() -> float:
    return _peak_rss_mb()
