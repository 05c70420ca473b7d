"""End-to-end test of the ingest stage on the sandbox: the whole site.yml, then a raw file changed on S3."""

import csv
import io

import pytest
from conftest import on_node, one_line
from curatedstate import check_curated, versions

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

ROWS = ["-e", "fraud_demo_synthetic_rows=20000"]
SUBMISSION = "raw/ieee-fraud-detection/sample_submission.csv"
JOB = "/opt/fraud-demo/venv/bin/fraud-demo-ingest"


def out_of_range(body, rows):
    """sample_submission.csv with isFraud = 2 in its first `rows` rows: bad rows, not a bad file."""
    lines = body.decode().splitlines(keepends=True)
    for i in range(1, rows + 1):
        lines[i] = lines[i].split(",")[0] + ",2\n"
    return "".join(lines).encode()


def table(manifest, name):
    return next(t for t in manifest["tables"] if t["name"] == name)


def test_site_ingests_once_reruns_clean_and_follows_a_raw_change(aws, names, playbook, capsys):
    first = playbook("site.yml", *ROWS)
    assert first.rc == 0, first
    pointer, manifest, problems = check_curated(aws, names.bucket)
    assert problems == []
    assert manifest["rows"]["quarantined"] == 0
    assert f"version {pointer['version']}, created and promoted to latest" in one_line(first.output), first

    again = playbook("site.yml", *ROWS)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert "unchanged, latest already points at it" in one_line(again.output), again

    check = playbook("site.yml", "--check", "--diff", *ROWS)
    assert check.rc == 0, check
    assert check.changed == 0, check

    # A raw file changed on S3: check mode says what would happen and writes nothing, then a run makes a new
    # version, quarantines the bad rows with their reason and moves latest; the old version stays.
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=names.bucket, Key=SUBMISSION)["Body"].read()
    s3.put_object(Bucket=names.bucket, Key=SUBMISSION, Body=out_of_range(body, 3))
    would = playbook("ingest.yml", "--check")
    assert would.rc == 0, would
    assert would.changed == 1, would
    assert "would be created and promoted to latest (check mode)" in one_line(would.output), would
    assert versions(s3, names.bucket) == [pointer["version"]]

    moved = playbook("ingest.yml")
    assert moved.rc == 0, moved
    assert moved.changed > 0, moved
    new_pointer, new_manifest, problems = check_curated(aws, names.bucket)
    assert problems == []
    assert new_pointer["version"] != pointer["version"]
    assert versions(s3, names.bucket) == sorted([pointer["version"], new_pointer["version"]])
    submission = table(new_manifest, "sample_submission")
    assert submission["rows_quarantined"] == 3
    assert submission["rows_valid"] == table(manifest, "sample_submission")["rows_valid"] - 3
    rejected = s3.get_object(Bucket=names.bucket, Key=submission["quarantine_key"])["Body"].read().decode()
    assert all("isFraud" in row["_reason"] for row in csv.DictReader(io.StringIO(rejected)))

    rerun = playbook("ingest.yml")
    assert rerun.rc == 0, rerun
    assert rerun.changed == 0, rerun

    with capsys.disabled():
        print(
            f"\nsite.yml with ingest: first run {first.seconds:.1f}s, re-run {again.seconds:.1f}s,"
            f" --check {check.seconds:.1f}s; ingest.yml after a raw change {moved.seconds:.1f}s,"
            f" re-run {rerun.seconds:.1f}s"
        )

    # Raw files that never landed: the job's own message, one line, and latest stays where it was.
    missing = playbook("ingest.yml", "-e", "fraud_demo_dataset=not-landed")
    assert missing.rc != 0, missing
    assert "missing raw file(s)" in one_line(missing.output), missing
    assert "land the dataset first (playbooks/dataset.yml" in one_line(missing.output), missing
    assert check_curated(aws, names.bucket)[0] == new_pointer

    # A node whose venv lacks the job (configured before it existed): the stage deploys it and runs.
    on_node(f"mv {JOB} {JOB}.away")
    try:
        redeployed = playbook("ingest.yml")
    finally:
        on_node(f"rm -f {JOB}.away")
    assert redeployed.rc == 0, redeployed
    assert redeployed.changed == 1, redeployed  # the reinstall, and nothing else: same version
    assert on_node(f"test -x {JOB} && echo present") == "present"

    # A node never configured (no jobs venv): the preflight names the fix before anything changes.
    on_node("mv /opt/fraud-demo/venv /opt/fraud-demo/venv.away")
    try:
        unconfigured = playbook("ingest.yml")
    finally:
        on_node("mv /opt/fraud-demo/venv.away /opt/fraud-demo/venv")
    assert unconfigured.rc != 0, unconfigured
    assert "sandbox-node has no jobs virtualenv /opt/fraud-demo/venv: run the configure stage first" in one_line(
        unconfigured.output
    ), unconfigured
