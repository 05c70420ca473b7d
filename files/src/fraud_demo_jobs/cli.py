"""Conventions every job's command line follows.

- Flags default to environment variables; an empty variable counts as unset (``env``).
- SIGTERM becomes an exception in the main thread (``sigterm_raises``), so cleanup runs as for Ctrl-C.
- The last line on stdout is one JSON summary; on failure it carries ``failed`` and ``msg``, and stderr's last
  line is ``<prog>: error: <msg>``.
- Exit codes: 0 done, 1 failure, 2 usage, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import JobError, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM; a KeyboardInterrupt so that s3transfer cancels (and aborts) alike."""


@contextlib.contextmanager
def work_dir_locked(work_dir: str, prog: str) -> Iterator[Path]:
    """The job's work directory (created), held for this run: a second run of the same job on it fails at once."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise JobError(f"another {prog} run holds {work}/.lock; wait for it to finish") from e
        yield work


@contextlib.contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises Terminated in the main thread (a job's cleanup then runs as for Ctrl-C);
    the previous handler comes back on the way out. Elsewhere than the main thread, signals are left alone."""
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_sigterm(signum, frame):
            raise Terminated()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred():
    """While inside, SIGTERM and SIGINT are held back, and raised (Terminated / KeyboardInterrupt) on the way out:
    for a few calls that must all happen or none (a registration and its alias). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGTERM in held:
        raise Terminated()
    if signal.SIGINT in held:
        raise KeyboardInterrupt()


def print_summary(summary: dict) -> None:
    """The job's last line on stdout."""
    print(json.dumps(summary), flush=True)


def fail(prog: str, msg: str, summary: dict, code: int) -> int:
    """Report a failure the conventional way; returns the exit code."""
    print(f"{prog}: error: {msg}", file=sys.stderr, flush=True)
    print_summary(summary)
    return code


def _left(stopped: str | Callable[[], str]) -> str:
    return stopped() if callable(stopped) else stopped


def run_job(
    prog: str,
    body: Callable[[], None],
    summary: Callable[[str | None], dict],
    *,
    stopped: str | Callable[[], str],
    on_failure: Callable[[str], None] | None = None,
) -> int:
    """Run ``body`` with SIGTERM raising, map what it raises to a message and an exit code, and end with
    ``summary(msg)`` (msg None on success). ``stopped`` says what an interruption left behind (a callable: asked
    when it happens);
    ``on_failure(msg)`` runs before the failure is printed (e.g. to log it)."""
    msg, code = None, EXIT_OK
    with sigterm_raises():
        try:
            body()
        except UsageError as e:
            msg, code = str(e), EXIT_USAGE
        except JobError as e:
            msg, code = str(e), EXIT_FAILURE
        except Terminated:
            msg, code = f"terminated (SIGTERM); {_left(stopped)}", EXIT_TERMINATED
        except KeyboardInterrupt:
            msg, code = f"interrupted; {_left(stopped)}", EXIT_INTERRUPTED
        except MemoryError:
            msg, code = "out of memory", EXIT_FAILURE
        except Exception as e:  # a bug: keep the traceback, still end with the summary line
            traceback.print_exc()
            msg, code = f"unexpected error: {type(e).__name__}: {e}", EXIT_FAILURE
        if msg is None:
            print_summary(summary(None))
            return EXIT_OK
        if on_failure is not None:
            on_failure(msg)
        return fail(prog, msg, summary(msg), code)
