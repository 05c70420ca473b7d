#!/usr/bin/env python3
"""Read the curated dataset back through the AWS API and check what the ingest stage promises.

    python scripts/sandboxlib/curatedstate.py verify               # latest -> a complete version; exit 1 on any problem
    python scripts/sandboxlib/curatedstate.py verify --versions 1  # and exactly one version exists

Promises: curated/<dataset>/latest points at a version whose manifest.json exists; every Parquet object the
manifest lists exists and holds the manifest's valid rows; quarantine/<dataset>/<version>/ holds exactly the
rejected rows the manifest counts, one CSV per table with any; nothing else lies under either prefix.

Used by the Molecule ml scenario (verify_ingest.yml) and the end-to-end test. Works against the sandbox emulator
(AWS_ENDPOINT_URL) or a real account.
"""

import argparse
import csv
import io
import json
import sys

import boto3
import pyarrow.parquet as pq
from awsstate import Names, report_problems

# The lake's layout has one owner, the jobs package (pip install -e files, done by make setup).
from fraud_demo_jobs import layout

DATASET = layout.DEFAULT_DATASET
TABLES = {"train_transaction", "train_identity", "test_transaction", "test_identity", "sample_submission"}


def get_json(s3, bucket, key):
    """The object's JSON, or None when it does not exist."""
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def keys_under(s3, bucket, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def versions(s3, bucket, dataset=DATASET):
    """The version ids under curated/<dataset>/ (complete or not)."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=layout.curated_root(dataset), Delimiter="/"
    )
    return sorted(p["Prefix"].rstrip("/").rsplit("/", 1)[1] for page in pages for p in page.get("CommonPrefixes", []))


def check_curated(session, bucket, dataset=DATASET):
    """(pointer, manifest, problems) for curated/<dataset>/latest and the version it points at."""
    s3 = session.client("s3")
    latest_key = layout.latest_key(dataset)
    pointer = get_json(s3, bucket, latest_key)
    if pointer is None:
        return None, None, [f"{latest_key}: missing"]
    version = str(pointer.get("version"))
    prefix, qprefix = layout.curated_prefix(dataset, version), layout.quarantine_prefix(dataset, version)
    manifest_key = layout.manifest_key(dataset, version)
    problems = []
    if pointer != layout.latest_pointer(dataset, version):
        problems.append(f"{latest_key}: {pointer} is not {{dataset, version, manifest}} of this dataset")
    manifest = get_json(s3, bucket, manifest_key)
    if manifest is None:
        return pointer, None, [*problems, f"{manifest_key}: missing (latest points at an incomplete version)"]
    if (manifest.get("dataset"), manifest.get("version")) != (dataset, version):
        problems.append(f"{manifest_key}: describes {manifest.get('dataset')}/{manifest.get('version')}")

    tables = manifest.get("tables", [])
    if {t["name"] for t in tables} != TABLES:
        problems.append(f"{manifest_key}: tables {sorted(t['name'] for t in tables)}, expected {sorted(TABLES)}")
    curated, quarantine = keys_under(s3, bucket, prefix), keys_under(s3, bucket, qprefix)
    for t in tables:
        where = f"{manifest_key}: {t['name']}"
        if t["rows_valid"] + t["rows_quarantined"] != t["rows_in"]:
            problems.append(f"{where}: valid {t['rows_valid']} + quarantined {t['rows_quarantined']} != {t['rows_in']}")
        if not (t["key"].startswith(prefix) and t["key"].endswith(".parquet")):
            problems.append(f"{where}: {t['key']} is not a Parquet object under {prefix}")
        elif t["key"] not in curated:
            problems.append(f"{where}: {t['key']} does not exist")
        else:
            body = s3.get_object(Bucket=bucket, Key=t["key"])["Body"].read()
            rows = pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
            if rows != t["rows_valid"]:
                problems.append(f"{t['key']}: {rows} rows, the manifest says {t['rows_valid']} valid")
        qkey = t.get("quarantine_key")
        if not t["rows_quarantined"]:
            if qkey:
                problems.append(f"{where}: quarantine key {qkey} for 0 quarantined rows")
        elif not qkey or not qkey.startswith(qprefix) or qkey not in quarantine:
            problems.append(f"{where}: {t['rows_quarantined']} quarantined rows but no object under {qprefix} ({qkey})")
        else:
            text = s3.get_object(Bucket=bucket, Key=qkey)["Body"].read().decode()
            rows = sum(1 for _ in csv.reader(io.StringIO(text))) - 1  # minus the header
            if rows != t["rows_quarantined"]:
                problems.append(f"{qkey}: {rows} rows, the manifest says {t['rows_quarantined']} quarantined")

    listed = {manifest_key} | {t["key"] for t in tables} | {t.get("quarantine_key") for t in tables}
    problems += [f"{k}: not listed in the manifest" for k in sorted((curated | quarantine) - listed)]
    totals = {k: sum(t[f"rows_{k}"] for t in tables) for k in ("in", "valid", "quarantined")}
    if manifest.get("rows") != totals:
        problems.append(f"{manifest_key}: rows {manifest.get('rows')}, the tables add up to {totals}")
    return pointer, manifest, problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["verify"])
    parser.add_argument("--project", default="fraud-demo")
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--versions", type=int, help="also expect exactly this many versions under curated/<dataset>/")
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    bucket = Names(session, args.project).bucket
    pointer, manifest, problems = check_curated(session, bucket, args.dataset)
    found = versions(session.client("s3"), bucket, args.dataset)
    if args.versions is not None and len(found) != args.versions:
        problems.append(f"{layout.curated_root(args.dataset)}: {len(found)} versions {found}, expected {args.versions}")
    if manifest:
        print(f"verify: latest -> {pointer['version']}: rows {manifest['rows']}, fraud rate {manifest['fraud_rate']}")
    return report_problems("verify", problems)


if __name__ == "__main__":
    sys.exit(main())
