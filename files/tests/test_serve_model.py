"""The served model's swap: a new champion replaces the old one under concurrent requests with none failed and
none scored by a mixture; a broken version is refused (and not retried every interval); a registry that does not
answer leaves the served model in place. Real models (serve_kit), a real uvicorn server on a loopback port."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
import serve_kit as K
import uvicorn
from fraud_demo_jobs.serve_app import AppSettings, create_app
from fraud_demo_jobs.serve_input import parse_predict_body
from fraud_demo_jobs.serve_model import PROBE_ROW, ModelHolder
from serve_kit import AUTH, TOKEN, quiet_sink, service


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    data = K.make_data(tmp_path_factory.mktemp("serve-swap"))
    return {
        "data": data,
        "1": K.train_model(data, "1", "dsA", leaves=7, rounds=20),
        "2": K.train_model(data, "2", "dsB", leaves=15, rounds=40),
        "3": K.broken_model(data, "3"),
    }


def test_the_probe_row_is_a_valid_request_body():
    rows, batch = parse_predict_body(json.dumps(PROBE_ROW).encode(), 10)
    assert not batch and rows[0]["TransactionID"] == PROBE_ROW["TransactionID"]


def _post(url: str, body: dict) -> tuple[int, dict]:
    headers = {**AUTH, "Content-Type": "application/json"}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)  # noqa: S310 (loopback)
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback)
        return r.status, json.loads(r.read())


def test_a_swap_under_concurrent_requests_fails_none_and_mixes_no_models(models):
    registry = K.MemoryRegistry({v: models[v] for v in ("1", "2")}, target="1")
    sink = quiet_sink()
    holder = ModelHolder(registry, sink.events, interval=0)
    holder.reload()
    app = create_app(holder, sink, AppSettings(TOKEN, 1 << 20, 100, "test"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/predict"
    rows = models["data"]["records"][:40]
    want = {v: K.expected(models[v], rows) for v in ("1", "2")}
    results, errors, stop = [], [], threading.Event()

    def client(k: int) -> None:
        i = k
        while not stop.is_set():
            try:
                results.append((i % len(rows), *_post(url, rows[i % len(rows)])))
            except Exception as e:  # any failure is what the test counts
                errors.append(repr(e))
            i += 4

    clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for c in clients:
        c.start()
    time.sleep(0.5)
    registry.target = "2"
    outcome = holder.reload()
    time.sleep(0.5)
    stop.set()
    for c in clients:
        c.join()
    server.should_exit = True
    thread.join(timeout=10)
    assert outcome["outcome"] == "swapped" and outcome["from"] == "1" and outcome["version"] == "2"
    assert errors == []
    seen = {body["model_version"] for _, _, body in results}
    assert seen == {"1", "2"}, seen  # requests before and after the swap
    for i, status, body in results:
        assert status == 200
        version = body["model_version"]
        assert body["dataset_version"] == {"1": "dsA", "2": "dsB"}[version]
        assert body["fraud_probability"] == pytest.approx(want[version][i], rel=1e-6), (i, version)
    assert holder.current.version == "2"


def test_a_broken_version_is_refused_the_old_keeps_serving_and_it_is_retried_only_after_a_backoff(models, capsys):
    registry, holder, client = service(models)
    registry.target = "3"  # loads, but cannot score the probe row
    outcome = holder.reload()
    assert outcome["outcome"] == "refused" and outcome["version"] == "3"
    assert "probe row" in outcome["reason"]
    assert holder.current.version == "1"
    r = client.post("/predict", json=models["data"]["records"][0], headers=AUTH)
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["last_reload"]["outcome"] == "refused"
    loads = registry.loads
    assert holder.reload()["outcome"] == "refused" and registry.loads == loads  # within the backoff: not loaded again
    assert holder.reload(forced=True)["outcome"] == "refused" and registry.loads == loads + 1  # SIGHUP: tried now
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    refused = [x for x in lines if x["event"] == "model_refused"]
    assert len(refused) == 2 and refused[0]["serving"] == "1" and refused[1]["attempts"] == 2
    assert refused[1]["retry_in_seconds"] == 2 * refused[0]["retry_in_seconds"]
    # A version that fails to load at all is refused the same way.
    registry.load_errors = {"2": "model fraud-detector v2 could not be loaded (Booster: truncated): retrain"}
    registry.target = "2"
    outcome = holder.reload()
    assert outcome["outcome"] == "refused" and "truncated" in outcome["reason"] and holder.current.version == "1"
    # Fixed under the same alias target later: picked up.
    registry.load_errors = None
    assert holder.reload(forced=True)["outcome"] == "swapped" and holder.current.version == "2"


def test_a_registry_that_does_not_answer_keeps_the_model_serving_and_health_says_why(models):
    registry, holder, client = service(models)
    registry.down = True
    outcome = holder.reload()
    assert outcome["outcome"] == "registry_unreachable" and "stopped answering" in outcome["reason"]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_version"] == "1"
    assert "stopped answering" in health["last_reload"]["reason"]
    assert client.post("/predict", json=models["data"]["records"][0], headers=AUTH).status_code == 200
    registry.down = False
    registry.target = "2"
    assert holder.reload()["outcome"] == "swapped"


def test_the_reload_thread_checks_on_wake_and_on_its_interval(models):
    registry, holder, _ = service(models)
    holder.interval = 0.2
    holder.start()
    try:
        registry.target = "2"
        deadline = time.monotonic() + 5
        while holder.current.version != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.current.version == "2"
        holder.interval = 0  # only on wake (SIGHUP) from now on
        time.sleep(0.3)
        registry.target = "1"
        time.sleep(0.5)
        holder.wake()
        deadline = time.monotonic() + 5
        while holder.current.version != "1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holder.current.version == "1"
    finally:
        holder.stop()
