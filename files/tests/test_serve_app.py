"""The scoring service's HTTP API (FastAPI's TestClient) with real small models: every refusal with its exact
status and body, predictions equal to a second computation, and the service still serving after each fault.

Expected probabilities come from ``serve_kit.expected`` (the batch DataFrame transform + Booster.predict), the
statuses and rules from the issue and the contract."""

from __future__ import annotations

import json

import pytest
import serve_kit as K
from fraud_demo_jobs.serve_model import Served
from serve_kit import AUTH, TOKEN, service


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    data = K.make_data(tmp_path_factory.mktemp("serve-data"))
    return {
        "data": data,
        "1": K.train_model(data, "1", "dsA", leaves=7, rounds=20),
        "2": K.train_model(data, "2", "dsB", leaves=15, rounds=40),
        "3": K.broken_model(data, "3"),
    }


def test_one_row_and_a_batch_are_scored_as_the_batch_transform_scores_them(models):
    _, _, client = service(models)
    rows = models["data"]["records"][:20]
    want = K.expected(models["1"], rows)
    r = client.post("/predict", json=rows[0], headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["TransactionID"] == rows[0]["TransactionID"]
    assert body["fraud_probability"] == pytest.approx(want[0], rel=1e-6)
    assert (body["model_version"], body["dataset_version"]) == ("1", "dsA")
    assert body["request_id"] == r.headers["x-request-id"]
    r = client.post("/predict", json=rows, headers=AUTH)
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [p["TransactionID"] for p in preds] == [row["TransactionID"] for row in rows]
    assert [p["fraud_probability"] for p in preds] == pytest.approx(list(want), rel=1e-6)


def test_health_and_version_report_the_served_model_and_its_lineage(models):
    _, _, client = service(models)
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_version"] == "1" and health["reason"] is None
    assert health["last_reload"]["outcome"] == "swapped"
    v = client.get("/version").json()
    assert v["model_version"] == "1" and v["run_id"] == "run1" and v["dataset_version"] == "dsA"
    assert v["raw_version_ids"] == {"train_transaction.csv": "raw1"} and v["code_version"] == "0.2.0+test"
    assert v["service_code_version"] == "0.2.0+svc" and v["loaded_at"]


def test_a_missing_or_wrong_token_is_401_with_a_challenge_and_the_service_keeps_serving(models):
    _, _, client = service(models)
    row = models["data"]["records"][0]
    r = client.post("/predict", json=row)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="fraud-demo-scoring"'
    assert "missing bearer token" in r.json()["error"]
    for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", f"bearer {TOKEN[:-1]}"):
        r = client.post("/predict", json=row, headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.headers["www-authenticate"] == 'Bearer realm="fraud-demo-scoring", error="invalid_token"'
    assert client.post("/predict", json=row, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    # /health and /version need no token.
    assert client.get("/health").status_code == 200 and client.get("/version").status_code == 200


def test_no_auth_serves_without_a_token(models):
    _, _, client = service(models, token=None)
    assert client.post("/predict", json=models["data"]["records"][0]).status_code == 200


def test_bodies_over_the_limit_are_413_by_header_and_by_streamed_size(models):
    _, _, client = service(models, max_body=8192)
    row = models["data"]["records"][0]
    big = json.dumps([row] * 40).encode()
    assert len(big) > 8192
    r = client.post("/predict", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "8192 bytes" in r.json()["error"]

    def chunks():  # no Content-Length: a chunked body, refused while it streams
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    r = client.post("/predict", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.post("/predict", json=row, headers=AUTH).status_code == 200


def test_malformed_json_is_400_and_contract_breaks_are_422_with_field_and_rule(models):
    _, _, client = service(models)
    row = models["data"]["records"][0]
    for body in (b"{", b"not json", b'{"TransactionID": 1,}', b"\xff\xfe", b"42"):
        r = client.post("/predict", content=body, headers=AUTH)
        assert r.status_code == 400, body
        assert r.json()["error"]
    cases = [
        ({**row, "isFraud": 1}, "isFraud"),  # unknown field (the label is not an input)
        ({**row, "surprise": 1}, "surprise"),
        ({k: v for k, v in row.items() if k != "TransactionAmt"}, "TransactionAmt"),  # missing required
        ({**row, "TransactionAmt": "12.5"}, "TransactionAmt"),  # wrong type
        ({**row, "TransactionAmt": -3.0}, "TransactionAmt"),  # breaks gt 0
        ({**row, "ProductCD": "X"}, "ProductCD"),  # not in the domain
        ({**row, "card1": 1.5}, "card1"),  # not an integer
    ]
    for body, field in cases:
        r = client.post("/predict", json=body, headers=AUTH)
        assert r.status_code == 422, (field, r.text)
        problems = r.json()["problems"]
        assert any(p["field"] == field and p["rule"] for p in problems), problems
    r = client.post("/predict", json=[row, {**row, "ProductCD": "X"}], headers=AUTH)
    assert r.status_code == 422 and r.json()["problems"][0]["row"] == 1
    assert client.post("/predict", json=[], headers=AUTH).status_code == 422
    r = client.post("/predict", json=[row] * 51, headers=AUTH)  # --max-batch-rows 50
    assert r.status_code == 413
    assert client.post("/predict", json=row, headers=AUTH).status_code == 200


def test_an_unexpected_failure_is_500_with_the_request_id_and_the_next_request_is_served(models, capsys):
    _, holder, client = service(models)
    good = holder.current
    holder.current = Served(K.broken_model(models["data"], "9"), "now")  # scores nothing (feature count)
    r = client.post("/predict", json=models["data"]["records"][0], headers=AUTH)
    assert r.status_code == 500
    assert r.json()["request_id"] == r.headers["x-request-id"] and r.json()["error"] == "internal error while scoring"
    holder.current = good
    assert client.post("/predict", json=models["data"]["records"][0], headers=AUTH).status_code == 200
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x["event"] == "request_failed"]
    assert failed and failed[0]["request_id"] == r.headers["x-request-id"]


def test_every_request_is_one_json_log_line_with_status_latency_and_score(models, capsys):
    _, _, client = service(models)
    rows = models["data"]["records"][:3]
    client.post("/predict", json=rows[0], headers=AUTH)
    client.post("/predict", json=rows, headers=AUTH)
    client.post("/predict", json=rows[0])
    client.get("/health")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    requests = [x for x in lines if x["event"] == "request"]
    assert [(x["path"], x["status"], x["rows"]) for x in requests] == [
        ("/predict", 200, 1),
        ("/predict", 200, 3),
        ("/predict", 401, 0),
        ("/health", 200, 0),
    ]
    first = requests[0]
    assert first["model_version"] == "1" and 0 < first["latency_ms"] < 5000 and len(first["request_id"]) == 32
    assert first["score"] == pytest.approx(K.expected(models["1"], rows[:1])[0], rel=1e-6)
    assert "score" not in requests[1]  # a batch has no single score


def test_an_empty_registry_starts_503_with_the_reason_and_picks_the_champion_up(models):
    registry, holder, client = service(models, target=None)
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "no_model" and health.json()["model_version"] is None
    assert "no version under alias champion" in health.json()["reason"]
    r = client.post("/predict", json=models["data"]["records"][0], headers=AUTH)
    assert r.status_code == 503 and "no version under alias champion" in r.json()["error"]
    assert client.get("/version").status_code == 503
    registry.target = "2"
    assert holder.reload()["outcome"] == "swapped"
    r = client.post("/predict", json=models["data"]["records"][0], headers=AUTH)
    assert r.status_code == 200 and r.json()["model_version"] == "2"
