"""End-to-end test of dataset.yml on the sandbox: synthetic files generated on the node land in raw/."""

import shutil

import pytest
from conftest import ROOT, on_node, one_line

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


INSTALL_TASK = "TASK [node_python : Install the jobs wheel into the virtualenv]"


def test_each_stage_runs_the_current_job_code_installed_once_per_run(aws, names, playbook, tmp_path):
    assert playbook("provision.yml").rc == 0
    assert playbook("configure.yml").rc == 0

    # The dataset stage alone, after a change to the jobs' code: the node runs the new code.
    edited = jobs_copy(tmp_path, "edit-one")
    would = playbook("dataset.yml", "--check", "--diff", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert would.rc == 0, would
    assert would.changed > 0, would  # the wheel would be copied and its hash recorded
    assert "edit-one" not in installed_init()  # --check installed nothing
    first = playbook("dataset.yml", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert first.rc == 0, first
    assert first.output.count(INSTALL_TASK) == 1, first
    assert "# edit-one" in installed_init()
    again = playbook("dataset.yml", *ROWS, "-e", f"node_python_jobs_src={edited}")
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert INSTALL_TASK not in again.output, again

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
