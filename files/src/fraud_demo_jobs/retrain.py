"""One pass of the closed retraining loop (``fraud-demo-retrain``), the same from the systemd timer, the retrain
playbook or a shell:

    lock -> (ingest) -> train probe -> drift -> decide -> (train + gate) -> (wait until served) -> (score)
         -> (the new champion's drift report)

Each step is one of our jobs, run as a subprocess with the inherited environment (plus ``--check`` in check mode);
the loop reads nothing but the last line of its stdout, the job's JSON summary. The argv of each step come from
the ``--steps`` file (written by the role ``retrain_loop``)::

    {"ingest": [argv] | null, "drift": [argv], "train": [argv], "score": [argv] | null}

The *train probe* is the train step with ``--check``: it names the curated version ``latest`` points at and the
champion (with its dataset version) without writing anything. Without a champion the drift step is skipped (there
is nothing to compare). The decision and the outcome are ``retrain_decide``'s.

- Lock (``--lock-file``, fcntl): one loop at a time; a second exits 75 at once naming the holder, or waits up to
  ``--lock-wait`` seconds.
- SIGTERM / SIGINT: forwarded once to the running step (steps run in their own session, so a terminal's Ctrl-C
  reaches them only through the loop), the loop stops after it and exits 143 / 130 naming the step. The train job
  defers signals around its register + alias commit, so a version is registered with its alias or not at all.
- After a promotion, with ``--service-url``: polls ``GET /health`` until the service serves the new champion
  (``served``), at most ``--serve-timeout`` seconds (the service reloads every 30 s).

The last line on stdout is the loop's JSON summary (``status``, ``reasons``, ``champion_before``/``after``, the drift
and train results, ``served``, the steps). Exit 0 when the pass completed (whatever it decided), 1 when a step
failed, 2 on a usage error, 75 when another loop holds the lock, 130/143 when interrupted.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import retrain_decide as D
from .cli import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, env, fail, print_summary

RETRAIN_PROG = "fraud-demo-retrain"
RETRAIN_JOB = "retrain"
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
EXIT_FAILED = 1
STEP_NAMES = ("ingest", "drift", "train", "score")
REQUIRED_STEPS = ("drift", "train")
# What the loop's summary keeps of a drift step's summary.
DRIFT_FIELDS = ("drift_share", "drift_detected", "threshold", "run", "report")
DEFAULT_RETRAIN_WORK_DIR = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), RETRAIN_PROG
)
HEALTH_POLL_SECONDS = 2.0
LOCK_POLL_SECONDS = 0.5
SIGNAL_EXIT = {
    signal.SIGTERM: (EXIT_TERMINATED, "terminated (SIGTERM)"),
    signal.SIGINT: (EXIT_INTERRUPTED, "interrupted"),
}


class LoopError(Exception):
    """Stops the pass: a message for the user and the exit code."""

    def __init__(self, msg: str, code: int = EXIT_FAILED):
        super().__init__(msg)
        self.code = code


@dataclass
class LoopSettings:
    steps: dict[str, list[str] | None]
    threshold: float | None
    lock_file: str
    lock_wait: float
    service_url: str | None
    serve_timeout: float
    check: bool


@dataclass
class LoopState:
    status: str | None = None
    reasons: list[str] = field(default_factory=list)
    champion_before: str | None = None
    champion_after: str | None = None
    drift: dict | None = None
    drift_after: dict | None = None  # after a promotion: the new champion's report on the same current data
    train: dict | None = None
    served: bool | None = None
    steps: list[dict] = field(default_factory=list)
    changed: bool = False
    signal: int | None = None  # the first SIGTERM/SIGINT received
    running: subprocess.Popen | None = None  # the step running now, to forward a signal to
    last_summary: dict | None = None  # the last step's summary, also when it failed or was interrupted
    forwarded: bool = False  # the signal was passed on to a step (once only)


# ------------------------------------------------------------------------------------------------- steps file


def load_steps(path: str) -> dict[str, list[str] | None]:
    """The steps file: ``{"ingest": argv|null, "drift": argv, "train": argv, "score": argv|null}``."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise LoopError(f"cannot read the steps file {path}: {e.strerror or e}", EXIT_USAGE) from e
    except ValueError as e:
        raise LoopError(f"the steps file {path} is not JSON: {e}", EXIT_USAGE) from e
    if not isinstance(doc, dict):
        raise LoopError(f"the steps file {path} must hold a JSON object with keys {list(STEP_NAMES)}", EXIT_USAGE)
    unknown = sorted(set(doc) - set(STEP_NAMES))
    if unknown:
        raise LoopError(f"the steps file {path} has unknown steps {unknown}; known: {list(STEP_NAMES)}", EXIT_USAGE)
    steps: dict[str, list[str] | None] = {}
    for name in STEP_NAMES:
        argv = doc.get(name)
        if argv is None and name not in REQUIRED_STEPS:
            steps[name] = None
            continue
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv)):
            what = "required: a command as a non-empty list of strings" if name in REQUIRED_STEPS else "null or a list"
            raise LoopError(f"the steps file {path}: step {name!r} is {argv!r}; {what}", EXIT_USAGE)
        steps[name] = argv
    return steps


# ------------------------------------------------------------------------------------------------------ lock


class Lock:
    """An exclusive fcntl lock on a file that names its holder ("pid started-at"), held until closed."""

    def __init__(self, path: str, wait: float, stop: Callable[[], LoopError | None]):
        self.path, self.wait, self.stop, self.fd = path, wait, stop, None

    def __enter__(self) -> Lock:
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LoopError(f"cannot open the lock file {self.path}: {e.strerror or e}") from e
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    waited = f" after waiting {self.wait:g} s" if self.wait > 0 else ""
                    raise LoopError(
                        f"another retrain ({holder}) is running{waited}; let it finish, or pass --lock-wait SECONDS "
                        f"to wait for it (lock file {self.path})",
                        EXIT_LOCKED,
                    ) from None
                stopped = self.stop()
                if stopped is not None:
                    os.close(fd)
                    raise stopped from None
                time.sleep(LOCK_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_now()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # the next reader must not name a holder that is gone
            os.close(self.fd)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        pid, started = os.pread(fd, 200, 0).decode().split()[:2]
        return f"pid {pid}, started {started}"
    except (OSError, ValueError):
        return "holder unknown"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------- one step


def run_step(st: LoopState, job: str, argv: list[str], check: bool) -> dict:
    """Run one job; its stdout's last line is its summary. Other stdout lines and all of stderr go to our stderr."""
    if st.signal is not None:
        raise _stopped(st, job, started=False)
    cmd = [*argv, "--check"] if check and "--check" not in argv else list(argv)
    t = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, start_new_session=True)
    except OSError as e:
        st.steps.append({"job": job, "status": "failed", "seconds": 0.0, "rc": None})
        raise LoopError(f"step {job}: cannot run {cmd[0]}: {e.strerror or e}") from e
    st.running = proc
    if st.signal is not None:  # it arrived while the step was being started
        _forward(st)
    try:
        out, _ = proc.communicate()
    finally:
        st.running = None
    seconds = round(time.monotonic() - t, 3)
    lines = [line for line in out.splitlines() if line.strip()]
    for line in lines[:-1]:
        print(f"[{job}] {line}", file=sys.stderr, flush=True)
    summary = st.last_summary = _last_json(lines)
    status = (summary or {}).get("status") or (summary or {}).get("action") or ("ok" if proc.returncode == 0 else None)
    if proc.returncode != 0 or summary is None or summary.get("failed"):
        status = "failed"
    st.steps.append({"job": job, "status": status, "seconds": seconds, "rc": proc.returncode})
    if st.signal is not None and status == "failed":
        raise _stopped(st, job, started=True, summary=summary)
    if summary is None:
        raise LoopError(f"step {job} ({cmd[0]}) exited {proc.returncode} without a JSON summary as its last line")
    if status == "failed":
        msg = summary.get("msg") or f"exit status {proc.returncode}"
        raise LoopError(f"step {job} failed: {msg}")
    return summary


def _last_json(lines: list[str]) -> dict | None:
    if not lines:
        return None
    try:
        doc = json.loads(lines[-1])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _stopped(st: LoopState, job: str, started: bool, summary: dict | None = None) -> LoopError:
    """The error that ends an interrupted pass (a step that completed before the signal keeps its result)."""
    code, what = SIGNAL_EXIT[st.signal]
    if started:
        where = f"during step {job}"
        if summary and summary.get("msg"):
            where += f" ({summary['msg']})"
    else:
        where = f"before step {job}"
    return LoopError(f"{what} {where}; the next run starts again from the top", code)


def _interrupted_waiting(st: LoopState) -> LoopError:
    code, what = SIGNAL_EXIT[st.signal]
    return LoopError(f"{what} while waiting for the lock of another retrain; nothing was run", code)


def _on_signal(st: LoopState):
    def handler(signum, frame) -> None:
        if st.signal is None:
            st.signal = signum
            _forward(st)

    return handler


def _forward(st: LoopState) -> None:
    """Pass the signal on to the running step, once: a second one would interrupt the step's own cleanup."""
    if not st.forwarded and st.running is not None and st.running.poll() is None:
        st.forwarded = True
        st.running.send_signal(st.signal)


# -------------------------------------------------------------------------------------------------- the loop


def run_loop(s: LoopSettings, st: LoopState) -> None:
    if s.steps["ingest"]:
        ingest = run_step(st, "ingest", s.steps["ingest"], s.check)
        st.changed |= bool(ingest.get("changed"))
    else:
        ingest = None
    probe = run_step(st, "train-check", s.steps["train"], True)
    champion = D.champion_of(probe)
    st.champion_before = st.champion_after = champion["version"] if champion else None
    drift = None
    drift_argv = s.steps["drift"] + ([f"--threshold={s.threshold:g}"] if s.threshold is not None else [])
    if champion is not None:
        drift = run_step(st, "drift", drift_argv, s.check)
        st.changed |= bool(drift.get("changed"))
        st.drift = {k: drift.get(k) for k in DRIFT_FIELDS}
    decision = D.decide(probe, drift, ingest)
    st.reasons = list(decision.reasons)
    if not decision.train:
        st.status = "would_do_nothing" if s.check else "nothing_to_do"
        return
    if s.check:
        st.status, st.changed = "would_train", True
        return
    try:
        train = run_step(st, "train", s.steps["train"], False)
    except LoopError:
        # a signal held back through the train job's commit lands after it: the version is registered, say so
        if (st.last_summary or {}).get("action") == "trained":
            _record_training(st, st.last_summary)
        raise
    result = _record_training(st, train)
    if result.status != "promoted":
        return
    if s.service_url:
        st.served = wait_served(st, s.service_url, result.model_version, s.serve_timeout)
    if s.steps["score"]:
        score = run_step(st, "score", s.steps["score"], False)
        st.changed |= bool(score.get("changed"))
    # The new champion's own report on the same current data: the DriftShare metric the drift alarm watches now
    # describes the model that serves, and the next pass finds this report (nothing to do) instead of making it.
    # A failure here is reported, not fatal: the promotion stands, and the next pass makes the report.
    try:
        after = run_step(st, "drift-after", drift_argv, False)
    except LoopError as e:
        if st.signal is not None:
            raise
        st.reasons.append(f"the new champion's drift report was not made: {e}")
        return
    st.changed |= bool(after.get("changed"))
    st.drift_after = {k: after.get(k) for k in DRIFT_FIELDS}


def _record_training(st: LoopState, train: dict) -> D.Outcome:
    result = D.outcome(train)
    st.changed |= bool(train.get("changed"))
    st.status = result.status
    st.reasons += result.reasons
    st.champion_after = result.champion_after
    st.train = {"model_version": result.model_version, "action": train.get("action"), "decision": train.get("decision")}
    return result


def wait_served(st: LoopState, url: str, version: str | None, timeout: float) -> bool:
    """Poll GET <url>/health until it reports ``model_version == version``; False (with a reason) on timeout."""
    t = time.monotonic()
    deadline = t + timeout
    last = "no answer yet"
    health = url.rstrip("/") + "/health"
    while True:
        try:
            with urllib.request.urlopen(health, timeout=5) as resp:  # noqa: S310 (an http URL we are given)
                served = json.loads(resp.read() or b"{}").get("model_version")
            if str(served) == str(version):
                st.steps.append(
                    {"job": "serve", "status": "served", "seconds": round(time.monotonic() - t, 3), "rc": 0}
                )
                st.reasons.append(f"the service at {url} serves v{version}")
                return True
            last = f"it serves v{served}" if served is not None else "it serves no model"
        except (OSError, ValueError) as e:
            last = f"GET {health} failed: {getattr(e, 'reason', None) or e}"
        if st.signal is not None:
            raise _stopped(st, "serve", started=True)
        if time.monotonic() >= deadline:
            st.steps.append(
                {"job": "serve", "status": "timeout", "seconds": round(time.monotonic() - t, 3), "rc": None}
            )
            st.reasons.append(
                f"the service at {url} did not serve v{version} within {timeout:g} s ({last}); it reloads the "
                "champion on its own schedule: check its /health"
            )
            return False
        time.sleep(min(HEALTH_POLL_SECONDS, max(deadline - time.monotonic(), 0.05)))


def _serve_step(st: LoopState, status: str, started: float, rc: int | None) -> None:
    st.steps.append({"job": "serve", "status": status, "seconds": round(time.monotonic() - started, 3), "rc": rc})


def loop_summary(st: LoopState, seconds: float, msg: str | None = None) -> dict:
    out = {
        "job": RETRAIN_JOB,
        "changed": st.changed,
        "status": st.status,
        "reasons": st.reasons,
        "champion_before": st.champion_before,
        "champion_after": st.champion_after,
        "drift": st.drift,
        "drift_after": st.drift_after,
        "train": st.train,
        "served": st.served,
        "steps": st.steps,
        "seconds": round(seconds, 3),
    }
    if msg is not None:
        out["status"] = "interrupted" if st.signal is not None else "failed"
        out["failed"] = True
        out["msg"] = msg
    return out


# ------------------------------------------------------------------------------------------------------- CLI


def parse_retrain_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=RETRAIN_PROG,
        description="One pass of the retraining loop: (ingest) -> drift -> decide -> (train + gate) -> (wait until "
        "the service serves the new champion) -> (score). Prints one JSON summary line last.",
        epilog="See python -m pydoc fraud_demo_jobs.retrain (and .retrain_decide) for the rules.",
    )
    p.add_argument(
        "--steps",
        default=env("FRAUD_DEMO_RETRAIN_STEPS"),
        help='JSON file {"ingest": argv|null, "drift": argv, "train": argv, "score": argv|null} '
        "(env FRAUD_DEMO_RETRAIN_STEPS)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="drift share at/above which the drift job reports drift (passed to it; default: the drift job's own)",
    )
    p.add_argument(
        "--work-dir",
        default=env("FRAUD_DEMO_RETRAIN_WORK_DIR", DEFAULT_RETRAIN_WORK_DIR),
        help=f"where the lock file lives (env FRAUD_DEMO_RETRAIN_WORK_DIR; {DEFAULT_RETRAIN_WORK_DIR})",
    )
    p.add_argument("--lock-file", default=None, help="the lock (default <work-dir>/retrain.lock)")
    p.add_argument(
        "--lock-wait", type=float, default=0.0, help="seconds to wait for another loop to finish (0: exit 75 at once)"
    )
    p.add_argument(
        "--service-url",
        default=env("FRAUD_DEMO_SCORING_URL"),
        help="scoring service base URL; after a promotion wait until its /health serves the new champion "
        "(env FRAUD_DEMO_SCORING_URL; unset: do not wait)",
    )
    p.add_argument(
        "--serve-timeout", type=float, default=120.0, help="seconds to wait for the service to serve it (120)"
    )
    p.add_argument("--check", action="store_true", help="run every step with --check: decide, write nothing")
    return p.parse_args(argv)


def _usage_problem(args: argparse.Namespace) -> str | None:
    if not args.steps:
        return "--steps FILE (or FRAUD_DEMO_RETRAIN_STEPS) is required: the JSON file naming each step's command"
    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        return f"--threshold is a share of drifted columns, above 0 and at most 1, got {args.threshold:g}"
    for flag, value in (("--lock-wait", args.lock_wait), ("--serve-timeout", args.serve_timeout)):
        if not 0.0 <= value <= 86400.0:
            return f"{flag} must be between 0 and 86400 seconds, got {value:g}"
    if args.service_url and not args.service_url.startswith(("http://", "https://")):
        return f"--service-url {args.service_url!r} must be an http:// or https:// URL"
    return None


def retrain_main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_retrain_args(argv)
    st = LoopState()
    problem = _usage_problem(args)
    if problem:
        return fail(RETRAIN_PROG, problem, loop_summary(st, time.monotonic() - t0, problem), EXIT_USAGE)
    handler = _on_signal(st)
    previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_EXIT}
    try:
        s = LoopSettings(
            steps=load_steps(args.steps),
            threshold=args.threshold,
            lock_file=args.lock_file or os.path.join(args.work_dir, "retrain.lock"),
            lock_wait=args.lock_wait,
            service_url=args.service_url.rstrip("/") if args.service_url else None,
            serve_timeout=args.serve_timeout,
            check=args.check,
        )
        stop = lambda: _interrupted_waiting(st) if st.signal is not None else None  # noqa: E731
        with Lock(s.lock_file, s.lock_wait, stop):
            run_loop(s, st)
    except LoopError as e:
        return fail(RETRAIN_PROG, str(e), loop_summary(st, time.monotonic() - t0, str(e)), e.code)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    print_summary(loop_summary(st, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(retrain_main())
