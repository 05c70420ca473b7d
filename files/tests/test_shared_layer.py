"""The jobs' shared layer on its own: CLI conventions (cli), AWS clients and wording (aws), transfer through the
caller's client (transfer), metrics and warnings (telemetry)."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import moto
import pytest

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import aws, cli, telemetry, transfer
from fraud_demo_jobs.errors import JobError, UsageError

# isort: on

BUCKET = "fraud-demo-test-shared"


def _raise(exc: BaseException):
    def body() -> None:
        raise exc

    return body


@pytest.mark.parametrize(
    ("body", "code", "msg"),
    [
        (_raise(UsageError("--x is required")), 2, "--x is required"),
        (_raise(JobError("bucket b does not exist")), 1, "bucket b does not exist"),
        (_raise(KeyboardInterrupt()), 130, "interrupted; nothing was left"),
        (_raise(cli.Terminated()), 143, "terminated (SIGTERM); nothing was left"),
        (_raise(MemoryError()), 1, "out of memory"),
        (_raise(ValueError("boom")), 1, "unexpected error: ValueError: boom"),
    ],
)
def test_run_job_maps_exceptions_to_exit_codes_and_ends_with_the_summary(capsys, body, code, msg):
    seen = []
    got = cli.run_job(
        "fraud-demo-x", body, lambda m: {"job": "x", "msg": m}, stopped="nothing was left", on_failure=seen.append
    )
    out, err = capsys.readouterr()
    assert got == code
    assert json.loads(out.strip().splitlines()[-1]) == {"job": "x", "msg": msg}
    assert err.strip().splitlines()[-1] == f"fraud-demo-x: error: {msg}"
    assert seen == [msg]


def test_run_job_success_prints_only_the_summary(capsys):
    assert cli.run_job("fraud-demo-x", lambda: None, lambda m: {"ok": m is None}, stopped="-") == 0
    out, err = capsys.readouterr()
    assert out == '{"ok": true}\n' and err == ""


def test_env_treats_an_empty_variable_as_unset(monkeypatch):
    monkeypatch.setenv("FRAUD_DEMO_X", "")
    assert cli.env("FRAUD_DEMO_X", "d") == "d"
    monkeypatch.setenv("FRAUD_DEMO_X", "v")
    assert cli.env("FRAUD_DEMO_X", "d") == "v"


def test_clients_retry_in_standard_mode_unless_told(monkeypatch):
    s3 = aws.make_client("s3", None, "us-east-1", concurrency=20)
    assert s3.meta.config.retries["mode"] == "standard"
    assert s3.meta.config.max_pool_connections == 24  # the transfer threads plus the 4 that check files
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    assert aws.make_client("logs", None, "us-east-1").meta.config.retries["mode"] == "adaptive"


def test_upload_files_uses_the_callers_client_only(tmp_path):
    """One client per run: upload_files sends through the caller's client and calls no HeadBucket of its own;
    a second call skips what the first sent."""
    (tmp_path / "a.parquet").write_bytes(b"PAR1" * 1000)
    (tmp_path / "b.parquet").write_bytes(b"PAR1" * 2000)
    with moto.mock_aws():
        client = aws.make_client("s3", None, "us-east-1")
        client.create_bucket(Bucket=BUCKET)
        calls: list[str] = []
        client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
        bucket = aws.S3Bucket(client, BUCKET)
        req = transfer.UploadRequest(
            source=str(tmp_path), prefix="p/", includes=["*.parquet"], stale_after=timedelta(0)
        )
        for expected in ("uploaded", "skipped"):
            out = transfer.UploadOutcome(files=transfer.find_files(req))
            transfer.upload_files(bucket, req, out, "fraud-demo-x")
            assert [lf.action for lf in out.files] == [expected, expected]
        assert "HeadBucket" not in calls
        assert calls.count("PutObject") == 2
        assert sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]) == [
            "p/a.parquet",
            "p/b.parquet",
        ]


def test_metrics_go_to_the_namespace_with_the_job_dimensions():
    with moto.mock_aws():
        dims = telemetry.job_dimensions("ds", "train")
        assert telemetry.put_metrics("FraudDemo", dims, [("RowsIn", 3, "Count")], None, "us-east-1") is None
        metric = boto3.client("cloudwatch", region_name="us-east-1").list_metrics(Namespace="FraudDemo")["Metrics"][0]
        assert metric["MetricName"] == "RowsIn"
        assert {d["Name"]: d["Value"] for d in metric["Dimensions"]} == {"Dataset": "ds", "Stage": "train"}


def test_warnings_are_labelled_with_the_job(capsys):
    telemetry.warn("fraud-demo-train", "metrics not published")
    assert capsys.readouterr().err == "fraud-demo-train: warning: metrics not published\n"
