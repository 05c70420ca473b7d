"""Where the train stage trains: ``--backend local`` (this process, the default) or ``--backend dask`` (a Dask
cluster: a scheduler on the node, workers on the worker nodes; ``fraud_demo_jobs.dask_train``).

The flags, their environment variables and their checks, kept apart from ``train.py`` so that the local backend's
code (and with it the code version of the models it trains) does not depend on the Dask backend's options.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

from .cli import env

LOCAL = "local"
DASK = "dask"
BACKENDS = (LOCAL, DASK)
DEFAULT_DASK_WAIT = 120.0
_WORKER_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class DaskSettings:
    """The cluster a Dask training runs on (``--dask-*``)."""

    scheduler: str
    workers: dict[str, str] = field(default_factory=dict)  # expected workers: name -> address
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    wait_seconds: float = DEFAULT_DASK_WAIT
    lightgbm_port: int = 0  # 0: LightGBM picks free ports (several workers per host, e.g. the sandbox)


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """--backend and the --dask-* flags (each with its FRAUD_DEMO_* variable)."""
    g = p.add_argument_group("backend", "where the model is trained")
    g.add_argument(
        "--backend",
        default=env("FRAUD_DEMO_TRAIN_BACKEND", LOCAL),
        help=f"{LOCAL}: in this process; {DASK}: on the Dask cluster of --dask-scheduler (env "
        f"FRAUD_DEMO_TRAIN_BACKEND; {LOCAL})",
    )
    g.add_argument(
        "--dask-scheduler",
        default=env("FRAUD_DEMO_DASK_SCHEDULER"),
        help="the scheduler, tls://ADDR:PORT (env FRAUD_DEMO_DASK_SCHEDULER)",
    )
    g.add_argument(
        "--dask-workers",
        default=env("FRAUD_DEMO_DASK_WORKERS"),
        help="the expected workers, NAME=ADDR,NAME=ADDR (their --name and address; env FRAUD_DEMO_DASK_WORKERS)",
    )
    for part, text in (("ca", "CA certificate"), ("cert", "this client's certificate"), ("key", "its private key")):
        var = f"FRAUD_DEMO_DASK_TLS_{part.upper()}"
        g.add_argument(f"--dask-tls-{part}", default=env(var), help=f"{text}, PEM (env {var})")
    g.add_argument(
        "--dask-wait",
        type=float,
        default=env("FRAUD_DEMO_DASK_WAIT", str(DEFAULT_DASK_WAIT)),
        help=f"seconds to wait for the expected workers (env FRAUD_DEMO_DASK_WAIT; {DEFAULT_DASK_WAIT:g})",
    )
    g.add_argument(
        "--dask-lightgbm-port",
        type=int,
        default=env("FRAUD_DEMO_DASK_LIGHTGBM_PORT", "0"),
        help="LightGBM's port between the workers, one per host; 0: LightGBM picks free ports (env "
        "FRAUD_DEMO_DASK_LIGHTGBM_PORT; 0)",
    )


def parse_workers(text: str | None) -> dict[str, str] | str:
    """NAME=ADDR,NAME=ADDR → {name: addr}; a str is the problem with it."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, addr = item.partition("=")
        if not sep or not _WORKER_NAME.fullmatch(name) or not addr or name in out:
            return f"--dask-workers item {item!r} is not NAME=ADDR with a unique plain name (letters, digits, . _ -)"
        out[name] = addr
    return out


def backend_settings(args: argparse.Namespace) -> tuple[str, DaskSettings | None, str | None]:
    """(backend, its Dask settings or None, the usage problem or None)."""
    backend = args.backend
    if backend not in BACKENDS:
        return backend, None, f"--backend {backend!r} is not one of {', '.join(BACKENDS)}"
    if backend == LOCAL:
        return backend, None, None
    workers = parse_workers(args.dask_workers)
    if isinstance(workers, str):
        return backend, None, workers
    if not workers:
        return (
            backend,
            None,
            (
                "--backend dask needs at least one worker (--dask-workers NAME=ADDR,...; fraud_demo_worker_count > 0): "
                "provision workers, or train with --backend local"
            ),
        )
    if not args.dask_scheduler:
        return backend, None, "--backend dask needs --dask-scheduler tls://ADDR:PORT (or FRAUD_DEMO_DASK_SCHEDULER)"
    for part in ("ca", "cert", "key"):
        if not getattr(args, f"dask_tls_{part}"):
            return backend, None, f"--backend dask needs --dask-tls-{part} (or FRAUD_DEMO_DASK_TLS_{part.upper()})"
    if not 0 < args.dask_wait <= 3600:
        return backend, None, f"--dask-wait must be between 0 and 3600 seconds, got {args.dask_wait!r}"
    if not 0 <= args.dask_lightgbm_port <= 65535:
        return backend, None, f"--dask-lightgbm-port must be a port number (0-65535), got {args.dask_lightgbm_port!r}"
    dask = DaskSettings(
        scheduler=args.dask_scheduler,
        workers=workers,
        tls_ca=args.dask_tls_ca,
        tls_cert=args.dask_tls_cert,
        tls_key=args.dask_tls_key,
        wait_seconds=args.dask_wait,
        lightgbm_port=args.dask_lightgbm_port,
    )
    return backend, dask, None
