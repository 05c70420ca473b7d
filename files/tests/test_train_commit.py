"""Faults around the train job's commit (register -> alias -> run tags -> run FINISHED), against moto and a real
MLflow server: whatever stops the job, no version is left half-promoted and the next run completes.

The faults are injected at the MLflow client boundary in a child process (a wrapper that patches ``MlflowClient``
and then runs the real ``fraud-demo-train``), because a failure or death after the alias leaves the child's MLflow
run open. Expected states come from MLflow's own API (aliases, versions, run statuses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from jobs_lake import BUCKET, FAST, aws_args, client, running_lake

# The child: patch MlflowClient so that the fault happens at the named point of the commit, then run the job.
WRAPPER = textwrap.dedent(
    """
    import os, signal, sys
    from mlflow.tracking import MlflowClient
    from fraud_demo_jobs import train
    fault = sys.argv[1]
    set_alias, set_terminated = MlflowClient.set_registered_model_alias, MlflowClient.set_terminated
    state = {"aliased": False}
    def alias(self, *a, **kw):
        if fault == "sigterm-before-alias":
            os.kill(os.getpid(), signal.SIGTERM)  # lands inside the commit, between register and alias
        out = set_alias(self, *a, **kw)
        state["aliased"] = True
        if fault == "die-after-alias":
            os._exit(137)  # as SIGKILL would: no cleanup at all
        return out
    def terminated(self, *a, **kw):
        if fault == "fail-after-alias" and state["aliased"]:
            raise RuntimeError("the server went away")  # also for MLflow's own end_run at exit
        return set_terminated(self, *a, **kw)
    MlflowClient.set_registered_model_alias, MlflowClient.set_terminated = alias, terminated
    sys.exit(train.train_main(sys.argv[2:]))
    """
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    with running_lake(tmp_path_factory.mktemp("commit")) as lk:
        yield lk


def _argv(lake, work: str, model: str) -> list[str]:
    """A model of its own per test: its first version is champion (no champion to beat), so each fault hits a
    promotion, the case where undoing the version would leave no champion at all."""
    argv = ["--bucket", BUCKET, "--tracking-uri", lake["uri"], "--no-cloudwatch", *aws_args(lake), *FAST]
    return [*argv, "--work-dir", str(lake["tmp"] / work), "--experiment", "commit", "--model-name", model]


def _child(lake, tmp_path, fault: str, model: str):
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    res = subprocess.run([sys.executable, str(wrapper), fault, *_argv(lake, "w-" + fault, model)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)  # fmt: skip
    lines = res.stdout.strip().splitlines()
    return res.returncode, (json.loads(lines[-1]) if lines else None), res.stderr


def _next_run(lake, model: str, work: str):
    res = subprocess.run([sys.executable, "-m", "fraud_demo_jobs.train", *_argv(lake, work, model)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _state(lake, model: str):
    """(client, the champion's version or None, {version: ModelVersion with its aliases})."""
    c = client(lake)
    found = c.search_model_versions(f"name='{model}'")
    versions = {mv.version: c.get_model_version(model, mv.version) for mv in found}
    champion = [v for v, mv in versions.items() if "champion" in mv.aliases]
    return c, (champion[0] if champion else None), versions


@pytest.mark.parametrize("fault", ["fail-after-alias", "die-after-alias"])
def test_a_failure_or_death_after_the_alias_keeps_the_promotion_and_the_next_run_finishes_it(lake, tmp_path, fault):
    model = f"commit-{fault}"
    code, summary, err = _child(lake, tmp_path, fault, model)
    assert code != 0, err
    c, champion, versions = _state(lake, model)
    assert list(versions) == ["1"]  # registered, and not undone: deleting it would leave no champion at all
    assert champion == "1"
    run = c.get_run(versions["1"].run_id)
    assert run.info.status == "RUNNING"  # not ended, but it already names what it made
    assert run.data.tags["fraud_demo.model_version"] == "1"
    if summary is not None:  # the failure (not the death) says what is left, and that the next run finishes it
        assert summary["failed"] is True and summary["model_version"] == "1"
        assert "model version 1 is registered with alias champion" in summary["msg"]
        assert "the next fraud-demo-train run finishes it" in summary["msg"]
    # The next run with the same inputs finishes that run and trains nothing.
    done = _next_run(lake, model, "w-next-" + fault)
    assert done["action"] == "unchanged" and done["model_version"] == "1", done
    assert done["orphans_completed"] == [run.info.run_id] and done["orphans_failed"] == []
    c, champion, versions = _state(lake, model)
    assert champion == "1" and list(versions) == ["1"]
    run = c.get_run(versions["1"].run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fraud_demo.model_version"] == "1"
    assert run.data.tags["fraud_demo.decision"] == "champion"


def test_sigterm_inside_the_commit_lands_after_it_and_says_so(lake, tmp_path):
    model = "commit-sigterm"
    code, summary, err = _child(lake, tmp_path, "sigterm-before-alias", model)
    assert code == 143, err
    c, champion, versions = _state(lake, model)
    # the held signal landed after the whole commit: aliased, run finished; the message says what happened
    assert list(versions) == ["1"] and champion == "1"
    assert c.get_run(versions["1"].run_id).info.status == "FINISHED"
    assert summary["action"] == "trained" and summary["model_version"] == "1" and summary["promoted"] is True
    assert summary["msg"] == (
        "terminated (SIGTERM); model version 1 was registered with alias champion before the signal took effect"
    )
    done = _next_run(lake, model, "w-next-sigterm")
    assert done["action"] == "unchanged" and done["model_version"] == "1"


def test_a_finished_run_that_registered_nothing_does_not_count_as_trained(lake, tmp_path):
    """A stopped job whose server was too slow to take its KILLED status leaves its run to MLflow's exit hook, which
    ends it FINISHED: the run has the training key but never registered a version, so the next run trains."""
    model = "commit-finished-by-exit-hook"
    res = subprocess.run([sys.executable, "-m", "fraud_demo_jobs.train", *_argv(lake, "w-probe", model), "--check"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)  # fmt: skip
    probe = json.loads(res.stdout.strip().splitlines()[-1])
    assert probe["action"] == "would_train" and probe["training_key"], probe
    c = client(lake)
    found = c.get_experiment_by_name("commit")
    experiment = found.experiment_id if found else c.create_experiment("commit")
    run = c.create_run(experiment, tags={"fraud_demo.job": "train", "fraud_demo.training_key": probe["training_key"]})
    c.set_terminated(run.info.run_id, "FINISHED")
    done = _next_run(lake, model, "w-after-exit-hook")
    assert done["action"] == "trained" and done["model_version"] == "1", done
