"""serve_sink: the inference sample lands in S3 as Parquet with the rows, scores and lineage the service saw;
metrics reach CloudWatch with latency as Values/Counts; an S3 or CloudWatch failure never reaches a request.
Against moto's in-process AWS; expected values are the requests the test itself sent."""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timezone

import boto3
import pandas as pd
import pytest
import serve_kit as K
from fastapi.testclient import TestClient
from fraud_demo_jobs.aws import S3Bucket, make_client
from fraud_demo_jobs.serve_app import AppSettings, create_app
from fraud_demo_jobs.serve_model import ModelHolder
from fraud_demo_jobs.serve_sink import ServeSink, SinkSettings, latency_bucket
from fraud_demo_jobs.telemetry import EventLog
from moto import mock_aws
from serve_kit import AUTH, TOKEN

BUCKET = "fraud-demo-serve-test"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    data = K.make_data(tmp_path_factory.mktemp("serve-sink"))
    return {"data": data, "1": K.train_model(data, "1", "dsA", leaves=7, rounds=20)}


def sink_for(bucket_name: str, sample_rate: float = 1.0, cloudwatch: bool = True) -> ServeSink:
    events = EventLog("fraud-demo-serve", "scoring", uuid.uuid4().hex, "ieee-fraud-detection", json_stdout=True)
    settings = SinkSettings(
        "ieee-fraud-detection", "FraudDemo", 60, sample_rate, 60, bucket_name, None, None, cloudwatch
    )
    return ServeSink(settings, events, S3Bucket(make_client("s3", None, None), bucket_name))


def test_latency_buckets_keep_two_significant_digits():
    assert [latency_bucket(x) for x in (0.834, 1.26, 15.4, 234.0, 0.0)] == [0.83, 1.3, 15.0, 230.0, 0.01]


@mock_aws
def test_the_sample_is_written_as_parquet_with_scores_and_lineage_and_metrics_are_published(models, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sink = sink_for(BUCKET, sample_rate=1.0)
    registry = K.MemoryRegistry({"1": models["1"]}, target="1")
    holder = ModelHolder(registry, sink.events, interval=0)
    holder.reload()
    client = TestClient(create_app(holder, sink, AppSettings(TOKEN, 1 << 20, 100, "t")))
    rows = models["data"]["records"][:5]
    ids = [client.post("/predict", json=rows[0], headers=AUTH).json()["request_id"]]
    ids.append(client.post("/predict", json=rows[1:], headers=AUTH).json()["request_id"])
    assert client.post("/predict", json={"surprise": 1}, headers=AUTH).status_code == 422  # not sampled
    sink.close()

    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="inference/")["Contents"]]
    assert len(keys) == 1 and keys[0].startswith(f"inference/{today}/") and keys[0].endswith(".parquet")
    frame = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()))
    assert frame["TransactionID"].tolist() == [r["TransactionID"] for r in rows]
    assert frame["TransactionAmt"].tolist() == [r["TransactionAmt"] for r in rows]
    assert frame["request_id"].tolist() == [ids[0]] + [ids[1]] * 4
    assert set(frame["model_version"]) == {"1"} and set(frame["dataset_version"]) == {"dsA"}
    assert frame["fraud_probability"].tolist() == pytest.approx(list(K.expected(models["1"], rows)), rel=1e-6)
    assert frame["scored_at"].notna().all()

    names = {m["MetricName"] for m in boto3.client("cloudwatch").list_metrics(Namespace="FraudDemo")["Metrics"]}
    assert {"Requests", "Errors4xx", "Errors5xx", "RowsScored", "Latency"} <= names
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    closed = [x for x in lines if x["event"] == "sink_closed"]
    assert closed[0]["samples_written"] == 5


@mock_aws
def test_metric_datums_count_requests_errors_rows_and_latency():
    sink = sink_for(BUCKET, sample_rate=0.0)
    for status, ms, rows in ((200, 0.834, 1), (200, 0.831, 3), (401, 0.2, 0), (422, 0.5, 0), (500, 12.0, 0)):
        sink.request({"request_id": "r", "path": "/predict"}, status, ms, rows)
    datums = {d["MetricName"]: d for d in sink._window.datums([], 0)}
    assert [datums[n]["Value"] for n in ("Requests", "Errors4xx", "Errors5xx", "RowsScored")] == [5, 2, 1, 4]
    latency = datums["Latency"]
    assert dict(zip(latency["Values"], latency["Counts"], strict=True)) == {0.2: 1, 0.5: 1, 0.83: 2, 12.0: 1}
    assert latency["Unit"] == "Milliseconds"


def test_an_unreachable_s3_and_cloudwatch_are_warnings_and_the_sample_is_kept(models, capsys):
    # Nothing listens on port 9: every AWS call fails fast; the request still succeeds.
    sink = sink_for(BUCKET, sample_rate=1.0)
    sink.s = SinkSettings("ieee-fraud-detection", "FraudDemo", 60, 1.0, 60, BUCKET, "http://127.0.0.1:9", None, True)
    sink.bucket = S3Bucket(make_client("s3", "http://127.0.0.1:9", "us-east-1"), BUCKET)
    registry = K.MemoryRegistry({"1": models["1"]}, target="1")
    holder = ModelHolder(registry, sink.events, interval=0)
    holder.reload()
    client = TestClient(create_app(holder, sink, AppSettings(TOKEN, 1 << 20, 100, "t")))
    assert client.post("/predict", json=models["data"]["records"][0], headers=AUTH).status_code == 200
    assert sink.flush_sample() is None
    assert len(sink._sample) == 1  # kept for the next flush
    sink.flush_metrics()
    warnings = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"sink_warning"' in x]
    assert any("inference sample not written" in w["msg"] for w in warnings)
    assert any("metrics not published" in w["msg"] for w in warnings)
    assert client.post("/predict", json=models["data"]["records"][1], headers=AUTH).status_code == 200
