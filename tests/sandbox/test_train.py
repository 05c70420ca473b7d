"""End-to-end test of the train stage on the sandbox: site.yml twice and in check mode, settings and a stopped
tracking server refused with their message, then the node replaced (teardown, data kept) and the registry back."""

import subprocess

import pytest
from conftest import ROOT, on_node, one_line
from mlflow.tracking import MlflowClient
from modelstate import check_model, runs_by_status, snapshot

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

ROWS = ["-e", "fraud_demo_synthetic_rows=20000"]
MODEL = "fraud-detector"
SERVICE = "fraud-demo-mlflow"


def all_runs(client):
    """{run id: (status, artifact URI, metrics)} of every run in every experiment: what a restore must bring back."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments) if experiments else []
    return {r.info.run_id: (r.info.status, r.info.artifact_uri, tuple(sorted(r.data.metrics.items()))) for r in runs}


def node_down_and_fresh():
    """Replace the node: stop it and boot a fresh tree from the image (nothing of the old disk survives)."""
    for verb in ("down", "up"):
        subprocess.run(["scripts/sandbox-node.sh", verb], cwd=ROOT, check=True, capture_output=True, timeout=300)


def test_site_trains_once_reruns_clean_refuses_bad_input_and_restores_the_registry(
    aws, names, playbook, sandbox_env, capsys
):
    # A node with a registry from an earlier run would hold runs of a bucket the emulator's reset forgot.
    node_down_and_fresh()
    client = MlflowClient(
        tracking_uri=sandbox_env["MLFLOW_TRACKING_URI"], registry_uri=sandbox_env["MLFLOW_TRACKING_URI"]
    )

    first = playbook("site.yml", *ROWS)
    assert first.rc == 0, first
    state, problems = check_model(aws, names.bucket, client, MODEL, versions=1)
    assert problems == []
    assert state["aliases"] == {"champion": "1"}
    text = one_line(first.output)
    assert f"{MODEL} version 1: trained and registered" in text, first
    assert "decision: champion (promoted)" in text, first
    assert "this model) vs none (no champion before)" in text, first

    again = playbook("site.yml", *ROWS)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert "unchanged, a version trained on the same dataset version" in one_line(again.output), again

    check = playbook("site.yml", "--check", "--diff", *ROWS)
    assert check.rc == 0, check
    assert check.changed == 0, check
    assert snapshot(client, MODEL) == state

    with capsys.disabled():
        print(
            f"\nsite.yml with train: first run {first.seconds:.1f}s, re-run {again.seconds:.1f}s,"
            f" --check {check.seconds:.1f}s"
        )

    # A setting out of range: the preflight names it and its range before anything on the node changes.
    bad = playbook("train.yml", "-e", "train_min_auc=1.5")
    assert bad.rc != 0, bad
    assert bad.changed == 0, bad
    assert "train_min_auc must be a ROC-AUC from 0 to 1" in one_line(bad.output), bad
    bad = playbook("train.yml", "-e", "train_early_stopping_rounds=50", "-e", "train_max_rounds=10")
    assert bad.rc != 0, bad
    expected = "train_early_stopping_rounds must be a whole number from 1 to 10000 and at most train_max_rounds (10)"
    assert expected in one_line(bad.output), bad

    # The tracking server stopped (and the stage told not to start it): one message saying how to start it,
    # nothing trained, no run left RUNNING; the next full run starts it again and changes nothing else.
    on_node(f"systemctl stop {SERVICE}")
    down = playbook("train.yml", "--skip-tags", "mlflow_server")
    assert down.rc != 0, down
    message = one_line(down.output)
    assert "does not answer /health on sandbox-node" in message, down
    assert f"sudo systemctl start {SERVICE}" in message, down
    back = playbook("train.yml")
    assert back.rc == 0, back
    assert "unchanged" in one_line(back.output), back
    assert snapshot(client, MODEL) == state
    assert runs_by_status(client, "RUNNING") == []
    runs = all_runs(client)

    # The node replaced: teardown (the data bucket and its registry/ backup kept), a fresh node, site.yml. The
    # tracking server restores the registry before it starts, so the same runs, versions and aliases are back
    # and training finds its model version: nothing is trained again.
    down = playbook("teardown.yml")
    assert down.rc == 0, down
    node_down_and_fresh()
    assert on_node("test -e /opt/fraud-demo && echo old || echo fresh") == "fresh"
    restored = playbook("site.yml", *ROWS)
    assert restored.rc == 0, restored
    assert "unchanged, a version trained on the same dataset version" in one_line(restored.output), restored
    assert snapshot(client, MODEL) == state
    assert all_runs(client) == runs
    assert check_model(aws, names.bucket, client, MODEL, versions=1)[1] == []

    with capsys.disabled():
        print(f"site.yml on a fresh node, registry restored: {restored.seconds:.1f}s")
