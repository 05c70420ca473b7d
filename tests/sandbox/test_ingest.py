"""End-to-end test of the dataset and ingest stages on the sandbox: the whole site.yml, then a raw file changed
on S3, then each stage running the current job code.

One test on one account: the dataset stage's own checks (five files landed once, a re-run sends 0 bytes,
`--check` changes nothing, Kaggle without credentials refused) ride on the same site.yml runs instead of
provisioning, configuring and generating a second time.
"""

import csv
import io
import shutil

import pytest
from conftest import ROOT, on_node, one_line
from curatedstate import check_curated, versions

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

# The stages up to ingest: tests/sandbox/test_ml.py runs the whole site.yml with the train and deploy stages.
ROWS = ["-e", "fraud_demo_synthetic_rows=20000", "--skip-tags", "train,deploy,monitor"]
SUBMISSION = "raw/ieee-fraud-detection/sample_submission.csv"
JOB = "/opt/fraud-demo/venv/bin/fraud-demo-ingest"
FILES = {
    "train_transaction.csv",
    "train_identity.csv",
    "test_transaction.csv",
    "test_identity.csv",
    "sample_submission.csv",
}
INSTALL_TASK = "TASK [node_python : Install the jobs wheel into the virtualenv]"


def out_of_range(body, rows):
    """sample_submission.csv with isFraud = 2 in its first `rows` rows: bad rows, not a bad file."""
    lines = body.decode().splitlines(keepends=True)
    for i in range(1, rows + 1):
        lines[i] = lines[i].split(",")[0] + ",2\n"
    return "".join(lines).encode()


def table(manifest, name):
    return next(t for t in manifest["tables"] if t["name"] == name)


def jobs_copy(tmp_path, marker):
    """files/ as the controller would have it after an edit: the jobs' project with one line added."""
    src = tmp_path / marker
    shutil.copytree(ROOT / "files", src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "tests"))
    with (src / "src" / "fraud_demo_jobs" / "__init__.py").open("a") as f:
        f.write(f"# {marker}\n")
    return str(src)


def installed_init():
    """The jobs package's __init__.py as installed in the node's venv."""
    return on_node(
        '/opt/fraud-demo/venv/bin/python -c "import fraud_demo_jobs; print(open(fraud_demo_jobs.__file__).read())"'
    )


def test_site_ingests_once_reruns_clean_and_follows_a_raw_change(aws, names, playbook, capsys, tmp_path):
    first = playbook("site.yml", *ROWS)
    assert first.rc == 0, first
    assert first.changed > 0, first
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=names.bucket, Prefix="raw/ieee-fraud-detection/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[1] for o in listed} == FILES
    assert all(o["Size"] > 0 for o in listed)
    pointer, manifest, problems = check_curated(aws, names.bucket)
    assert problems == []
    assert manifest["rows"]["quarantined"] == 0
    assert f"version {pointer['version']}, created and promoted to latest" in one_line(first.output), first

    again = playbook("site.yml", *ROWS)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert "unchanged, latest already points at it" in one_line(again.output), again
    assert "0 bytes sent, 5 unchanged and skipped" in one_line(again.output), again
    raw_versions = s3.list_object_versions(Bucket=names.bucket, Prefix="raw/")["Versions"]
    assert len(raw_versions) == 5  # bucket versioning kept one version each: nothing was re-uploaded

    check = playbook("site.yml", "--check", "--diff", *ROWS)
    assert check.rc == 0, check
    assert check.changed == 0, check

    # A raw file changed on S3: check mode says what would happen and writes nothing, then a run makes a new
    # version, quarantines the bad rows with their reason and moves latest; the old version stays.
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

    # Kaggle as the source without credentials on the node: one message, nothing fetched or uploaded.
    raw_before = s3.list_object_versions(Bucket=names.bucket, Prefix="raw/")["Versions"]
    on_node("rm -rf /home/ubuntu/.kaggle")
    refused = playbook("dataset.yml", "-e", "fraud_demo_dataset_source=kaggle", *ROWS)
    assert refused.rc != 0, refused
    assert "No Kaggle credentials on sandbox-node" in one_line(refused.output), refused
    assert s3.list_object_versions(Bucket=names.bucket, Prefix="raw/")["Versions"] == raw_before

    # Each stage runs the current job code. The dataset stage alone, after a change to the jobs' code: the node
    # runs the new code; --check installs nothing; a re-run installs nothing.
    edited = jobs_copy(tmp_path, "edit-one")
    edited_check = playbook("dataset.yml", "--check", "--diff", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert edited_check.rc == 0, edited_check
    assert edited_check.changed > 0, edited_check  # the wheel would be copied and its hash recorded
    assert "edit-one" not in installed_init()  # --check installed nothing
    edited_run = playbook("dataset.yml", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert edited_run.rc == 0, edited_run
    assert edited_run.output.count(INSTALL_TASK) == 1, edited_run
    assert "# edit-one" in installed_init()
    edited_again = playbook("dataset.yml", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert edited_again.rc == 0, edited_again
    assert edited_again.changed == 0, edited_again
    assert INSTALL_TASK not in edited_again.output, edited_again

    # The whole pipeline after another change: configure, dataset and ingest all deploy, the node installs once.
    edited = jobs_copy(tmp_path, "edit-two")
    site = playbook("site.yml", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert site.rc == 0, site
    assert site.output.count(INSTALL_TASK) == 1, site
    assert "# edit-two" in installed_init()

    # A console command gone from the venv is put back, although the code did not change.
    on_node("rm /opt/fraud-demo/venv/bin/fraud-demo-ingest")
    repaired = playbook("ingest.yml", "-e", f"node_python_jobs_src={edited}")
    assert repaired.rc == 0, repaired
    assert repaired.output.count(INSTALL_TASK) == 1, repaired
    assert on_node("test -x /opt/fraud-demo/venv/bin/fraud-demo-ingest && echo present") == "present"
