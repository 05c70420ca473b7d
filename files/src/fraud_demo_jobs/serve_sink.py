"""Where the scoring service reports what it did, off the request path: one JSON log line per request (stdout for
journald, and CloudWatch Logs through watchtower), CloudWatch metrics every --metrics-interval, and a sample of
the scored inputs as Parquet under ``s3://<bucket>/inference/<date>/``.

A request only appends to in-memory buffers (under a lock, microseconds); a background thread publishes. Nothing
here ever fails a request: a CloudWatch or S3 failure is a ``sink_warning`` log line, and the sample is kept for
the next flush (up to a cap, then the oldest rows are dropped and counted).

    metrics   namespace FraudDemo (--metrics-namespace), dimensions Dataset=<dataset>, Stage=scoring:
              Requests, Errors4xx, Errors5xx, RowsScored (Count) and Latency (Milliseconds, as Values/Counts so
              CloudWatch computes percentiles such as p99), SamplesDropped when the sample overflowed
"""

from __future__ import annotations

import io
import logging
import math
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from . import layout
from .aws import S3Bucket
from .errors import JobError
from .telemetry import EventLog, job_dimensions, metric_dimensions, put_metric_data

SERVE_JOB = "scoring"
MAX_SAMPLE_ROWS = 100_000  # buffered sampled rows kept while S3 is unreachable
VALUES_PER_DATUM = 150  # CloudWatch's limit on Values/Counts in one datum


@dataclass(frozen=True)
class SinkSettings:
    dataset: str
    namespace: str
    metrics_interval: float
    sample_rate: float
    sample_flush_seconds: float
    bucket: str | None
    endpoint_url: str | None
    region: str | None
    cloudwatch: bool


def latency_bucket(ms: float) -> float:
    """Latency rounded to two significant digits (0.83, 1.2, 15, 230 ms): a few hundred distinct values at most,
    so a minute of requests fits a handful of Values/Counts datums and percentiles stay within ~5 %."""
    if ms <= 0.01:
        return 0.01
    return round(ms, 1 - math.floor(math.log10(ms)))


class _Window:
    """The metrics of one interval."""

    def __init__(self) -> None:
        self.requests = self.e4xx = self.e5xx = self.rows = 0
        self.latency: dict[float, int] = {}

    def datums(self, dims: list[dict], dropped: int) -> list[dict]:
        def one(name: str, value: float, unit: str) -> dict:
            return {"MetricName": name, "Value": float(value), "Unit": unit, "Dimensions": dims}

        out = [one("Requests", self.requests, "Count"), one("Errors4xx", self.e4xx, "Count")]
        out += [one("Errors5xx", self.e5xx, "Count"), one("RowsScored", self.rows, "Count")]
        if dropped:
            out.append(one("SamplesDropped", dropped, "Count"))
        items = sorted(self.latency.items())
        for i in range(0, len(items), VALUES_PER_DATUM):
            part = items[i : i + VALUES_PER_DATUM]
            out.append(
                {
                    "MetricName": "Latency",
                    "Values": [v for v, _ in part],
                    "Counts": [float(c) for _, c in part],
                    "Unit": "Milliseconds",
                    "Dimensions": dims,
                }
            )
        return out


class ServeSink:
    """Request log lines, metrics and the inference sample of one service process."""

    def __init__(self, settings: SinkSettings, events: EventLog, bucket: S3Bucket | None):
        self.s = settings
        self.events = events
        self.bucket = bucket
        self.host = socket.gethostname()
        self.dims = metric_dimensions(job_dimensions(settings.dataset, SERVE_JOB))
        self._lock = threading.Lock()
        self._window = _Window()
        self._sample: list[dict] = []
        self._dropped = 0
        self._written = 0
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()  # noqa: S311 (sampling, not secrets)

    # ---- the request path (cheap) ----

    def request(self, fields: dict, status: int, latency_ms: float, rows: int) -> None:
        """One request's log line, and its share of the metrics."""
        self.events("request", **fields, status=status, latency_ms=round(latency_ms, 3), rows=rows)
        with self._lock:
            w = self._window
            w.requests += 1
            if 400 <= status < 500:
                w.e4xx += 1
            elif status >= 500:
                w.e5xx += 1
            if status == 200:
                w.rows += rows
            b = latency_bucket(latency_ms)
            w.latency[b] = w.latency.get(b, 0) + 1

    def wants_sample(self) -> bool:
        """Whether this request's rows go to the sample (decided per request, --sample-rate)."""
        return self.s.sample_rate > 0 and self.bucket is not None and self._rng.random() < self.s.sample_rate

    def sample(self, rows: list[dict], scores, meta: dict) -> None:
        """Keep scored input rows with their score and ``meta`` (request id, model and dataset version, time)."""
        out = [{**row, "fraud_probability": float(p), **meta} for row, p in zip(rows, scores, strict=True)]
        with self._lock:
            self._sample.extend(out)
            over = len(self._sample) - MAX_SAMPLE_ROWS
            if over > 0:
                del self._sample[:over]
                self._dropped += over

    # ---- the background thread ----

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_metrics = time.monotonic() + self.s.metrics_interval
        next_sample = time.monotonic() + self.s.sample_flush_seconds
        while not self._stop.wait(max(0.05, min(next_metrics, next_sample) - time.monotonic())):
            now = time.monotonic()
            if now >= next_metrics:
                next_metrics = now + self.s.metrics_interval
                self.flush_metrics()
            if now >= next_sample:
                next_sample = now + self.s.sample_flush_seconds
                self.flush_sample()

    def close(self) -> None:
        """Stop the thread and flush everything (at shutdown, after the last request)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush_metrics()
        self.flush_sample()
        self.events("sink_closed", samples_written=self._written, samples_dropped=self._dropped)
        self.events.close()

    def flush_metrics(self) -> None:
        with self._lock:
            window, self._window = self._window, _Window()
            dropped, self._dropped = self._dropped, 0
        if not self.s.cloudwatch or (window.requests == 0 and not dropped):
            return
        warning = put_metric_data(
            self.s.namespace, window.datums(self.dims, dropped), self.s.endpoint_url, self.s.region
        )
        if warning:
            self.events("sink_warning", level=logging.WARNING, msg=warning)

    def flush_sample(self) -> str | None:
        """Write the buffered sample as one Parquet object; returns its key (None when nothing was written)."""
        with self._lock:
            rows, self._sample = self._sample, []
        if not rows or self.bucket is None:
            return None
        now = datetime.now(timezone.utc)
        self._seq += 1
        key = layout.inference_key(f"{now:%Y-%m-%d}", f"{now:%H%M%S}-{self.host}-{self._seq:06d}")
        try:
            body = io.BytesIO()
            pd.DataFrame.from_records(rows).to_parquet(body, index=False)
            self.bucket.call(
                f"PutObject {key}",
                self.bucket.client.put_object,
                Key=key,
                Body=body.getvalue(),
                ChecksumAlgorithm="SHA256",
            )
        except (JobError, ValueError, TypeError) as e:  # S3 down, or rows pyarrow cannot type: keep the service up
            with self._lock:
                keep = max(0, MAX_SAMPLE_ROWS - len(self._sample))
                self._sample[:0] = rows[-keep:] if keep else []
                self._dropped += len(rows) - min(keep, len(rows))
            self.events("sink_warning", level=logging.WARNING, msg=f"inference sample not written to {key}: {e}")
            return None
        self._written += len(rows)
        self.events("sample_written", key=key, rows=len(rows))
        return key
