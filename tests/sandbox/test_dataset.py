"""End-to-end test of dataset.yml on the sandbox: synthetic files generated on the node land in raw/."""

import pytest
from conftest import on_node, one_line

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

ROWS = ["-e", "fraud_demo_synthetic_rows=20000"]
FILES = {
    "train_transaction.csv",
    "train_identity.csv",
    "test_transaction.csv",
    "test_identity.csv",
    "sample_submission.csv",
}


def test_dataset_lands_in_raw_once_and_reruns_clean(aws, names, playbook):
    assert playbook("provision.yml").rc == 0
    assert playbook("configure.yml").rc == 0

    first = playbook("dataset.yml", *ROWS)
    assert first.rc == 0, first
    assert first.changed > 0, first
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=names.bucket, Prefix="raw/ieee-fraud-detection/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[1] for o in listed} == FILES
    assert all(o["Size"] > 0 for o in listed)

    again = playbook("dataset.yml", *ROWS)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert "0 bytes sent, 5 unchanged and skipped" in one_line(again.output), again
    versions = s3.list_object_versions(Bucket=names.bucket, Prefix="raw/")["Versions"]
    assert len(versions) == 5  # bucket versioning kept one version each: nothing was re-uploaded

    check = playbook("dataset.yml", "--check", "--diff", *ROWS)
    assert check.rc == 0, check
    assert check.changed == 0, check

    # Kaggle as the source without credentials on the node: one message, nothing fetched or uploaded.
    on_node("rm -rf /home/ubuntu/.kaggle")
    refused = playbook("dataset.yml", "-e", "fraud_demo_dataset_source=kaggle", *ROWS)
    assert refused.rc != 0, refused
    assert "No Kaggle credentials on sandbox-node" in one_line(refused.output), refused
    assert len(s3.list_object_versions(Bucket=names.bucket, Prefix="raw/")["Versions"]) == 5
