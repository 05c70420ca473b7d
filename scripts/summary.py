#!/usr/bin/env python3
"""Print what the fraud-demo pipeline created and how to look at it (used at the end of `make demo`).

Reads everything back through the AWS API (the sandbox emulator when AWS_ENDPOINT_URL is set), so the
summary shows what exists, not what the playbooks meant to create.
"""

import argparse
import json
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import boto3
import mlflow.artifacts
from botocore.exceptions import BotoCoreError, ClientError

# The jobs package (installed in .venv by `make setup`) owns the lake's layout and the telemetry names.
from fraud_demo_jobs import layout, tracking
from fraud_demo_jobs.telemetry import DEFAULT_LOG_GROUP, stream_prefix
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PURPOSE = "fraud-demo"
# The registry's names: the train job's defaults (fraud_demo_model_name, train_experiment), and the tracking
# server's port on the node (fraud_demo_mlflow_port) for the SSM port forwarding on AWS.
MODEL_NAME = tracking.DEFAULT_MODEL_NAME
EXPERIMENT = tracking.DEFAULT_EXPERIMENT
MLFLOW_PORT = 5000
CHAMPION = "champion"
# What fraud-demo-train records on its run: tags, holdout metrics (in this order, logged with this prefix), and
# the artifact folder of its plots.
DATASET_VERSION_TAG = tracking.TAG_DATASET_VERSION
DECISION_TAG = tracking.TAG_DECISION
REASON_TAG = tracking.TAG_REASON
METRIC_PREFIX = "holdout_"
METRICS = ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "precision_at_top_1pct")
PLOTS_DIR = "plots"
# The scoring service on the node (roles/scoring_service): its port on AWS, for the SSM port forwarding.
SCORING_PORT = 8080
# The variables .sandbox/env exports for it (the token's name, not a token).
SCORING_URL_ENV = "FRAUD_DEMO_SCORING_URL"
SCORING_TOKEN_ENV = "FRAUD_DEMO_SCORING_TOKEN"  # noqa: S105
# One transaction to score: the first row of the competition's test_transaction.csv (its published first
# columns; files/tests/fixtures/ieee_real/), the contract's required fields and a few optional ones.
SAMPLE_TRANSACTION = {
    "TransactionID": 3663549,
    "TransactionDT": 18403224,
    "TransactionAmt": 31.95,
    "ProductCD": "W",
    "card1": 10409,
    "card2": 111.0,
    "card3": 150.0,
    "card4": "visa",
    "card5": 226.0,
    "card6": "debit",
    "addr1": 170.0,
    "addr2": 87.0,
    "P_emaildomain": "gmail.com",
}
# What /version reports (ModelLineage.as_dict() + loaded_at, service_code_version), in this order.
LINEAGE_FIELDS = (
    ("model", "model_name"),
    ("version", "model_version"),
    ("run id", "run_id"),
    ("dataset", "dataset"),
    ("data version", "dataset_version"),
    ("code version", "code_version"),
    ("service code", "service_code_version"),
    ("loaded at", "loaded_at"),
)
# Stage 7: the drift reports' top features shown, and the alarms (role monitoring_alarms names them
# fraud-demo-<fraud_demo_name>-<what>). The emulator stores alarms but never evaluates them, so their state says
# nothing there: the metric's newest value is shown against the threshold instead.
DRIFT_REPORTS_SHOWN = 6
DRIFT_TOP_SHOWN = 5
ALARM_PREFIX = "fraud-demo-{project}-"
ALARM_LOOKBACK_DAYS = 14
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": (">=", lambda v, t: v >= t),
    "GreaterThanThreshold": (">", lambda v, t: v > t),
    "LessThanThreshold": ("<", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("<=", lambda v, t: v <= t),
}
# A summary, not a progress display: MLflow would draw a bar for every download.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tags_of(pairs):
    return {t["Key"]: t["Value"] for t in pairs or []}


def get_json(s3, bucket, key):
    """An object's JSON, or None when it does not exist."""
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def curated_lines(s3, buckets, dataset):
    """curated/<dataset>/latest, followed to its manifest: version, rows per table, fraud rate, keys."""
    latest_key = layout.latest_key(dataset)
    for bucket in buckets:
        pointer = get_json(s3, bucket, latest_key)
        if pointer is None:
            continue
        manifest = get_json(s3, bucket, pointer["manifest"])
        if manifest is None:
            return [f"  s3://{bucket}/{latest_key} points at {pointer['version']}, whose manifest is missing"]
        version = pointer["version"]
        prefix = layout.curated_prefix(dataset, version)
        out = [f"  version {version}  (s3://{bucket}/{latest_key})"]
        out.append(f"    {'table':<20}{'in':>12}{'valid':>12}{'quarantined':>13}")
        for t in [*manifest["tables"], {"name": "total", **{f"rows_{k}": v for k, v in manifest["rows"].items()}}]:
            out.append(f"    {t['name']:<20}{t['rows_in']:>12,}{t['rows_valid']:>12,}{t['rows_quarantined']:>13,}")
        rate = manifest.get("fraud_rate")
        out.append(f"  fraud rate {'n/a' if rate is None else f'{rate:.2%}'} (labelled valid rows)")
        tables = f"{len(manifest['tables'])} Parquet tables + {layout.MANIFEST_NAME}"
        out.append(f"  curated     s3://{bucket}/{prefix}  ({tables})")
        quarantined = [t for t in manifest["tables"] if t.get("quarantine_key")]
        out.extend(
            f"  quarantine  s3://{bucket}/{t['quarantine_key']}  ({t['rows_quarantined']:,} rows)" for t in quarantined
        )
        if not quarantined:
            out.append(f"  quarantine  s3://{bucket}/{layout.quarantine_prefix(dataset, version)}  (no rows rejected)")
        return out
    return [f"  (nothing ingested yet: no {latest_key}; run playbooks/ingest.yml)"]


def ingest_log_lines(logs, log_group, count=5):
    """The last events of the newest ingest/ log stream, one line each (the events are JSON)."""
    pages = logs.get_paginator("describe_log_streams").paginate(
        logGroupName=log_group, logStreamNamePrefix=stream_prefix("ingest")
    )
    streams = [s for page in pages for s in page.get("logStreams", [])]
    if not streams:
        return ["  (no ingest runs logged yet)"]
    newest = max(streams, key=lambda s: s.get("lastEventTimestamp") or s.get("creationTime", 0))
    name = newest["logStreamName"]
    events = logs.get_log_events(logGroupName=log_group, logStreamName=name, limit=count, startFromHead=False)
    out = [f"  {log_group} / {name}, last {len(events['events'])} events (UTC):"]
    for e in events["events"]:
        when = datetime.fromtimestamp(e["timestamp"] / 1000, timezone.utc).strftime("%H:%M:%S")
        try:
            fields = json.loads(e["message"])
        except ValueError:
            out.append(f"    {when}  {e['message']}")
            continue
        for key in ("job", "run_id", "dataset"):  # the same in every event of the stream
            fields.pop(key, None)
        values = (f"{k}={shorten(json.dumps(v), 80)}" for k, v in fields.items() if k != "event")
        out.append(f"    {when}  {fields.get('event', '?'):<10} {'  '.join(values)}")
    return out


def tracking_server_problem(uri, timeout=5):
    """Why the tracking server at `uri` cannot be used, or None when it answers /health (a local store always can).

    Asked first because MLflow's client retries a refused connection for minutes before it gives up.
    """
    if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
        return None
    try:
        # Only http(s) gets here (checked above): the URL is the tracking server's.
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as answer:  # noqa: S310
            return None if answer.status == 200 else f"/health answered {answer.status}"
    except (urllib.error.URLError, OSError) as e:
        return f"no answer from {uri}/health ({getattr(e, 'reason', e)})"


def metric_line(metrics):
    """The holdout metrics in a fixed order (those the run logged), 4 decimals."""
    shown = [f"{name}={metrics[METRIC_PREFIX + name]:.4f}" for name in METRICS if METRIC_PREFIX + name in metrics]
    return "  ".join(shown) or "(no holdout metrics logged)"


def copy_plots(client, run_id, tracking_uri, dest):
    """Download the run's plots/ artifacts into `dest`; the local PNG paths, sorted ([] when it logged none)."""
    if not client.list_artifacts(run_id, PLOTS_DIR):
        return []
    dest.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=PLOTS_DIR, dst_path=str(dest), tracking_uri=tracking_uri
    )
    return sorted(str(p) for p in Path(local).glob("*.png"))


def last_run_line(client, experiment):
    """The newest run of the experiment: when, its decision and why (the gate's words)."""
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        if found
        else []
    )
    if not runs:
        return f"  last run    (no run in experiment {experiment} yet)"
    run = runs[0]
    when = datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    tags = run.data.tags
    decision = tags.get(DECISION_TAG) or "no decision"
    reason = f": {tags[REASON_TAG]}" if tags.get(REASON_TAG) else ""
    return f"  last run    {run.info.run_id}  {when}  {run.info.status}  {decision}{reason}"


def model_lines(tracking_uri, plots_root, name=MODEL_NAME, experiment=EXPERIMENT):
    """The champion (version, dataset version, metrics, run), the last run's decision and the plots, copied to
    plots_root/<name>-v<version>/. Read through the tracking server, which is what users and the UI see."""
    if not tracking_uri:
        return ["  (no tracking server given: set MLFLOW_TRACKING_URI, see 'MLflow UI' below)"]
    problem = tracking_server_problem(tracking_uri)
    if problem:
        return [f"  (tracking server not reachable: {problem}; run playbooks/train.yml, see 'MLflow UI' below)"]
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            return [f"  (no model {name} registered yet; run playbooks/train.yml)", last_run_line(client, experiment)]
        aliases = client.get_registered_model(name).aliases
        out = [
            f"  {name}: {len(versions)} version(s); aliases {', '.join(f'{a}={v}' for a, v in sorted(aliases.items()))}"
        ]
        if CHAMPION not in aliases:
            out.append("  champion    none: no version has passed the promotion gate")
            out.append(last_run_line(client, experiment))
            return out
        version = client.get_model_version_by_alias(name, CHAMPION)
        run = client.get_run(version.run_id)
        dataset_version = run.data.tags.get(DATASET_VERSION_TAG, "unknown")
        out.append(
            f"  champion    version {version.version}  (dataset version {dataset_version}, run {run.info.run_id})"
        )
        out.append(f"  holdout     {metric_line(run.data.metrics)}")
        out.append(last_run_line(client, experiment))
        plots = copy_plots(client, run.info.run_id, tracking_uri, plots_root / f"{name}-v{version.version}")
        if plots:
            out.append(f"  plots       {Path(plots[0]).parent}/  ({', '.join(Path(p).name for p in plots)})")
            out.append(f"              copied from the run's artifacts ({run.info.artifact_uri}/{PLOTS_DIR})")
        else:
            out.append(f"  plots       (the run logged none under {PLOTS_DIR}/)")
        return out
    except MlflowException as e:
        return [f"  (cannot read the registry at {tracking_uri}: {shorten(str(e).splitlines()[0], 160)})"]


def ui_lines(tracking_uri, sandbox, instance_id=None, port=MLFLOW_PORT, name=MODEL_NAME):
    """How to open the MLflow UI: the sandbox node shares this machine's network, so its address works as is; on
    AWS the server listens on the instance's loopback only, reached through an SSM port forwarding session."""
    if sandbox:
        if not tracking_uri:
            return ["  (no MLFLOW_TRACKING_URI: . .sandbox/env, written by make sandbox-up, sets it)"]
        url = f"{tracking_uri.rstrip('/')}/#/models/{name}"
        return [f"  {url}   (a browser on this machine; any MLflow client after . .sandbox/env)"]
    return [
        f"  aws ssm start-session --target {instance_id or '<instance id>'}"
        f" --document-name AWS-StartPortForwardingSession --parameters portNumber={port},localPortNumber={port}",
        f"  then open http://localhost:{port}/#/models/{name}; with MLFLOW_TRACKING_URI=http://localhost:{port}"
        " this summary also shows the champion",
    ]


def http_json(url, body=None, token=None, timeout=10):
    """(status, parsed JSON body or the text) of a GET, or of a POST when `body` is given; (None, reason) when
    nothing answers."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (the service's http URL)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return None, f"no answer from {url} ({getattr(e, 'reason', e)})"
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def curl_command(body):
    """The curl command a user can paste (after `. .sandbox/env`, or with the variables set for a tunnel): the
    URL and the token come from the environment, so the secret is never printed."""
    return (
        f'curl -s -X POST "${SCORING_URL_ENV}/predict" -H "Authorization: Bearer ${SCORING_TOKEN_ENV}"'
        f" -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body, separators=(',', ':')))}"
    )


def lineage_lines(version):
    """The served model's lineage (/version): model, run, dataset version, raw objects' VersionIds, code."""
    out = [f"  {label:<13}{version.get(key) if version.get(key) is not None else '-'}" for label, key in LINEAGE_FIELDS]
    raw = version.get("raw_version_ids") or {}
    out.append(f"  {'raw objects':<13}{len(raw)} (S3 VersionIds the dataset version was curated from)")
    out.extend(f"    {key}  {vid or '-'}" for key, vid in sorted(raw.items()))
    return out


def scoring_lines(url, sandbox, instance_id=None, port=SCORING_PORT):
    """(lines, served version): the service's health and the served model's lineage from /version."""
    if not url:
        where = "FRAUD_DEMO_SCORING_URL: . .sandbox/env sets it" if sandbox else "FRAUD_DEMO_SCORING_URL"
        out = [f"  (no scoring service URL given: set {where})"]
        if not sandbox:
            out.append(
                f"  aws ssm start-session --target {instance_id or '<instance id>'} --document-name"
                f" AWS-StartPortForwardingSession --parameters portNumber={port},localPortNumber={port}"
            )
            out.append(f"  then FRAUD_DEMO_SCORING_URL=http://localhost:{port} and FRAUD_DEMO_SCORING_TOKEN (Vault)")
        return out, None
    url = url.rstrip("/")
    status, health = http_json(f"{url}/health")
    if status != 200 or not isinstance(health, dict):
        problem = health if status is None else f"/health answered {status}"
        return [f"  (scoring service not reachable: {problem}; run playbooks/deploy.yml)"], None
    served = health.get("model_version")
    out = [f"  {url}  ({health.get('status', '?')}, version {served or 'none'})"]
    status, version = http_json(f"{url}/version")
    if status == 200 and isinstance(version, dict):
        out.extend(lineage_lines(version))
    else:
        reason = version.get("error") if isinstance(version, dict) else version
        out.append(f"  (no model served yet: /version answered {status}: {shorten(str(reason), 120)})")
    return out, served


def sample_lines(url, token):
    """One sample prediction: the curl command a user can paste, and the service's answer to it."""
    out = [f"  {curl_command(SAMPLE_TRANSACTION)}"]
    status, answer = http_json(f"{url.rstrip('/')}/predict", SAMPLE_TRANSACTION, token)
    out.append(f"  -> {status} {json.dumps(answer) if isinstance(answer, dict) else shorten(str(answer), 160)}")
    return out


def predictions_lines(s3, buckets, model_version):
    """Where the batch predictions of the served version are: predictions/<model-version>/<dataset-version>/."""
    if model_version is None:
        return ["  (no served model, so no batch predictions of it to show)"]
    prefix = layout.predictions_model_prefix(str(model_version))
    for bucket in buckets:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        objects = [o for page in pages for o in page.get("Contents", [])]
        if objects:
            return [
                f"  s3://{bucket}/{o['Key']}  {o['Size'] / 1e6:,.2f} MB"
                for o in sorted(objects, key=lambda o: o["Key"])
            ]
    return [
        f"  (none yet under {prefix} for model version {model_version};"
        " run playbooks/deploy.yml --skip-tags scoring_service)"
    ]


def drift_reports(s3, buckets):
    """Every complete drift report (its summary.json exists, written last): (bucket, run, summary, written at),
    oldest first."""
    found = []
    for bucket in buckets:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.DRIFT_REPORTS)
        for obj in (o for page in pages for o in page.get("Contents", [])):
            run, _, name = obj["Key"][len(layout.DRIFT_REPORTS) :].partition("/")
            if name == layout.DRIFT_SUMMARY:
                found.append((bucket, run, get_json(s3, bucket, obj["Key"]) or {}, obj["LastModified"]))
    return sorted(found, key=lambda r: r[3])


def drift_line(label, report):
    """One report: when, which model and data, the drift share against its threshold, the top drifted columns."""
    _, run, s, written = report
    current = s.get("current") or {}
    share, threshold = s.get("drift_share"), s.get("threshold")
    verdict = "DRIFT DETECTED" if s.get("drift_detected") else "no drift"
    top = ", ".join(
        f"{c['column']} {c['score']:.3f}{'*' if c.get('drifted') else ''}"
        for c in (s.get("top_drifted") or [])[:DRIFT_TOP_SHOWN]
    )
    share_text = "?" if share is None else f"{share:.3f}"
    return [
        f"  {label:<7}{written:%Y-%m-%d %H:%M} UTC  model v{s.get('model_version', '?')}"
        f" vs {current.get('source', '?')} {current.get('dataset_version') or ''}: drift share {share_text}"
        f" ({s.get('drifted_columns', '?')}/{s.get('columns', '?')} columns, threshold {threshold}) {verdict}",
        f"         top drifted: {top or '-'}   (run {run})",
    ]


def drift_lines(reports):
    """Every report, oldest first (the newest DRIFT_REPORTS_SHOWN): in make demo the first champion's own, the
    drifted batch against it (the drift that made the loop retrain), then the new champion's own."""
    if not reports:
        return [f"  (no drift report yet under {layout.DRIFT_REPORTS}; run playbooks/monitor.yml)"]
    shown = reports[-DRIFT_REPORTS_SHOWN:]
    first = len(reports) - len(shown) + 1
    lines = [line for i, report in enumerate(shown, first) for line in drift_line(f"#{i}", report)]
    return lines + ([f"  ({len(reports)} reports in all, the newest {len(shown)} shown)"] if first > 1 else [])


def drift_html_lines(s3, reports, dest):
    """The HTML of the newest report that found drift (else of the newest), downloaded to dest/<run>/report.html,
    so a browser on this machine opens it."""
    if not reports:
        return ["  (no drift report to download yet)"]
    bucket, run, _, _ = next((r for r in reversed(reports) if r[2].get("drift_detected")), reports[-1])
    key = layout.drift_report_prefix(run) + layout.DRIFT_HTML
    local = dest / run / layout.DRIFT_HTML
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        s3.download_file(bucket, key, str(local))
    except ClientError as e:
        return [f"  (cannot download s3://{bucket}/{key}: {e})"]
    return [f"  {local.resolve()}   (from s3://{bucket}/{key}; open it in a browser)"]


def newest_value(cloudwatch, alarm, days=ALARM_LOOKBACK_DAYS):
    """The newest datapoint of the alarm's metric in its own statistic, or None (no data, or a math alarm)."""
    if not alarm.get("MetricName"):
        return None
    period = alarm.get("Period") or 60
    # A datapoint sent just now belongs to the period that is still open: end the query after it.
    end = datetime.now(timezone.utc).timestamp() + period
    stat = {"ExtendedStatistics": [alarm["ExtendedStatistic"]]} if alarm.get("ExtendedStatistic") else {}
    stat = stat or {"Statistics": [alarm.get("Statistic") or "Maximum"]}
    points = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm.get("Dimensions", []),
        StartTime=end - days * 86400,
        EndTime=end,
        Period=period,
        **stat,
    )["Datapoints"]
    if not points:
        return None
    newest = max(points, key=lambda p: p["Timestamp"])
    values = newest.get("ExtendedStatistics") or {k: v for k, v in newest.items() if k not in ("Timestamp", "Unit")}
    return next(iter(values.values()), None)


def alarm_lines(cloudwatch, project, emulated):
    """Each alarm: its state, and its metric's newest value against the threshold (what AWS would evaluate)."""
    prefix = ALARM_PREFIX.format(project=project)
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=prefix).get("MetricAlarms", [])
    if not alarms:
        return [f"  (no alarms named {prefix}*; run playbooks/monitor.yml)"]
    out = []
    if emulated:
        out.append("  (the emulator stores alarms but never evaluates them: the state is as created; the metric's")
        out.append("   newest value against the threshold is what CloudWatch on AWS would judge)")
    for alarm in sorted(alarms, key=lambda a: a["AlarmName"]):
        symbol, breaches = COMPARISONS.get(alarm.get("ComparisonOperator"), ("?", lambda v, t: False))
        threshold = alarm.get("Threshold")
        what = alarm.get("MetricName") or "metric math"
        value = newest_value(cloudwatch, alarm)
        if value is None:
            seen = "no datapoint" if alarm.get("MetricName") else "not computed here"
        else:
            seen = f"newest {value:.4g} -> {'over' if breaches(value, threshold) else 'within'} the threshold"
        out.append(f"  {alarm['AlarmName']:<40}{alarm['StateValue']:<18}{what} {symbol} {threshold}: {seen}")
    return out


def champion_history_lines(tracking_uri, name=MODEL_NAME):
    """Every version, oldest first: its aliases now, its dataset version and the gate's decision with the reason."""
    if not tracking_uri or tracking_server_problem(tracking_uri):
        return ["  (tracking server not reachable; see 'Model' above)"]
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
        if not versions:
            return [f"  (no model {name} registered yet)"]
        aliases = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        out = []
        for v in versions:
            tags = client.get_run(v.run_id).data.tags if v.run_id else {}
            when = datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
            held = ",".join(sorted(aliases.get(str(v.version), []))) or "-"
            reason = f": {tags[REASON_TAG]}" if tags.get(REASON_TAG) else ""
            out.append(
                f"  v{v.version:<4}{when} UTC  [{held}]  dataset {tags.get(DATASET_VERSION_TAG, '?')}"
                f"  {tags.get(DECISION_TAG) or 'no decision'}{reason}"
            )
        return out
    except MlflowException as e:
        return [f"  (cannot read the registry at {tracking_uri}: {shorten(str(e).splitlines()[0], 160)})"]


def monitor_lines(session, s3, buckets, args, emulated, reports_root):
    """The summary's last sections, each degrading to a note when its part is not there."""
    out = ["Drift (fraud-demo-drift: share of drifted columns against the champion's training window):"]
    try:
        reports = drift_reports(s3, buckets)
        out.extend(drift_lines(reports))
    except (BotoCoreError, ClientError) as e:
        reports = []
        out.append(f"  (cannot list the drift reports: {e})")
    out.append("Alarms (CloudWatch):")
    try:
        out.extend(alarm_lines(session.client("cloudwatch"), args.project, emulated))
    except (BotoCoreError, ClientError) as e:
        out.append(f"  (cannot read the alarms: {e})")
    out.append(f"Champion history ({args.model_name}: versions, aliases, the gate's decision and reason):")
    out.extend(champion_history_lines(args.tracking_uri, args.model_name))
    out.append("Drift report to open (the newest that found drift, else the newest):")
    out.extend(drift_html_lines(s3, reports, reports_root))
    return out


def shorten(text, width):
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=os.environ.get("FRAUD_DEMO_NAME", "fraud-demo"))
    parser.add_argument("--log-group", default=DEFAULT_LOG_GROUP)
    parser.add_argument("--dataset", default=layout.default_dataset())
    parser.add_argument("--tracking-uri", default=os.environ.get(tracking.TRACKING_URI_ENV, ""))
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--experiment", default=EXPERIMENT)
    parser.add_argument("--mlflow-port", type=int, default=MLFLOW_PORT, help="the tracking server's port on the node")
    parser.add_argument("--scoring-url", default=os.environ.get(SCORING_URL_ENV, ""))
    parser.add_argument("--scoring-port", type=int, default=SCORING_PORT, help="the scoring service's port on the node")
    parser.add_argument(
        "--plots-dir", type=Path, help="where the champion's plots are copied (.sandbox/plots, or plots)"
    )
    parser.add_argument(
        "--reports-dir", type=Path, help="where the newest drift report's HTML is copied (.sandbox/reports, or reports)"
    )
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    region = session.region_name
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    plots_root = args.plots_dir or Path(".sandbox/plots" if endpoint else "plots")
    reports_root = args.reports_dir or Path(".sandbox/reports" if endpoint else "reports")
    out = []
    try:
        account = session.client("sts").get_caller_identity()["Account"]
        s3 = session.client("s3")
        buckets, ours = [], []
        for b in s3.list_buckets().get("Buckets", []):
            try:
                tags = tags_of(s3.get_bucket_tagging(Bucket=b["Name"]).get("TagSet"))
            except ClientError:
                continue
            if tags.get("Purpose") == PURPOSE and tags.get("Project") == args.project:
                ours.append(b["Name"])
                versioning = s3.get_bucket_versioning(Bucket=b["Name"]).get("Status", "Off")
                buckets.append(f"s3://{b['Name']}  (versioning {versioning})")
                pages = s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"], Prefix=layout.RAW)
                for obj in (o for page in pages for o in page.get("Contents", [])):
                    buckets.append(f"    {obj['Key']}  {obj['Size'] / 1e6:,.1f} MB")
        logs = session.client("logs")
        groups = logs.describe_log_groups(logGroupNamePrefix=args.log_group).get("logGroups", [])
        curated = curated_lines(s3, ours, args.dataset)
        if any(g["logGroupName"] == args.log_group for g in groups):
            ingest_logs = ingest_log_lines(logs, args.log_group)
        else:
            ingest_logs = [f"  (no log group {args.log_group})"]
        ec2 = session.client("ec2")
        filters = [
            {"Name": "tag:Purpose", "Values": [PURPOSE]},
            {"Name": "tag:Project", "Values": [args.project]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        instances = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
        iam = session.client("iam")
        role_name = f"{args.project}-node"
        try:
            role = iam.get_role(RoleName=role_name)["Role"]
            attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
            policies = [p["PolicyName"] for p in attached]
        except iam.exceptions.NoSuchEntityException:
            role, policies = None, []
    except (BotoCoreError, ClientError) as e:
        print(f"summary: cannot read the AWS resources back ({e})", file=sys.stderr)
        return 1

    where = f"sandbox emulator at {endpoint}" if endpoint else "AWS"
    out.append(f"fraud-demo on {where} — account {account}, region {region}")
    out.append("")
    out.append("Buckets:")
    out.extend(f"  {b}" for b in buckets or ["(none)"])
    out.append("Log group:")
    out.extend(f"  {g['logGroupName']}  (retention {g.get('retentionInDays', 'never expires')} days)" for g in groups)
    if not groups:
        out.append("  (none)")
    out.append("Node role:")
    out.append(f"  {role['Arn']}  policies: {', '.join(sorted(policies))}" if role else "  (none)")
    out.append("Node:")
    for i in instances:
        md = i.get("MetadataOptions", {})
        out.append(
            f"  {i['InstanceId']}  {i['InstanceType']}  {i['State']['Name']}  image {i['ImageId']}"
            f"  IMDSv2 {'required' if md.get('HttpTokens') == 'required' else 'OPTIONAL'}"
        )
    if not instances:
        out.append("  (none)")
    out.append(f"Curated dataset ({args.dataset}):")
    out.extend(curated)
    out.append("Ingest log:")
    out.extend(ingest_logs)
    out.append(f"Model ({args.model_name}, MLflow registry{' at ' + args.tracking_uri if args.tracking_uri else ''}):")
    out.extend(model_lines(args.tracking_uri, plots_root, args.model_name, args.experiment))
    out.append("MLflow UI:")
    instance_id = instances[0]["InstanceId"] if instances else None
    out.extend(ui_lines(args.tracking_uri, bool(endpoint), instance_id, args.mlflow_port, args.model_name))
    if endpoint:
        out.append("Sandbox node (stands in for the instance; configured by playbooks/configure.yml):")
        out.append("  scripts/sandbox-node.sh ssh 'bash -lc \"fraud-demo-generate --help\"'   # jobs on PATH")
        out.append("  scripts/sandbox-node.sh ssh 'ls -l /opt/fraud-demo'   # one venv, owned by ubuntu")
    out.append("")
    out.append("Look for yourself:")
    prefix = ". .sandbox/env && " if endpoint else ""
    out.append(f"  {prefix}.venv/bin/ansible-inventory -i inventory/aws --graph     # how Ansible finds the node")
    out.append(f"  {prefix}.venv/bin/python -c \"import boto3; print(boto3.client('s3').list_buckets()['Buckets'])\"")
    out.append("  aws s3 ls   # with the aws CLI, after the same `. .sandbox/env`")
    out.append(
        "Tear down: .venv/bin/ansible-playbook -i inventory/sandbox playbooks/teardown.yml"
        " [-e fraud_demo_delete_data=true]"
        if endpoint
        else "Tear down: ansible-playbook -i inventory/aws playbooks/teardown.yml [-e fraud_demo_delete_data=true]"
    )
    # Last: the scoring service (stage 6), the batch predictions of the version it serves, a sample prediction.
    out.append("")
    out.append("Scoring service (the registry's champion; lineage from /version):")
    served_lines, served = scoring_lines(args.scoring_url, bool(endpoint), instance_id, args.scoring_port)
    out.extend(served_lines)
    out.append(f"Batch predictions (fraud-demo-score, model version {served or '-'}):")
    try:
        out.extend(predictions_lines(s3, ours, served))
    except (BotoCoreError, ClientError) as e:
        out.append(f"  (cannot list the predictions: {e})")
    if served_lines and args.scoring_url and "not reachable" not in served_lines[0]:
        hint = "after . .sandbox/env" if endpoint else "with the tunnel's URL and the token from Vault"
        out.append(f"Try it ({hint}):")
        out.extend(sample_lines(args.scoring_url, os.environ.get(SCORING_TOKEN_ENV, "")))
    # Then stage 7: every drift report (the first champion's own, the drifted batch, the new champion's), the
    # alarms, the champion history, and the report of the drift to open.
    out.extend(monitor_lines(session, s3, ours, args, bool(endpoint), reports_root))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
