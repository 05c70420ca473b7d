"""scripts/summary.py's "Curated dataset" and "Ingest log" sections, against in-process moto (no sandbox needed)."""

import importlib.util
import json
import os
import re
import socket
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
    for key in [k for k in os.environ if k.startswith(("AWS_", "MLFLOW_"))]:
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
    assert "Model (fraud-detector, MLflow registry):\n  (no tracking server given: set MLFLOW_TRACKING_URI" in out
    assert "MLflow UI:\n  aws ssm start-session --target <instance id> --document-name" in out


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


# The "Model" and "MLflow UI" sections, against a registry in a local MLflow store (the same client calls as
# against the tracking server; MLflow keeps its file store for exactly such uses behind this switch).
MODEL = "fraud-detector"
ROC_PNG = b"\x89PNG\r\n\x1a\n roc curve"
PR_PNG = b"\x89PNG\r\n\x1a\n pr curve"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    return uri, MlflowClient(tracking_uri=uri, registry_uri=uri)


def logged_run(client, experiment_id, start, tags, metrics, plots, work):
    """A finished run with these tags, metrics and plots/ artifacts (name -> bytes); its id."""
    run_id = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    if plots:
        folder = work / run_id
        folder.mkdir(parents=True)
        for name, body in plots.items():
            (folder / name).write_bytes(body)
        client.log_artifacts(run_id, str(folder), "plots")
    client.set_terminated(run_id)
    return run_id


def register(client, run_id, alias):
    version = client.create_model_version(MODEL, source=f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias(MODEL, alias, version)
    return version


def test_model_section_shows_the_champion_the_last_decision_and_copies_the_plots(registry, tmp_path):
    uri, client = registry
    experiment = client.create_experiment("fraud-demo")
    client.create_registered_model(MODEL)
    champion_run = logged_run(
        client,
        experiment,
        1_700_000_000_000,
        {
            "fraud_demo.dataset_version": "3f2a9c",
            "fraud_demo.decision": "champion",
            "fraud_demo.reason": "no champion yet; AUC 0.9123 >= 0.75",
        },
        {
            "holdout_roc_auc": 0.91234,
            "holdout_pr_auc": 0.5,
            "holdout_recall_at_1pct_fpr": 0.25,
            "holdout_precision_at_top_1pct": 0.75,
        },
        {"roc.png": ROC_PNG, "pr.png": PR_PNG},
        tmp_path / "work",
    )
    register(client, champion_run, "champion")
    newer = logged_run(
        client,
        experiment,
        1_700_000_600_000,
        {
            "fraud_demo.dataset_version": "77bb01",
            "fraud_demo.decision": "challenger",
            "fraud_demo.reason": "AUC 0.8000 below the champion's 0.9100",
        },
        {"holdout_roc_auc": 0.8},
        {},
        tmp_path / "work",
    )
    register(client, newer, "challenger")

    lines = summary.model_lines(uri, tmp_path / "plots")
    assert lines[0] == f"  {MODEL}: 2 version(s); aliases challenger=2, champion=1"
    assert lines[1] == f"  champion    version 1  (dataset version 3f2a9c, run {champion_run})"
    assert (
        lines[2]
        == "  holdout     roc_auc=0.9123  pr_auc=0.5000  recall_at_1pct_fpr=0.2500  precision_at_top_1pct=0.7500"
    )
    assert lines[3] == (
        f"  last run    {newer}  2023-11-14 22:23:20 UTC  FINISHED  challenger: AUC 0.8000 below the champion's 0.9100"
    )
    copied = tmp_path / "plots" / f"{MODEL}-v1" / "plots"
    assert lines[4] == f"  plots       {copied}/  (pr.png, roc.png)"
    assert (copied / "roc.png").read_bytes() == ROC_PNG
    assert (copied / "pr.png").read_bytes() == PR_PNG
    # Run again (make demo twice): the same lines, the copies overwritten in place.
    assert summary.model_lines(uri, tmp_path / "plots") == lines


def test_model_section_without_a_champion_or_a_model(registry, tmp_path):
    uri, client = registry
    experiment = client.create_experiment("fraud-demo")
    assert summary.model_lines(uri, tmp_path) == [
        f"  (no model {MODEL} registered yet; run playbooks/train.yml)",
        "  last run    (no run in experiment fraud-demo yet)",
    ]
    client.create_registered_model(MODEL)
    run = logged_run(
        client,
        experiment,
        1_700_000_000_000,
        {
            "fraud_demo.dataset_version": "bad",
            "fraud_demo.decision": "challenger",
            "fraud_demo.reason": "AUC 0.5100 below the guardrail 0.75",
        },
        {"holdout_roc_auc": 0.51},
        {},
        tmp_path / "work",
    )
    register(client, run, "challenger")
    assert summary.model_lines(uri, tmp_path) == [
        f"  {MODEL}: 1 version(s); aliases challenger=1",
        "  champion    none: no version has passed the promotion gate",
        f"  last run    {run}  2023-11-14 22:13:20 UTC  FINISHED  challenger: AUC 0.5100 below the guardrail 0.75",
    ]


def test_model_section_when_the_tracking_server_does_not_answer(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    lines = summary.model_lines(f"http://127.0.0.1:{port}", tmp_path)
    assert time.monotonic() - started < 10  # not MLflow's minutes of retries
    assert len(lines) == 1
    assert lines[0].startswith(f"  (tracking server not reachable: no answer from http://127.0.0.1:{port}/health (")
    assert lines[0].endswith("; run playbooks/train.yml, see 'MLflow UI' below)")
    assert summary.model_lines("", tmp_path) == [
        "  (no tracking server given: set MLFLOW_TRACKING_URI, see 'MLflow UI' below)"
    ]


def test_mlflow_ui_is_the_address_on_the_sandbox_and_a_port_forwarding_on_aws():
    assert summary.ui_lines("http://127.0.0.2:5000", sandbox=True) == [
        f"  http://127.0.0.2:5000/#/models/{MODEL}"
        "   (a browser on this machine; any MLflow client after . .sandbox/env)"
    ]
    assert summary.ui_lines("", sandbox=False, instance_id="i-0abc", port=5000) == [
        "  aws ssm start-session --target i-0abc --document-name AWS-StartPortForwardingSession"
        " --parameters portNumber=5000,localPortNumber=5000",
        f"  then open http://localhost:5000/#/models/{MODEL}; with MLFLOW_TRACKING_URI=http://localhost:5000"
        " this summary also shows the champion",
    ]


# The scoring service's side of the summary, against a hand-written stand-in of its HTTP answers (PLAN's API).
SERVICE_TOKEN = "t" * 40
LINEAGE = {
    "model_name": MODEL,
    "model_version": "2",
    "run_id": "abc123",
    "dataset": DATASET,
    "dataset_version": "0123456789abcdef",
    "raw_version_ids": {"raw/x/test_transaction.csv": "v-1", "raw/x/test_identity.csv": None},
    "code_version": "c0de",
    "service_code_version": "5e1f",
    "loaded_at": "2026-11-30T04:00:00Z",
}


@pytest.fixture
def service():
    """A local HTTP server answering /health, /version and POST /predict (token required) like the service."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self.answer(200, {"status": "ok", "model_version": "2", "reason": None, "last_reload": {}})
            else:
                self.answer(200, LINEAGE)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.headers.get("Authorization") != f"Bearer {SERVICE_TOKEN}":
                self.answer(401, {"error": "missing or invalid bearer token", "problems": []})
                return
            self.answer(
                200,
                {
                    "request_id": "r1",
                    "TransactionID": body["TransactionID"],
                    "fraud_probability": 0.25,
                    "model_version": "2",
                    "dataset_version": "0123456789abcdef",
                },
            )

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_curl_command_takes_url_and_token_from_the_environment():
    assert summary.curl_command({"TransactionID": 1, "ProductCD": "W"}) == (
        'curl -s -X POST "$FRAUD_DEMO_SCORING_URL/predict" -H "Authorization: Bearer $FRAUD_DEMO_SCORING_TOKEN"'
        ' -H \'Content-Type: application/json\' -d \'{"TransactionID":1,"ProductCD":"W"}\''
    )


def test_scoring_section_shows_health_and_lineage_and_a_sample_prediction(service):
    lines, served = summary.scoring_lines(service, sandbox=True)
    assert served == "2"
    assert lines == [
        f"  {service}  (ok, version 2)",
        f"  model        {MODEL}",
        "  version      2",
        "  run id       abc123",
        f"  dataset      {DATASET}",
        "  data version 0123456789abcdef",
        "  code version c0de",
        "  service code 5e1f",
        "  loaded at    2026-11-30T04:00:00Z",
        "  raw objects  2 (S3 VersionIds the dataset version was curated from)",
        "    raw/x/test_identity.csv  -",
        "    raw/x/test_transaction.csv  v-1",
    ]
    answer = summary.sample_lines(service, SERVICE_TOKEN)[1]
    assert answer.startswith('  -> 200 {"request_id": "r1", "TransactionID": 3663549, "fraud_probability": 0.25')
    assert summary.sample_lines(service, "")[1].startswith("  -> 401 ")


def test_scoring_section_without_a_url_or_an_answer():
    assert summary.scoring_lines("", sandbox=True) == (
        ["  (no scoring service URL given: set FRAUD_DEMO_SCORING_URL: . .sandbox/env sets it)"],
        None,
    )
    lines, _ = summary.scoring_lines("", sandbox=False, instance_id="i-0abc", port=8080)
    assert lines[1] == (
        "  aws ssm start-session --target i-0abc --document-name AWS-StartPortForwardingSession"
        " --parameters portNumber=8080,localPortNumber=8080"
    )
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines, served = summary.scoring_lines(f"http://127.0.0.1:{port}", sandbox=True)
    assert served is None
    assert lines[0].startswith(f"  (scoring service not reachable: no answer from http://127.0.0.1:{port}/health (")


def test_batch_predictions_of_the_served_version(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    assert summary.predictions_lines(s3, [BUCKET], "2") == [
        "  (none yet under predictions/2/ for model version 2; run playbooks/deploy.yml --skip-tags scoring_service)"
    ]
    for name, size in (("manifest.json", 10), ("predictions.parquet", 2_500_000), ("submission.csv", 1_000_000)):
        s3.put_object(Bucket=BUCKET, Key=f"predictions/2/dv1/{name}", Body=b"x" * size)
    s3.put_object(Bucket=BUCKET, Key="predictions/1/dv1/submission.csv", Body=b"old")
    assert summary.predictions_lines(s3, [BUCKET], "2") == [
        f"  s3://{BUCKET}/predictions/2/dv1/manifest.json  0.00 MB",
        f"  s3://{BUCKET}/predictions/2/dv1/predictions.parquet  2.50 MB",
        f"  s3://{BUCKET}/predictions/2/dv1/submission.csv  1.00 MB",
    ]
    assert summary.predictions_lines(s3, [BUCKET], None) == [
        "  (no served model, so no batch predictions of it to show)"
    ]


# Stage 7's sections: the drift reports under reports/drift/, the alarms, the champion history, the HTML to open.
def drift_summary(model_version, source, dataset_version, share, drifted, columns, detected, top):
    """A summary.json as fraud-demo-drift writes it (the fields the summary reads), hand-written."""
    return {
        "job": "drift",
        "model_version": model_version,
        "current": {"source": source, "dataset_version": dataset_version, "rows": 1000},
        "drift_share": share,
        "drifted_columns": drifted,
        "columns": columns,
        "threshold": 0.3,
        "drift_detected": detected,
        "top_drifted": [{"column": c, "score": s, "stattest": "psi", "drifted": d} for c, s, d in top],
    }


def put_report(s3, run, summary_json, html=b"<html>report</html>"):
    s3.put_object(Bucket=BUCKET, Key=f"reports/drift/{run}/report.html", Body=html)
    s3.put_object(Bucket=BUCKET, Key=f"reports/drift/{run}/report.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"reports/drift/{run}/summary.json", Body=json.dumps(summary_json))


def test_drift_sections_show_every_report_and_download_the_html_of_the_drift(aws, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    assert summary.drift_lines(summary.drift_reports(s3, [BUCKET])) == [
        "  (no drift report yet under reports/drift/; run playbooks/monitor.yml)"
    ]
    assert summary.drift_html_lines(s3, [], tmp_path) == ["  (no drift report to download yet)"]
    put_report(s3, "r1", drift_summary("1", "curated", "aaaa", 0.125, 2, 16, False, [("card1", 0.21, True)]))
    time.sleep(1.1)  # S3 keeps LastModified to the second: each report is newer than the one before
    top = [("TransactionAmt", 1.5, True), ("P_emaildomain", 0.9, True), ("card4", 0.01, False)]
    put_report(s3, "r2", drift_summary("1", "curated", "bbbb", 0.5, 8, 16, True, top), html=b"<html>drifted</html>")
    time.sleep(1.1)
    put_report(s3, "r3", drift_summary("2", "curated", "bbbb", 0.0625, 1, 16, False, [("D1", 0.3, True)]))
    # An incomplete report (no summary.json yet) is not one.
    s3.put_object(Bucket=BUCKET, Key="reports/drift/r4/report.html", Body=b"partial")

    reports = summary.drift_reports(s3, [BUCKET])
    assert [r[1] for r in reports] == ["r1", "r2", "r3"]
    lines = summary.drift_lines(reports)
    assert len(lines) == 6
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert re.fullmatch(
        rf"  #1     {when}  model v1 vs curated aaaa: drift share 0\.125 \(2/16 columns, threshold 0\.3\) no drift",
        lines[0],
    ), lines[0]
    assert lines[1] == "         top drifted: card1 0.210*   (run r1)"
    assert re.fullmatch(
        rf"  #2     {when}  model v1 vs curated bbbb: drift share 0\.500 \(8/16 columns, threshold 0\.3\)"
        " DRIFT DETECTED",
        lines[2],
    ), lines[2]
    assert lines[3] == "         top drifted: TransactionAmt 1.500*, P_emaildomain 0.900*, card4 0.010   (run r2)"
    assert re.fullmatch(
        rf"  #3     {when}  model v2 vs curated bbbb: drift share 0\.062 \(1/16 columns, threshold 0\.3\) no drift",
        lines[4],
    ), lines[4]
    assert lines[5] == "         top drifted: D1 0.300*   (run r3)"

    # The HTML to open is the drift that was found (r2), not the newest report (r3, the new champion's own).
    html = summary.drift_html_lines(s3, reports, tmp_path / "reports")
    local = tmp_path / "reports" / "r2" / "report.html"
    assert html == [f"  {local.resolve()}   (from s3://{BUCKET}/reports/drift/r2/report.html; open it in a browser)"]
    assert local.read_bytes() == b"<html>drifted</html>"

    # Only the newest six are listed, with the count of all.
    quiet = drift_summary("1", "curated", "cccc", 0.0, 0, 16, False, [])
    many = [(BUCKET, f"x{i}", quiet, reports[0][3]) for i in range(8)]
    lines = summary.drift_lines(many)
    assert lines[0].startswith("  #3     ") and lines[-1] == "  (8 reports in all, the newest 6 shown)"


def test_alarm_section_shows_state_and_the_newest_value_against_the_threshold(aws):
    cloudwatch = aws.client("cloudwatch")
    assert summary.alarm_lines(cloudwatch, "fraud-demo", emulated=True) == [
        "  (no alarms named fraud-demo-fraud-demo-*; run playbooks/monitor.yml)"
    ]
    dims = [{"Name": "Dataset", "Value": DATASET}, {"Name": "Stage", "Value": "monitor"}]
    common = {"EvaluationPeriods": 1, "Period": 300, "Statistic": "Maximum", "Dimensions": dims}
    common["ComparisonOperator"] = "GreaterThanOrEqualToThreshold"
    cloudwatch.put_metric_alarm(
        AlarmName="fraud-demo-fraud-demo-drift-share", Namespace="FraudDemo", MetricName="DriftShare",
        Threshold=0.3, **common,
    )  # fmt: skip
    cloudwatch.put_metric_alarm(
        AlarmName="fraud-demo-fraud-demo-p99-latency", Namespace="FraudDemo", MetricName="Latency",
        Threshold=250.0, **{**common, "ComparisonOperator": "GreaterThanThreshold"},
    )  # fmt: skip
    cloudwatch.put_metric_data(
        Namespace="FraudDemo", MetricData=[{"MetricName": "DriftShare", "Dimensions": dims, "Value": 0.62}]
    )
    lines = summary.alarm_lines(cloudwatch, "fraud-demo", emulated=True)
    # moto creates alarms in state OK and never evaluates them: the state is as created, the value tells.
    assert lines[0].startswith("  (the emulator stores alarms but never evaluates them")
    drift, latency = lines[2], lines[3]
    assert drift.split() == [
        "fraud-demo-fraud-demo-drift-share", "OK", "DriftShare", ">=", "0.3:",
        "newest", "0.62", "->", "over", "the", "threshold",
    ]  # fmt: skip
    assert latency.split() == [
        "fraud-demo-fraud-demo-p99-latency", "OK", "Latency", ">", "250.0:", "no", "datapoint",
    ]  # fmt: skip
    assert len(summary.alarm_lines(cloudwatch, "fraud-demo", emulated=False)) == 2  # no emulator note on AWS


def test_champion_history_lists_every_version_with_aliases_and_the_gates_reason(registry, tmp_path):
    uri, client = registry
    assert summary.champion_history_lines("") == ["  (tracking server not reachable; see 'Model' above)"]
    experiment = client.create_experiment("fraud-demo")
    client.create_registered_model(MODEL)
    assert summary.champion_history_lines(uri) == [f"  (no model {MODEL} registered yet)"]
    first = logged_run(
        client, experiment, 1_700_000_000_000,
        {"fraud_demo.dataset_version": "aaaa", "fraud_demo.decision": "champion",
         "fraud_demo.reason": "no champion yet; AUC 0.9000 >= 0.75"},
        {}, {}, tmp_path / "work",
    )  # fmt: skip
    register(client, first, "challenger")
    second = logged_run(
        client, experiment, 1_700_000_600_000,
        {"fraud_demo.dataset_version": "bbbb", "fraud_demo.decision": "champion",
         "fraud_demo.reason": "AUC 0.9400 beats the champion's 0.8800"},
        {}, {}, tmp_path / "work",
    )  # fmt: skip
    register(client, second, "champion")
    lines = summary.champion_history_lines(uri)
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert len(lines) == 2
    assert re.fullmatch(
        rf"  v1   {when}  \[challenger\]  dataset aaaa  champion: no champion yet; AUC 0\.9000 >= 0\.75", lines[0]
    ), lines[0]
    assert re.fullmatch(
        rf"  v2   {when}  \[champion\]  dataset bbbb  champion: AUC 0\.9400 beats the champion's 0\.8800", lines[1]
    ), lines[1]
