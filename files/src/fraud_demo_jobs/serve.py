"""fraud-demo-serve: the scoring service. Serves the registry's <model-name>@<alias> (a native LightGBM Booster on
one thread) over HTTP on loopback, swaps in a new champion without dropping a request, and reports every request.

    POST /predict   one transaction (JSON object) or a batch (array), Authorization: Bearer <token>
    GET  /health    {"status": "ok"|"no_model", "model_version", "reason", "last_reload"} (no token)
    GET  /version   the served model's lineage (no token; 503 when no model is served)

Listens on --host/--port, or on the socket systemd passes (LISTEN_FDS/LISTEN_PID: a .socket unit holds the
listening socket, so a restart refuses no connection). SIGHUP: check the registry now. SIGTERM/SIGINT: stop
accepting, let in-flight requests finish (up to --drain-seconds), flush logs, metrics and the sample, exit 0.
Exit codes: 0 stopped, 1 failure at startup, 2 usage (see cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import uvicorn

from . import layout
from . import tracking as T
from .aws import S3Bucket, make_client
from .checksums import code_version_of
from .cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, env, fail
from .errors import JobError
from .serve_app import AppSettings, create_app
from .serve_model import ModelHolder, TrackingRegistry
from .serve_sink import SERVE_JOB, ServeSink, SinkSettings
from .telemetry import EventLog, add_reporting_flags, warn

SERVE_PROG = "fraud-demo-serve"
SERVED_BY = (
    "serve.py", "serve_app.py", "serve_model.py", "serve_sink.py", "serve_input.py", "model_store.py", "features.py",
    "feature_input.py", "key_history.py",
)  # fmt: skip
TOKEN_ENV = "FRAUD_DEMO_SCORING_TOKEN"  # noqa: S105 (a variable name)
MIN_TOKEN_CHARS = 16
SD_LISTEN_FDS_START = 3  # systemd's first passed descriptor (sd_listen_fds(3))
# After SIGTERM: seconds of serving with the listener closed before uvicorn closes idle connections, so that a
# connection accepted just before (its request not read yet) is served, not reset.
ACCEPTED_GRACE = 0.5
DEFAULT_MODEL_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), SERVE_PROG)


def _env_number(name: str, default: float) -> str:
    return env(f"FRAUD_DEMO_SCORING_{name}", str(default)) or str(default)


def parse_serve_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=SERVE_PROG, description=(__doc__ or "").split("\n\n", 1)[0])
    p.add_argument("--host", default=env("FRAUD_DEMO_SCORING_HOST", "127.0.0.1"), help="address (127.0.0.1)")
    p.add_argument("--port", type=int, default=int(_env_number("PORT", 8080)), help="port (8080)")
    p.add_argument("--tracking-uri", default=env(T.TRACKING_URI_ENV), help=f"MLflow server (env {T.TRACKING_URI_ENV})")
    p.add_argument("--model-name", default=env("FRAUD_DEMO_MODEL_NAME", T.DEFAULT_MODEL_NAME), help="registered model")
    p.add_argument("--alias", default=env("FRAUD_DEMO_SCORING_ALIAS", "champion"), help="alias served (champion)")
    p.add_argument("--bucket", default=env("FRAUD_DEMO_BUCKET"), help="data-lake bucket for the inference sample")
    p.add_argument("--dataset", default=layout.default_dataset(), help=f"dataset name ({layout.DEFAULT_DATASET})")
    p.add_argument(
        "--model-dir",
        default=env("FRAUD_DEMO_SCORING_MODEL_DIR", DEFAULT_MODEL_DIR),
        help=f"local cache of downloaded versions (env FRAUD_DEMO_SCORING_MODEL_DIR; {DEFAULT_MODEL_DIR})",
    )
    p.add_argument(
        "--token-file", default=env("FRAUD_DEMO_SCORING_TOKEN_FILE"), help=f"bearer token file (or env {TOKEN_ENV})"
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        default=(env("FRAUD_DEMO_SCORING_AUTH") or "").lower() == "off",
        help="serve /predict without a token (env FRAUD_DEMO_SCORING_AUTH=off; sandbox only)",
    )
    p.add_argument("--max-body-bytes", type=int, default=int(_env_number("MAX_BODY_BYTES", 1048576)))
    p.add_argument("--max-batch-rows", type=int, default=int(_env_number("MAX_BATCH_ROWS", 1000)))
    p.add_argument(
        "--reload-interval",
        type=float,
        default=float(_env_number("RELOAD_INTERVAL", 30)),
        help="seconds between registry checks, 0: only on SIGHUP (30)",
    )
    p.add_argument("--sample-rate", type=float, default=float(_env_number("SAMPLE_RATE", 0.01)), help="0..1 (0.01)")
    p.add_argument("--sample-flush-seconds", type=float, default=float(_env_number("SAMPLE_FLUSH_SECONDS", 60)))
    p.add_argument("--metrics-interval", type=float, default=float(_env_number("METRICS_INTERVAL", 60)))
    p.add_argument("--drain-seconds", type=int, default=int(_env_number("DRAIN_SECONDS", 20)), help="SIGTERM grace")
    add_reporting_flags(p, None)
    return p.parse_args(argv)


_NAME = re.compile(r"[A-Za-z0-9._-]+")


def usage_problem(a: argparse.Namespace) -> str | None:
    if not a.tracking_uri:
        return f"--tracking-uri (or {T.TRACKING_URI_ENV}) is required: the MLflow server, e.g. http://127.0.0.1:5000"
    for flag, value in (("--model-name", a.model_name), ("--alias", a.alias), ("--dataset", a.dataset)):
        if not _NAME.fullmatch(value or ""):
            return f"{flag} {value!r} is not a plain name (letters, digits, . _ -)"
    checks = (
        ("--port", a.port, 1, 65535),
        ("--max-body-bytes", a.max_body_bytes, 64, 1 << 30),
        ("--max-batch-rows", a.max_batch_rows, 1, 100000),
        ("--reload-interval", a.reload_interval, 0, 86400),
        ("--sample-rate", a.sample_rate, 0, 1),
        ("--sample-flush-seconds", a.sample_flush_seconds, 1, 86400),
        ("--metrics-interval", a.metrics_interval, 1, 86400),
        ("--drain-seconds", a.drain_seconds, 0, 3600),
    )
    for flag, value, low, high in checks:
        if not low <= value <= high:
            return f"{flag} {value} is outside {low}..{high}"
    if a.sample_rate > 0 and not a.bucket:
        return "--sample-rate > 0 needs --bucket (or FRAUD_DEMO_BUCKET) for its s3://<bucket>/inference/"
    return None


def read_token(a: argparse.Namespace) -> str | None:
    """The bearer token (env first, then --token-file); None only with --no-auth. JobError naming the fix."""
    if a.no_auth:
        return None
    token = env(TOKEN_ENV)
    if token is None and a.token_file:
        try:
            st = os.stat(a.token_file)
            with open(a.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise JobError(f"cannot read the token file {a.token_file}: {e}") from e
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warn(SERVE_PROG, f"{a.token_file} is readable by others than its owner: chmod 0600 it")
    if not token:
        raise JobError(
            f"no bearer token: set {TOKEN_ENV} or --token-file (FRAUD_DEMO_SCORING_TOKEN_FILE), or pass --no-auth "
            "(FRAUD_DEMO_SCORING_AUTH=off) to serve without one"
        )
    if len(token) < MIN_TOKEN_CHARS or not token.isascii() or not token.isprintable() or " " in token:
        raise JobError(
            f"the bearer token must be at least {MIN_TOKEN_CHARS} printable ASCII characters without spaces "
            "(e.g. openssl rand -hex 24)"
        )
    return token


def listen_socket() -> socket.socket | None:
    """The listening socket systemd passed (socket activation), else None (bind --host/--port)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS") or 0) < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # as sd_listen_fds(1): not for child processes
        os.environ.pop(name, None)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)  # family and type read from the descriptor
    sock.setblocking(False)
    return sock


@dataclass
class _Stopped:
    signal: int | None = None


class DrainingServer(uvicorn.Server):
    """uvicorn's graceful shutdown, preceded by ACCEPTED_GRACE seconds with the listener closed and every response
    saying Connection: close (uvicorn alone closes a connection whose request it has not read yet: a reset)."""

    def __init__(self, config: uvicorn.Config, draining):
        super().__init__(config)
        self.draining = draining

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()
        self.draining.set()
        await asyncio.sleep(ACCEPTED_GRACE)
        await super().shutdown(sockets)


def run_service(a: argparse.Namespace, token: str | None) -> int:
    started = datetime.now(timezone.utc)
    host = socket.gethostname()
    events = EventLog(SERVE_PROG, SERVE_JOB, f"{host}-{started:%Y%m%dT%H%M%SZ}", a.dataset, json_stdout=True)
    if not a.no_cloudwatch:
        try:
            events.connect(a.log_group, a.endpoint_url, a.region, a.bucket or "-")
        except JobError as e:  # the service is worth more than its log shipping: stdout (journald) still has it
            events("sink_warning", msg=f"CloudWatch Logs not connected, logging to stdout only: {e}")
    bucket = S3Bucket(make_client("s3", a.endpoint_url, a.region), a.bucket) if a.bucket else None
    sink = ServeSink(
        SinkSettings(
            dataset=a.dataset,
            namespace=a.metrics_namespace,
            metrics_interval=a.metrics_interval,
            sample_rate=a.sample_rate,
            sample_flush_seconds=a.sample_flush_seconds,
            bucket=a.bucket,
            endpoint_url=a.endpoint_url,
            region=a.region,
            cloudwatch=not a.no_cloudwatch,
        ),
        events,
        bucket,
    )
    registry = TrackingRegistry(a.tracking_uri.rstrip("/"), a.model_name, a.alias, a.model_dir)
    holder = ModelHolder(registry, events, a.reload_interval)
    code_version = code_version_of(SERVED_BY)
    sock = listen_socket()
    where = f"fd {SD_LISTEN_FDS_START} (socket activation)" if sock else f"http://{a.host}:{a.port}"
    events("starting", listen=where, model=f"{a.model_name}@{a.alias}", auth=token is not None, code=code_version)
    # SIGHUP from now on (systemctl reload during the first load must not kill the process: default action)
    signal.signal(signal.SIGHUP, lambda signum, frame: holder.wake())
    holder.reload()  # before accepting: a restart serves the model from its first request (connections queue)
    settings = AppSettings(token, a.max_body_bytes, a.max_batch_rows, code_version)
    app = create_app(holder, sink, settings)
    config = uvicorn.Config(
        app,
        host=a.host,
        port=a.port,
        lifespan="off",
        access_log=False,  # serve_sink logs every request
        log_level="warning",
        # uvicorn's default logging config goes through logging.config.dictConfig, which shuts every existing
        # handler down: the CloudWatch handler then blocked the start for its 60 s flush timeout and dropped
        # every later event ("Received message after logging system shutdown").
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=a.drain_seconds,
    )
    server = DrainingServer(config, settings.draining)
    stopped = _Stopped()

    def on_stop(signum, frame):  # uvicorn re-raises the signal it drained for: end normally instead
        stopped.signal = signum

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    sink.start()
    holder.start()
    events("serving", listen=where, **holder.status())
    t = time.monotonic()
    try:
        server.run(sockets=[sock] if sock else None)
    finally:
        holder.stop()
        events("stopped", signal=stopped.signal, seconds=round(time.monotonic() - t, 1))
        sink.close()
    return EXIT_OK if server.started else EXIT_FAILURE


def serve_main(argv: list[str] | None = None) -> int:
    a = parse_serve_args(argv)
    problem = usage_problem(a)
    summary = {"job": SERVE_JOB, "failed": True}
    if problem:
        return fail(SERVE_PROG, problem, {**summary, "msg": problem}, EXIT_USAGE)
    try:
        token = read_token(a)
    except JobError as e:
        return fail(SERVE_PROG, str(e), {**summary, "msg": str(e)}, EXIT_USAGE)
    return run_service(a, token)


if __name__ == "__main__":
    sys.exit(serve_main())
