"""End-to-end test of the Dask scale-out on a two-node sandbox (the node + one worker node): site.yml with a worker
provisions and configures it; the Dask backend trains on the cluster over mutual TLS and registers a version the
gate treats like the local one (same tags, same metrics, decided against the champion on the same holdout);
site.yml again with the Dask backend changes nothing, and --check neither; teardown terminates the worker with the
node."""

import os
import subprocess

import pytest
from conftest import ROOT, one_line
from mlflow.tracking import MlflowClient
from modelstate import snapshot

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

MODEL = "fraud-detector"
ROWS = ["-e", "fraud_demo_synthetic_rows=20000"]
# The ML stages after train are tested by test_ml.py; here the data path up to a registered model.
TO_TRAIN = ["--skip-tags", "deploy,monitor"]
DASK = ["-e", "fraud_demo_train_backend=dask"]


def sandbox_nodes(verb, nodes):
    env = {**os.environ, "FRAUD_DEMO_NODES": str(nodes)}
    subprocess.run(["scripts/sandbox-node.sh", verb], cwd=ROOT, check=True, capture_output=True, timeout=300, env=env)


@pytest.fixture
def two_nodes():
    """A fresh node and one worker node; afterwards the node alone again, fresh (its timers would write into the
    next test's bucket)."""
    sandbox_nodes("down", 1)
    sandbox_nodes("up", 2)
    yield
    sandbox_nodes("down", 1)
    sandbox_nodes("up", 1)


def worker_instances(aws):
    ec2 = aws.client("ec2")
    filters = [
        {"Name": "tag:Role", "Values": ["dask-worker"]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ]
    return [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]


def test_dask_backend_trains_like_local_reruns_clean_and_tears_down(
    aws, names, playbook, sandbox_env, capsys, two_nodes
):
    client = MlflowClient(
        tracking_uri=sandbox_env["MLFLOW_TRACKING_URI"], registry_uri=sandbox_env["MLFLOW_TRACKING_URI"]
    )
    first = playbook("site.yml", *ROWS, *TO_TRAIN)
    assert first.rc == 0, first
    workers = worker_instances(aws)
    assert len(workers) == 1, workers
    assert workers[0]["MetadataOptions"]["HttpTokens"] == "required"
    local = client.get_model_version(MODEL, "1")

    dask = playbook("train.yml", *ROWS, *DASK)
    assert dask.rc == 0, dask
    text = one_line(dask.output)
    assert f"{MODEL} version 2: trained and registered" in text, dask
    v2 = client.get_model_version(MODEL, "2")
    # The gate's record is the same for both backends: same tag names, decided against the same champion.
    assert set(v2.tags) == set(local.tags), (v2.tags, local.tags)
    assert v2.tags["fraud_demo.dataset_version"] == local.tags["fraud_demo.dataset_version"]
    run_local, run_dask = client.get_run(local.run_id), client.get_run(v2.run_id)
    assert run_dask.data.tags.get("fraud_demo.backend") == "dask", run_dask.data.tags
    # The same metrics, plus the comparison with the champion the local version had no one for.
    assert set(run_dask.data.metrics) == set(run_local.data.metrics) | {"champion_holdout_roc_auc", "auc_gain"}
    auc_local, auc_dask = run_local.data.metrics["holdout_roc_auc"], run_dask.data.metrics["holdout_roc_auc"]
    # The champion (the local model) re-scored on the Dask run's holdout scores its own AUC: the same holdout rows.
    assert run_dask.data.metrics["champion_holdout_roc_auc"] == pytest.approx(auc_local, abs=1e-9)
    # Data-parallel LightGBM bags and bins per worker: another draw of the same model (holdout of ~130 frauds here).
    assert abs(auc_dask - auc_local) < 0.03, (auc_local, auc_dask)

    again = playbook("site.yml", *ROWS, *TO_TRAIN, *DASK)
    assert again.rc == 0, again
    assert again.changed == 0, again
    before = snapshot(client, MODEL)
    check = playbook("site.yml", "--check", "--diff", *ROWS, *TO_TRAIN, *DASK)
    assert check.rc == 0 and check.changed == 0, check
    assert snapshot(client, MODEL) == before

    # A worker lost mid-training is tested by files/tests/test_dask_train.py (a worker process killed on a local
    # cluster). Here, killing the sandbox worker's unit while the job trained did not fail the run (rc 0, a version
    # registered) in the one run that got that far: open, see the note.

    gone = playbook("teardown.yml")
    assert gone.rc == 0, gone
    assert worker_instances(aws) == []
    with capsys.disabled():
        print(
            f"\ndask on 2 sandbox nodes: site.yml {first.seconds:.1f}s, dask train.yml {dask.seconds:.1f}s, "
            f"re-run {again.seconds:.1f}s, --check {check.seconds:.1f}s; AUC local {auc_local:.4f} dask {auc_dask:.4f}"
        )
