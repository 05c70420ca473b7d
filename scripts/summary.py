#!/usr/bin/env python3
"""Print what the fraud-demo pipeline created and how to look at it (used at the end of `make demo`).

Reads everything back through the AWS API (the sandbox emulator when AWS_ENDPOINT_URL is set), so the
summary shows what exists, not what the playbooks meant to create.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# The jobs package (installed in .venv by `make setup`) owns the lake's layout and the telemetry names.
from fraud_demo_jobs import layout
from fraud_demo_jobs.telemetry import DEFAULT_LOG_GROUP, stream_prefix

PURPOSE = "fraud-demo"


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


def shorten(text, width):
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=os.environ.get("FRAUD_DEMO_NAME", "fraud-demo"))
    parser.add_argument("--log-group", default=DEFAULT_LOG_GROUP)
    parser.add_argument("--dataset", default=layout.default_dataset())
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    region = session.region_name
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
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
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
