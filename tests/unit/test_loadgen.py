"""scripts/sandboxlib/loadgen.py against a small aiohttp server on loopback (its own thread and event loop)."""

import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "sandboxlib"))
import loadgen


class Server:
    """/ok answers {"model_version": "3"}; /slow the same after 50 ms; /flaky 503 on odd request numbers;
    /drop closes the connection without an answer; /hang never answers within the client's timeout."""

    def __init__(self):
        self.hits = 0
        self.loop = asyncio.new_event_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    async def ok(self, request):
        self.hits += 1
        await request.read()
        return web.json_response({"model_version": "3"})

    async def slow(self, request):
        await asyncio.sleep(0.05)
        return web.json_response({"model_version": "4"})

    async def flaky(self, request):
        self.hits += 1
        if self.hits % 2:
            return web.json_response({"error": "no model"}, status=503)
        return web.json_response({"model_version": "3"})

    async def drop(self, request):
        request.transport.close()
        await asyncio.sleep(1)
        return web.Response()

    async def hang(self, request):
        await asyncio.sleep(5)
        return web.Response()

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        for name in ("ok", "slow", "flaky", "drop", "hang"):
            app.router.add_post(f"/{name}", getattr(self, name))
        self.runner = web.AppRunner(app, handler_cancellation=True)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.SockSite(self.runner, self.sock).start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def test_fixed_rate_all_ok_and_the_field_is_counted(server):
    t0 = time.monotonic()
    result = loadgen.run_load(server.url + "/ok", rate=200, requests=100, body=b"{}", field="model_version")
    took = time.monotonic() - t0
    s = result.summary()
    assert (s["sent"], s["ok"], s["failed"], s["errors"]) == (100, 100, 0, {})
    assert s["fields"] == {"3": 100}
    # Open loop: the last request is due at 99/200 s, so the run takes at least that long.
    assert took >= 0.49 and s["elapsed_s"] >= 0.49
    assert [round(o.scheduled, 3) for o in result.outcomes[:3]] == [0.0, 0.005, 0.01]
    assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]


def test_latency_counts_from_the_scheduled_time(server):
    # 100/s offered, but 2 connections x 50 ms serve only 40/s: request 19 is due at 0.19 s and cannot finish
    # before 10 rounds of 50 ms = 0.5 s, so its latency is at least ~0.3 s although each answer takes 50 ms.
    result = loadgen.run_load(server.url + "/slow", rate=100, requests=20, concurrency=2, field="model_version")
    last = result.outcomes[-1]
    assert last.scheduled == pytest.approx(0.19, abs=1e-6)
    assert last.latency >= 0.29
    assert result.summary()["failed"] == 0 and result.summary()["fields"] == {"4": 20}


def test_errors_are_counted_by_kind(server):
    flaky = loadgen.run_load(server.url + "/flaky", rate=500, requests=10, concurrency=1).summary()
    assert flaky["ok"] + flaky["failed"] == 10 and flaky["errors"] == {"http_503": flaky["failed"]}
    assert flaky["failed"] == 5
    dropped = loadgen.run_load(server.url + "/drop", rate=100, requests=3).summary()
    assert dropped["errors"] == {"connection": 3}
    hung = loadgen.run_load(server.url + "/hang", rate=100, requests=2, timeout=0.2).summary()
    assert hung["errors"] == {"timeout": 2}


def test_refused_connection_and_bad_arguments():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    s = loadgen.run_load(f"http://127.0.0.1:{port}/", rate=100, requests=2).summary()
    assert s["errors"] == {"connection": 2}
    with pytest.raises(ValueError):
        loadgen.run_load("http://127.0.0.1:1/", rate=0, requests=1)
    with pytest.raises(ValueError):
        loadgen.run_load("http://127.0.0.1:1/", rate=10)


def test_body_per_request_and_duration(server):
    bodies = []

    def body(i):
        bodies.append(i)
        return json.dumps({"i": i}).encode()

    s = loadgen.run_load(server.url + "/ok", rate=100, duration=0.1, body=body).summary()
    assert s["sent"] == 10 and sorted(bodies) == list(range(10))


def test_cli_prints_one_summary_line(server, tmp_path, capsys):
    (tmp_path / "row.json").write_text("{}")
    args = ["--url", server.url + "/ok", "--rate", "100", "--requests", "5", "--body-file", str(tmp_path / "row.json")]
    code = loadgen.main([*args, "--header", "Authorization: Bearer x", "--field", "model_version"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["ok"] == 5 and out["fields"] == {"3": 5}


def test_quantiles_are_nearest_rank():
    values = [i / 1000 for i in range(1, 101)]  # 1 .. 100 ms
    assert loadgen._quantile(values, 0.5) == 0.05
    assert loadgen._quantile(values, 0.99) == 0.099
    assert loadgen._quantile(values, 1.0) == 0.1
    assert loadgen._quantile([0.007], 0.99) == 0.007
