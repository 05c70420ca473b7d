"""Tests of the drift job (fraud_demo_jobs.drift) against a moto server and a real MLflow tracking server, with one
model trained by the real training job on generated data (shared by the whole module).

Expected values come from outside the code under test: the train window from the training run's own split
bounds (the train job's summary), the stored objects read back from S3 (the summary written last, by its
LastModified and its listing), S3 object versions (nothing rewritten), CloudWatch's stored metrics, and
Evidently's own result in report.json.
"""

from __future__ import annotations

import json

import boto3
import pytest
from fraud_demo_jobs import drift as dj
from jobs_lake import BUCKET, DATASET, MODEL, aws_args, client, keys, s3_json

SMALL = ["--reference-rows", "2000", "--current-rows", "2000"]


def drift(lake, capsys, *extra, cloudwatch: bool = False) -> tuple[int, dict, str]:
    argv = ["--bucket", BUCKET, "--tracking-uri", lake["uri"], *aws_args(lake)]
    argv += ["--work-dir", str(lake["tmp"] / "drift-work"), *SMALL, *extra]
    if not cloudwatch:
        argv.append("--no-cloudwatch")
    code = dj.drift_main(argv)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines, err
    return code, json.loads(lines[-1]), err


def versions(s3, prefix: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append(v["VersionId"])
    return out


def test_no_champion_is_named_before_anything_is_written(trained, capsys):
    lake, _ = trained
    code, s, err = drift(lake, capsys, "--alias", "nobody")
    assert code == 1 and s["failed"]
    assert "no model version of fraud-detector has the alias nobody" in s["msg"]
    code, s, err = drift(lake, capsys, "--model-version", "99")
    assert code == 1 and "has no version 99" in s["msg"] and "--model-version" in s["msg"]
    assert keys(lake["s3"], "reports/") == []


def test_report_written_summary_last_then_unchanged_and_check_writes_nothing(trained, capsys):
    lake, trained_summary = trained
    s3 = lake["s3"]
    dv = s3_json(s3, f"curated/{DATASET}/latest")["version"]
    code, s, err = drift(lake, capsys, "--check")
    assert code == 0, err
    assert (s["status"], s["changed"]) == ("would_report", True)
    assert keys(s3, "reports/") == []

    code, s, err = drift(lake, capsys, cloudwatch=True)
    assert code == 0, err
    assert (s["status"], s["changed"], s["model_version"], s["model_name"]) == ("reported", True, "1", MODEL)
    run = s["run"]
    prefix = f"reports/drift/{run}/"
    assert sorted(keys(s3, "reports/")) == sorted(
        f"{prefix}{n}" for n in ("report.html", "report.json", "summary.json")
    )
    assert s["report"] == {n: f"s3://{BUCKET}/{prefix}{f}" for n, f in
                           (("html", "report.html"), ("json", "report.json"), ("summary", "summary.json"))}  # fmt: skip
    stamps = {k: s3.head_object(Bucket=BUCKET, Key=k)["LastModified"] for k in keys(s3, prefix)}
    assert stamps[f"{prefix}summary.json"] == max(stamps.values())

    # The reference: the model's curated version, its train window as the training run's split reported it.
    split = trained_summary["split"]
    assert s["reference"]["dataset_version"] == trained_summary["dataset_version"] == dv
    assert s["reference"]["window"] == [split["train"]["dt_min"], split["edges"]["train_end"]]
    assert s["reference"]["rows"] == 2000
    assert s["current"] == {"source": "curated", "dataset_version": dv, "rows": 2000}

    html = s3.get_object(Bucket=BUCKET, Key=f"{prefix}report.html")["Body"].read()
    assert html.lstrip().lower().startswith(b"<!doctype html>") and b"<script" in html and b'src="http' not in html
    evidently = s3_json(s3, f"{prefix}report.json")
    count = next(m for m in evidently["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount"))
    drifts = [m for m in evidently["metrics"] if m["config"]["type"].endswith("ValueDrift")]
    assert s["columns"] == len(drifts) and s["drifted_columns"] == count["value"]["count"]
    assert s["drift_share"] == pytest.approx(count["value"]["share"], abs=1e-6)  # the summary rounds to 6 places
    assert s["drift_detected"] == (s["drift_share"] >= 0.3) and s["threshold"] == 0.3
    by_column = {m["config"]["column"]: m["value"] for m in drifts}
    assert s["prediction_drift"]["score"] == pytest.approx(by_column["prediction"], abs=1e-6)
    assert "TransactionID" not in by_column and "TransactionDT" not in by_column
    assert len(s["top_drifted"]) == 5 and all(
        t["score"] == pytest.approx(by_column[t["column"]], abs=1e-6) for t in s["top_drifted"]
    )
    stored = s3_json(s3, f"{prefix}summary.json")
    assert (stored["run"], stored["drift_share"], stored["top_drifted"]) == (run, s["drift_share"], s["top_drifted"])

    metrics = boto3.client("cloudwatch", endpoint_url=lake["endpoint"]).list_metrics(Namespace="FraudDemo")["Metrics"]
    names = {m["MetricName"] for m in metrics if {"Name": "Stage", "Value": "monitor"} in m["Dimensions"]}
    assert {"DriftShare", "DriftedColumns", "PredictionDrift", "FeatureDrift"} <= names
    features = {d["Value"] for m in metrics if m["MetricName"] == "FeatureDrift" for d in m["Dimensions"]
                if d["Name"] == "Feature"}  # fmt: skip
    assert features == {t["column"] for t in s["top_drifted"] if t["score"] is not None}

    before = versions(s3, "reports/")
    code, again, err = drift(lake, capsys)
    assert code == 0, err
    assert (again["status"], again["changed"], again["run"]) == ("unchanged", False, run)
    assert (again["drift_share"], again["top_drifted"], again["reference"]) == (
        s["drift_share"],
        s["top_drifted"],
        s["reference"],
    )
    code, check, err = drift(lake, capsys, "--check")
    assert (code, check["status"], check["changed"]) == (0, "unchanged", False)
    assert versions(s3, "reports/") == before

    # Other settings are another report.
    code, other, err = drift(lake, capsys, "--seed", "7", "--check")
    assert (code, other["status"]) == (0, "would_report") and other["run"] != run


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--current", "abc"], 2, "--current 'abc' is not latest, inference or a curated version id"),
        (["--threshold", "0"], 2, "--threshold is a share of columns"),
        (["--current", "0123456789abcdef"], 1, "no current data: curated version 0123456789abcdef"),
        (["--current", "inference"], 1, "no current data: no inference samples under"),
    ],
)
def test_bad_settings_and_missing_current_data_fail_with_one_message(trained, capsys, args, code, words):
    lake, _ = trained
    before = versions(lake["s3"], "reports/")
    got, s, err = drift(lake, capsys, *args)
    assert got == code and s["failed"] and words in s["msg"], s["msg"]
    assert f"fraud-demo-drift: error: {s['msg']}" in err
    assert versions(lake["s3"], "reports/") == before


def test_the_reference_version_gone_and_no_curated_data_are_named(trained, capsys):
    lake, trained_summary = trained
    s3 = lake["s3"]
    dv = trained_summary["dataset_version"]
    manifest_key = f"curated/{DATASET}/{dv}/manifest.json"
    latest_key = f"curated/{DATASET}/latest"
    manifest, latest = (s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in (manifest_key, latest_key))
    before = keys(s3, "reports/")
    try:
        s3.delete_object(Bucket=BUCKET, Key=latest_key)
        code, s, _ = drift(lake, capsys)
        assert code == 1 and "no curated version of ieee-fraud-detection yet" in s["msg"] and "ingest" in s["msg"]
        s3.delete_object(Bucket=BUCKET, Key=manifest_key)
        code, s, _ = drift(lake, capsys)
        assert code == 1 and s["msg"].startswith("the reference data is gone: model fraud-detector v1 was trained on")
        assert dv in s["msg"] and "retrain" in s["msg"]
    finally:
        s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=manifest)
        s3.put_object(Bucket=BUCKET, Key=latest_key, Body=latest)
    assert keys(s3, "reports/") == before
    assert client(lake).get_model_version_by_alias(MODEL, "champion").version == "1"
