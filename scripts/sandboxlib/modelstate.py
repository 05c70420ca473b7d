#!/usr/bin/env python3
"""Read the model registry back through MLflow and S3 and check what the train stage promises.

    python scripts/sandboxlib/modelstate.py verify --versions 1   # exit 1 on any problem

Promises: the registered model has exactly the expected number of versions and the alias `champion`; the
champion's run is FINISHED and its tags name the curated version that `latest` points at, every raw object
VersionId of that version's manifest and the code version; the run's plots are objects under
s3://<bucket>/models/ (the tracking server's artifact store); the registry's backup under
s3://<bucket>/registry/ is a SQLite database that holds the same versions and aliases as the server.

Used by the Molecule train scenario (verify) and the end-to-end test. Needs MLFLOW_TRACKING_URI (the sandbox's
.sandbox/env exports it) or --tracking-uri, and the AWS environment (AWS_ENDPOINT_URL on the sandbox).
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile

import boto3
from awsstate import Names, report_problems
from fraud_demo_jobs import layout, tracking
from mlflow.tracking import MlflowClient

MODEL_NAME = tracking.DEFAULT_MODEL_NAME
PLOTS = ("roc.png", "pr.png", "feature_importance.png")
REGISTRY_DB = "mlflow.db"
SQLITE_MAGIC = b"SQLite format 3\x00"
# The tags fraud-demo-train puts on its runs.
DATASET_VERSION_TAG = tracking.TAG_DATASET_VERSION
RAW_VERSIONS_TAG = tracking.TAG_RAW_VERSIONS
CODE_VERSION_TAG = tracking.TAG_CODE_VERSION


def snapshot(client, name):
    """{"versions": {version: run_id}, "aliases": {alias: version}} of a registered model (empty when none)."""
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        return {"versions": {}, "aliases": {}}
    model = client.get_registered_model(name)
    return {"versions": {str(v.version): v.run_id for v in versions}, "aliases": dict(model.aliases)}


def runs_by_status(client, status):
    """Ids of the runs, in every experiment, whose status is `status` (RUNNING, FAILED, KILLED, FINISHED)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    return [r.info.run_id for r in client.search_runs(experiments, filter_string=f"attributes.status = '{status}'")]


def artifact_key(artifact_uri, path):
    """The S3 key, under models/, of a run artifact stored through the server's proxy (mlflow-artifacts:/...)."""
    scheme, sep, rest = artifact_uri.partition(":")
    if scheme != "mlflow-artifacts" or not sep:
        raise ValueError(f"{artifact_uri}: not an artifact URI proxied by the tracking server")
    return f"{layout.MODELS}{rest.lstrip('/')}/{path}"


def backup_snapshot(s3, bucket, name):
    """The versions and aliases held by the registry's backup in S3, or None when there is no backup."""
    key = layout.registry_key(REGISTRY_DB)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    if not body.startswith(SQLITE_MAGIC):
        raise ValueError(f"s3://{bucket}/{key} is not a SQLite database")
    with tempfile.NamedTemporaryFile(suffix=".db") as f:
        f.write(body)
        f.flush()
        db = sqlite3.connect(f"file:{f.name}?mode=ro", uri=True)
        try:
            versions = db.execute("SELECT version, run_id FROM model_versions WHERE name = ?", (name,)).fetchall()
            aliases = db.execute("SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,))
            return {"versions": {str(v): r for v, r in versions}, "aliases": {a: str(v) for a, v in aliases}}
        finally:
            db.close()


def check_model(session, bucket, client, name=MODEL_NAME, dataset=layout.DEFAULT_DATASET, versions=None):
    """(snapshot, problems) for the registered model, its champion's run, its plots and the registry backup."""
    s3 = session.client("s3")
    state = snapshot(client, name)
    problems = []
    if versions is not None and len(state["versions"]) != versions:
        problems.append(f"model {name}: versions {sorted(state['versions'])}, expected {versions}")
    champion = state["aliases"].get("champion")
    if champion is None:
        return state, [*problems, f"model {name}: no alias champion (aliases {state['aliases']})"]
    run = client.get_run(state["versions"][champion])
    where = f"model {name} version {champion} (run {run.info.run_id})"
    if run.info.status != "FINISHED":
        problems.append(f"{where}: run status {run.info.status}")

    pointer = json.loads(s3.get_object(Bucket=bucket, Key=layout.latest_key(dataset))["Body"].read())
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=pointer["manifest"])["Body"].read())
    tags = run.data.tags
    if tags.get(DATASET_VERSION_TAG) != pointer["version"]:
        problems.append(f"{where}: {DATASET_VERSION_TAG}={tags.get(DATASET_VERSION_TAG)}, not {pointer['version']}")
    raw = tags.get(RAW_VERSIONS_TAG, "")
    missing = [s["key"] for s in manifest["source"] if not s["version_id"] or s["version_id"] not in raw]
    if missing:
        problems.append(f"{where}: {RAW_VERSIONS_TAG} lacks the VersionIds of {missing} ({raw!r})")
    if not tags.get(CODE_VERSION_TAG):
        problems.append(f"{where}: no {CODE_VERSION_TAG} tag")

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.MODELS)
    keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    for plot in PLOTS:
        key = artifact_key(run.info.artifact_uri, f"plots/{plot}")
        if key not in keys:
            problems.append(f"{where}: no plot s3://{bucket}/{key}")

    backup = backup_snapshot(s3, bucket, name)
    if backup is None:
        problems.append(f"no registry backup s3://{bucket}/{layout.registry_key(REGISTRY_DB)}")
    elif backup != state:
        problems.append(f"the registry backup holds {backup}, the server {state}")
    return state, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["verify"])
    parser.add_argument("--project", default="fraud-demo")
    parser.add_argument("--dataset", default=layout.DEFAULT_DATASET)
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--tracking-uri", default=os.environ.get(tracking.TRACKING_URI_ENV))
    parser.add_argument("--versions", type=int, help="expect exactly this many versions of the model")
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        parser.error("no tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI (. .sandbox/env)")
    session = boto3.session.Session()
    bucket = Names(session, args.project).bucket
    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    state, problems = check_model(session, bucket, client, args.model_name, args.dataset, args.versions)
    running = runs_by_status(client, "RUNNING")
    problems += [f"run {r}: left RUNNING" for r in running]
    print(f"verify: {args.model_name}: versions {state['versions']}, aliases {state['aliases']}")
    return report_problems("verify", problems)


if __name__ == "__main__":
    sys.exit(main())
