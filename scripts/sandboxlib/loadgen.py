#!/usr/bin/env python3
"""Open-loop HTTP load on loopback: requests at a fixed rate, whatever the server's speed.

Request i is due at start + i / rate. Its latency runs from that *scheduled* time to the end of its response, so a
slow server (or a client that has to wait for one of its ``concurrency`` connections) shows up as latency instead of
quietly lowering the offered rate (no coordinated omission). Each response's status, latency and one top-level
field of its JSON body (e.g. ``model_version``) are recorded; failures are counted by kind (``http_503``,
``timeout``, ``connection``, ...). Debian's ``wrk`` is closed-loop and ``h2load`` rates sessions, not requests,
and neither records a body field: hence this small aiohttp client.

Python API (used by the end-to-end promotion test and bench/bench_serve.py)::

    result = run_load("http://127.0.0.1:8080/predict", rate=500, requests=5000, body=b'{...}',
                      headers={"Authorization": "Bearer ..."}, field="model_version")
    result.summary()  # {"sent", "ok", "failed", "errors": {kind: n}, "p50_ms", ..., "throughput_rps", "fields"}

CLI (one JSON summary line)::

    python scripts/sandboxlib/loadgen.py --url http://127.0.0.1:8080/predict --rate 500 --duration 10 \\
        --body-file row.json --header "Authorization: Bearer $TOKEN" --field model_version
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Outcome:
    """One request: when it was due (s after the start), its latency from then, status or error kind, field."""

    scheduled: float
    latency: float
    status: int | None
    error: str | None
    value: object = None


@dataclass
class LoadResult:
    outcomes: list[Outcome]
    rate: float
    elapsed: float  # from the start to the last response
    client_cpu: float  # CPU seconds of this process (the load generator's own share of the machine)
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    def summary(self) -> dict:
        lat = sorted(o.latency for o in self.outcomes)
        ok = [o for o in self.outcomes if o.error is None]
        out = {
            "sent": len(self.outcomes),
            "ok": len(ok),
            "failed": len(self.outcomes) - len(ok),
            "errors": dict(Counter(o.error for o in self.outcomes if o.error is not None)),
            "rate_rps": self.rate,
            "throughput_rps": round(len(ok) / self.elapsed, 1) if self.elapsed > 0 else 0.0,
            "elapsed_s": round(self.elapsed, 3),
            "client_cpu_s": round(self.client_cpu, 3),
            "fields": {str(k): n for k, n in Counter(o.value for o in ok).items()},
        }
        for name, q in (("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99), ("max_ms", 1.0)):
            out[name] = round(_quantile(lat, q) * 1000, 3) if lat else None
        return {**out, **self.extra}


def _quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank quantile: the smallest value with at least q of the values at or below it."""
    rank = max(1, math.ceil(q * len(sorted_values) - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError)):
        return "connection"
    return type(exc).__name__


async def _one(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None, headers: dict, field: str | None
) -> tuple[int, str | None, object]:
    async with session.request(method, url, data=body, headers=headers) as resp:
        data = await resp.read()
        error = None if 200 <= resp.status < 300 else f"http_{resp.status}"
        value = None
        if field and data[:1] == b"{":
            try:
                value = json.loads(data).get(field)
            except ValueError:
                value = None
        return resp.status, error, value


async def load(
    url: str,
    rate: float,
    *,
    requests: int | None = None,
    duration: float | None = None,
    concurrency: int = 64,
    method: str = "POST",
    body: bytes | Callable[[int], bytes] | None = None,
    headers: dict | None = None,
    field: str | None = None,
    timeout: float = 10.0,
) -> LoadResult:
    """Send ``requests`` requests (or ``duration`` seconds' worth) at ``rate`` per second, at most ``concurrency``
    in flight; ``body`` is one body for all or a function of the request number."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    total = requests if requests is not None else round((duration or 0) * rate)
    if total <= 0:
        raise ValueError("give requests > 0 or duration > 0")
    headers = {"Content-Type": "application/json", **(headers or {})}
    outcomes: list[Outcome] = []
    slots = asyncio.Semaphore(concurrency)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        start = loop.time()

        async def fire(i: int, due: float) -> None:
            payload = body(i) if callable(body) else body
            try:
                status, error, value = await _one(session, method, url, payload, headers, field)
            except Exception as exc:  # every failure is an outcome, counted by kind
                status, error, value = None, _error_kind(exc), None
            finally:
                slots.release()
            outcomes.append(Outcome(due - start, loop.time() - due, status, error, value))

        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()  # a late slot makes this and later requests late: it counts in their latency
            tasks.append(asyncio.ensure_future(fire(i, due)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    outcomes.sort(key=lambda o: o.scheduled)
    return LoadResult(outcomes, rate, elapsed, cpu)


def run_load(url: str, rate: float, **kwargs) -> LoadResult:
    """``load`` from synchronous code (its own event loop)."""
    return asyncio.run(load(url, rate, **kwargs))


def _headers(values: list[str]) -> dict:
    out = {}
    for h in values:
        name, sep, value = h.partition(":")
        if not sep:
            raise SystemExit(f"loadgen: --header {h!r} must be 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second (open loop)")
    p.add_argument("--requests", type=int, help="number of requests (or --duration)")
    p.add_argument("--duration", type=float, help="seconds of load at --rate")
    p.add_argument("--concurrency", type=int, default=64, help="most requests in flight (default 64)")
    p.add_argument("--method", default="POST")
    p.add_argument("--body-file", help="request body (default: none)")
    p.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    p.add_argument("--field", help="top-level JSON field of each response to count (e.g. model_version)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    args = p.parse_args(argv)
    if (args.requests is None) == (args.duration is None):
        p.error("give exactly one of --requests or --duration")
    body = open(args.body_file, "rb").read() if args.body_file else None
    result = run_load(
        args.url,
        args.rate,
        requests=args.requests,
        duration=args.duration,
        concurrency=args.concurrency,
        method=args.method,
        body=body,
        headers=_headers(args.header),
        field=args.field,
        timeout=args.timeout,
    )
    summary = result.summary()
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
