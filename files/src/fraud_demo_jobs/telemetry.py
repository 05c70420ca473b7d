"""What a job tells the outside world while it runs: JSON events to CloudWatch Logs (watchtower) and text to
stderr, CloudWatch metrics, warnings.

    log group   --log-group (FRAUD_DEMO_LOG_GROUP), default fraud-demo-logs; it must exist (provision creates it,
                a job never does), one stream per run: <job>/<run-id>
    metrics     --metrics-namespace (FRAUD_DEMO_METRICS_NAMESPACE), default FraudDemo; dimensions Dataset, Stage
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable

import watchtower

from .aws import AWS_ERRORS, explain, make_client
from .cli import env, run_job
from .errors import JobError

DEFAULT_LOG_GROUP = "fraud-demo-logs"
LOG_GROUP_ENV = "FRAUD_DEMO_LOG_GROUP"
DEFAULT_NAMESPACE = "FraudDemo"
NAMESPACE_ENV = "FRAUD_DEMO_METRICS_NAMESPACE"
SEND_INTERVAL = 5  # seconds between watchtower's batches


def warn(prog: str, msg: str) -> None:
    """A warning line on stderr, labelled with the job that has it."""
    print(f"{prog}: warning: {msg}", file=sys.stderr)


def stream_prefix(job: str) -> str:
    """The prefix of every log stream of ``job`` (controller scripts look up a job's newest run with it)."""
    return f"{job}/"


class _TextFormatter(logging.Formatter):
    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        if isinstance(msg, dict):
            fields = " ".join(f"{k}={v}" for k, v in msg.items() if k not in ("event", "job", "run_id", "dataset"))
            return f"{self.prog}: {msg.get('event')}: {fields}"
        return f"{self.prog}: {record.getMessage()}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        return json.dumps(msg, default=str) if isinstance(msg, dict) else json.dumps({"msg": record.getMessage()})


class EventLog:
    """Structured events of one run: JSON to CloudWatch (once connected), text to stderr -- or, for a service
    (``json_stdout``), the same JSON lines to stdout (journald).

    ``events("validated", table=..., rows_in=...)`` logs ``{"job", "run_id", "dataset", "event", ...}``."""

    def __init__(self, prog: str, job: str, run_id: str, dataset: str, json_stdout: bool = False):
        self.prog, self.job, self.run_id = prog, job, run_id
        self.base = {"job": job, "run_id": run_id, "dataset": dataset}
        self.logger = logging.getLogger(f"fraud_demo.{job}.{run_id}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        console = logging.StreamHandler(sys.stdout if json_stdout else sys.stderr)
        console.setFormatter(_JsonFormatter() if json_stdout else _TextFormatter(prog))
        self.logger.addHandler(console)
        self.cloud: watchtower.CloudWatchLogHandler | None = None
        self.stream: str | None = None

    def connect(self, log_group: str, endpoint_url: str | None, region: str | None, bucket: str) -> None:
        """Attach the CloudWatch handler after checking that the log group exists (we never create it).
        (``bucket`` only names the run's bucket in an explanation of an access error.)"""
        logs = make_client("logs", endpoint_url, region)
        try:
            logs.describe_log_streams(logGroupName=log_group, limit=1)
        except logs.exceptions.ResourceNotFoundException as e:
            raise JobError(
                f"CloudWatch log group {log_group} does not exist: run playbooks/provision.yml, or pass "
                "--log-group NAME / --no-cloudwatch"
            ) from e
        except AWS_ERRORS as e:
            raise JobError(f"CloudWatch Logs: {explain(e, bucket, logs.meta.endpoint_url)}") from e
        self.stream = stream_prefix(self.job) + self.run_id
        self.cloud = watchtower.CloudWatchLogHandler(
            log_group_name=log_group,
            log_stream_name=self.stream,
            boto3_client=logs,
            create_log_group=False,
            send_interval=SEND_INTERVAL,
        )
        self.logger.addHandler(self.cloud)

    def __call__(self, event: str, level: int = logging.INFO, **fields) -> None:
        self.logger.log(level, {**self.base, "event": event, **fields})

    def close(self) -> None:
        if self.cloud is not None:
            with self.warnings_to_stderr():
                self.cloud.close()  # flushes; a dead endpoint only loses the log events
        for h in list(self.logger.handlers):
            self.logger.removeHandler(h)

    @contextlib.contextmanager
    def warnings_to_stderr(self):
        """watchtower reports delivery failures as Python warnings: show them as this job's warning lines."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            warn(self.prog, f"CloudWatch Logs: {w.message}")


def put_metrics(
    namespace: str,
    dims: dict[str, str],
    data: list[tuple[str, float, str]],
    endpoint_url: str | None,
    region: str | None,
) -> str | None:
    """PutMetricData of ``(name, value, unit)`` with ``dims``; returns a warning instead of failing (a job's
    work is done by the time it reports on it)."""
    dimensions = metric_dimensions(dims)
    metric_data = [{"MetricName": n, "Value": float(v), "Unit": u, "Dimensions": dimensions} for n, v, u in data]
    return put_metric_data(namespace, metric_data, endpoint_url, region)


def metric_dimensions(dims: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": k, "Value": v} for k, v in dims.items()]


def put_metric_data(
    namespace: str, metric_data: list[dict], endpoint_url: str | None, region: str | None
) -> str | None:
    """PutMetricData of ready-made datums (e.g. ``Values``/``Counts`` distributions), 1,000 per call; returns a
    warning instead of failing."""
    try:
        client = make_client("cloudwatch", endpoint_url, region)
        for i in range(0, len(metric_data), 1000):
            client.put_metric_data(Namespace=namespace, MetricData=metric_data[i : i + 1000])
    except AWS_ERRORS as e:
        return f"metrics not published to {namespace}: {e}"
    return None


def job_dimensions(dataset: str, stage: str) -> dict[str, str]:
    """The dimensions of every job's metrics."""
    return {"Dataset": dataset, "Stage": stage}


def run_reported(
    prog: str,
    events: EventLog,
    work: Callable[[], None],
    summary: Callable[[str | None, float], dict],
    *,
    started: float,
    publish: Callable[[float], str | None] | None,
    finished: Callable[[], dict],
    failed: Callable[[], dict],
    work_dir: str,
    stopped: str | Callable[[], str],
) -> int:
    """``cli.run_job`` for a job that reports: ``work()``, then its metrics (``publish(seconds)``, None when it
    publishes none; a failure to publish is a warning), a ``finished`` or ``failed`` event with the fields the job
    names, and ``summary(msg, seconds)`` as the last line. ``seconds`` is the job's own work (``started`` is its
    ``time.monotonic()``), not the telemetry after it; a local file error names the work directory."""
    done: list[float] = []

    def body() -> None:
        try:
            work()
        except OSError as e:
            raise JobError(f"local file error: {e} (work dir {work_dir})") from e
        done.append(time.monotonic() - started)
        if publish is not None:
            warning = publish(done[0])
            if warning:
                warn(prog, warning)
        events("finished", **finished(), seconds=round(done[0], 2))
        events.close()

    def on_failure(msg: str) -> None:
        events("failed", level=logging.ERROR, msg=msg, **failed())
        events.close()

    def last_line(msg: str | None) -> dict:
        return summary(msg, done[0] if msg is None and done else time.monotonic() - started)

    return run_job(prog, body, last_line, stopped=stopped, on_failure=on_failure)


def add_reporting_flags(p: argparse.ArgumentParser, check_help: str | None) -> None:
    """The flags of a job that reports to CloudWatch and reads AWS: where to, --check (unless ``check_help`` is
    None: the scoring service has none), and the AWS endpoint."""
    p.add_argument(
        "--log-group",
        default=env(LOG_GROUP_ENV, DEFAULT_LOG_GROUP),
        help=f"existing CloudWatch log group (env {LOG_GROUP_ENV}; {DEFAULT_LOG_GROUP})",
    )
    p.add_argument(
        "--metrics-namespace",
        default=env(NAMESPACE_ENV, DEFAULT_NAMESPACE),
        help=f"CloudWatch metrics namespace (env {NAMESPACE_ENV}; {DEFAULT_NAMESPACE})",
    )
    p.add_argument("--no-cloudwatch", action="store_true", help="log locally only, publish no metrics")
    if check_help is not None:
        p.add_argument("--check", action="store_true", help=check_help)
    p.add_argument("--endpoint-url", help="AWS endpoint (default: boto3's, e.g. from AWS_ENDPOINT_URL)")
    p.add_argument("--region", help="AWS region (default: boto3's, e.g. from AWS_REGION)")


def reporting_settings(args: argparse.Namespace) -> dict:
    """The Settings fields that ``add_reporting_flags``'s flags give (a job's ``XSettings(**…)``)."""
    return {
        "log_group": args.log_group,
        "namespace": args.metrics_namespace,
        "cloudwatch": not args.no_cloudwatch,
        "check": args.check,
        "endpoint_url": args.endpoint_url,
        "region": args.region,
    }
