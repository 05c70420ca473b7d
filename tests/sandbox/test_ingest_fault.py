"""Fault test on the sandbox: the AWS endpoint dies while the node's ingest job is publishing.

The node reaches the emulator through a loopback proxy that dies once the node has uploaded ~0.5 MB (curated
Parquet bodies), exactly as a dead endpoint looks to the job (moto keeps its state in memory, so killing moto
itself would erase what this test has to inspect; see tests/fakes/killable_proxy.py). Then: the playbook fails
with the job's one-line message, no curated version is complete, `latest` is not written, the raw objects are
untouched; and a re-run through the live endpoint converges on the same version, complete and without strays.
"""

import hashlib
import json
import sys
from urllib.parse import urlparse

import pytest
from conftest import ROOT, one_line

sys.path.insert(0, str(ROOT / "tests" / "fakes"))
from killable_proxy import KillableProxy

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

# The stages up to ingest: tests/sandbox/test_ml.py runs the whole site.yml with the train and deploy stages.
ROWS = ["-e", "fraud_demo_synthetic_rows=20000", "--skip-tags", "train,deploy,monitor"]
DATASET = "ieee-fraud-detection"


def keys(s3, bucket, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def raw_state(s3, bucket):
    versions = s3.list_object_versions(Bucket=bucket, Prefix="raw/")["Versions"]
    return [
        (v["Key"], v["VersionId"], v["ETag"], v["IsLatest"], hashlib.sha256(body(s3, bucket, v["Key"])).hexdigest())
        for v in versions
    ]


def body(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_endpoint_dies_mid_publish_and_the_rerun_converges(aws, names, playbook, sandbox_env):
    # provision, configure and dataset in one ansible-playbook run (one start-up and preflight instead of three).
    landed = playbook("site.yml", "--skip-tags", "ingest", *ROWS)
    assert landed.rc == 0, landed
    s3 = aws.client("s3")
    bucket = names.bucket
    raw_before = raw_state(s3, bucket)
    assert len(raw_before) == 5

    endpoint = urlparse(sandbox_env["AWS_ENDPOINT_URL"])
    proxy = KillableProxy((endpoint.hostname, endpoint.port), kill_after=500_000)
    try:
        failed = playbook("ingest.yml", *ROWS, env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"})
    finally:
        proxy.kill()
    assert proxy.sent > 500_000, "the proxy never saw the upload: the fault was not injected mid-publish"
    assert failed.rc != 0, failed
    text = one_line(failed.output)
    assert "fraud-demo-ingest failed on sandbox-node" in text, failed
    assert "cannot reach the S3 endpoint" in text, failed

    # Nothing half-published is visible: no manifest (a version is complete only with one), no latest pointer.
    assert not [k for k in keys(s3, bucket, "curated/") if k.endswith("manifest.json")]
    assert keys(s3, bucket, f"curated/{DATASET}/latest") == []
    assert raw_state(s3, bucket) == raw_before  # no raw data lost or rewritten

    again = playbook("ingest.yml", *ROWS)
    assert again.rc == 0, again
    assert again.changed > 0, again
    latest = json.loads(body(s3, bucket, f"curated/{DATASET}/latest"))
    manifest = json.loads(body(s3, bucket, latest["manifest"]))
    prefix = f"curated/{DATASET}/{latest['version']}/"
    assert keys(s3, bucket, prefix) == sorted([prefix + "manifest.json"] + [t["key"] for t in manifest["tables"]])
    for t in manifest["tables"]:
        assert hashlib.sha256(body(s3, bucket, t["key"])).hexdigest() == t["sha256"], t["key"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert {(s["key"], s["version_id"]) for s in manifest["source"]} == {(k, v) for k, v, _, _, _ in raw_before}
    assert raw_state(s3, bucket) == raw_before

    steady = playbook("ingest.yml", *ROWS)
    assert steady.rc == 0, steady
    assert steady.changed == 0, steady
