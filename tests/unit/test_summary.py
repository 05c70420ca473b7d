"""scripts/summary.py's "Curated dataset" and "Ingest log" sections, against in-process moto (no sandbox needed)."""

import importlib.util
import json
import os
import time
from pathlib import Path

import boto3
import moto
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("summary", ROOT / "scripts" / "summary.py")
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)

BUCKET = "fraud-demo-data-123456789012-us-east-1"
GROUP = "fraud-demo-logs"
DATASET = "ieee-fraud-detection"


@pytest.fixture
def aws(monkeypatch):
    """An empty in-process AWS; nothing from the shell (a sourced .sandbox/env) leaks in."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield boto3.session.Session()


def table(name, rows_in, quarantined=0, version="v2"):
    return {
        "name": name,
        "key": f"curated/{DATASET}/{version}/{name}.parquet",
        "rows_in": rows_in,
        "rows_valid": rows_in - quarantined,
        "rows_quarantined": quarantined,
        "quarantine_key": f"quarantine/{DATASET}/{version}/{name}.csv" if quarantined else None,
    }


def ingested(s3):
    """A data bucket with one ingested version, v2, that quarantined 3 submission rows."""
    tables = [table("train_transaction", 1000), table("sample_submission", 500, quarantined=3)]
    manifest = {
        "dataset": DATASET,
        "version": "v2",
        "tables": tables,
        "rows": {"in": 1500, "valid": 1497, "quarantined": 3},
        "fraud_rate": 0.035,
    }
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"curated/{DATASET}/v2/manifest.json", Body=json.dumps(manifest))
    pointer = {"dataset": DATASET, "version": "v2", "manifest": f"curated/{DATASET}/v2/manifest.json"}
    s3.put_object(Bucket=BUCKET, Key=f"curated/{DATASET}/latest", Body=json.dumps(pointer))


def test_nothing_ingested_yet_is_one_note_each(aws):
    s3, logs = aws.client("s3"), aws.client("logs")
    s3.create_bucket(Bucket=BUCKET)
    logs.create_log_group(logGroupName=GROUP)
    assert summary.curated_lines(s3, [BUCKET], DATASET) == [
        f"  (nothing ingested yet: no curated/{DATASET}/latest; run playbooks/ingest.yml)"
    ]
    assert summary.ingest_log_lines(logs, GROUP) == ["  (no ingest runs logged yet)"]


def test_whole_summary_on_an_empty_account_degrades_to_notes(aws, capsys):
    assert summary.main([]) == 0
    out = capsys.readouterr().out
    assert f"(nothing ingested yet: no curated/{DATASET}/latest; run playbooks/ingest.yml)" in out
    assert f"(no log group {GROUP})" in out


def test_latest_is_followed_to_its_manifest(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="fraud-demo-ssm-123456789012-us-east-1")  # another bucket of ours, without curated/
    ingested(s3)
    lines = summary.curated_lines(s3, ["fraud-demo-ssm-123456789012-us-east-1", BUCKET], DATASET)
    text = "\n".join(lines)
    assert lines[0] == f"  version v2  (s3://{BUCKET}/curated/{DATASET}/latest)"
    assert [line.split() for line in lines[2:5]] == [
        ["train_transaction", "1,000", "1,000", "0"],
        ["sample_submission", "500", "497", "3"],
        ["total", "1,500", "1,497", "3"],
    ]
    assert "fraud rate 3.50%" in text
    assert f"curated     s3://{BUCKET}/curated/{DATASET}/v2/  (2 Parquet tables + manifest.json)" in text
    assert f"quarantine  s3://{BUCKET}/quarantine/{DATASET}/v2/sample_submission.csv  (3 rows)" in text


def test_latest_pointing_at_a_missing_manifest_says_so(aws):
    s3 = aws.client("s3")
    ingested(s3)
    s3.delete_object(Bucket=BUCKET, Key=f"curated/{DATASET}/v2/manifest.json")
    assert summary.curated_lines(s3, [BUCKET], DATASET) == [
        f"  s3://{BUCKET}/curated/{DATASET}/latest points at v2, whose manifest is missing"
    ]


def test_last_events_of_the_newest_ingest_stream(aws):
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=GROUP)
    now = int(time.time() * 1000)
    for stream, start in (("ingest/old", now - 60_000), ("ingest/new", now - 30_000), ("upload/x", now - 10_000)):
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
        messages = [{"job": "ingest", "event": f"e{i}", "n": i, "raw": "x" * 200} for i in range(7)]
        events = [{"timestamp": start + i, "message": json.dumps(m)} for i, m in enumerate(messages)]
        logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events)
    lines = summary.ingest_log_lines(logs, GROUP)
    assert lines[0] == f"  {GROUP} / ingest/new, last 5 events (UTC):"
    assert [line.split()[1] for line in lines[1:]] == ["e2", "e3", "e4", "e5", "e6"]
    assert 'n=6  raw="xxx' in lines[-1]
    assert lines[-1].endswith("…")
    assert "job=" not in lines[-1]
