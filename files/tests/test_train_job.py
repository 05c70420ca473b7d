"""Tests of the training job (fraud_demo_jobs.train) against a moto server and a real MLflow tracking server
(SQLite backend, artifacts proxied to the moto bucket's models/), on a curated version made by the ingest job.

Expected values come from outside the code under test: MLflow's own API (runs, versions, aliases, statuses),
the objects in the bucket, the first run's metrics for the re-run, and for the corrupted labels a fact of
statistics (shuffled labels carry no signal, so no model scores far above AUC 0.5 on them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import ingest
from fraud_demo_jobs import train as tj
from jobs_lake import BUCKET, DATASET, FAST, MODEL, aws_args, client, free_port, keys, running_lake, s3_json


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A moto server with the bucket and log group, a curated version of generated data, and an MLflow server."""
    with running_lake(tmp_path_factory.mktemp("train")) as lk:
        yield lk


def train(lake, capsys, *extra, experiment="fraud-demo") -> tuple[int, dict, str]:
    argv = ["--bucket", BUCKET, "--tracking-uri", lake["uri"], "--registry-db", str(lake["db"]), *aws_args(lake)]
    argv += ["--work-dir", str(lake["tmp"] / "work"), "--experiment", experiment, *FAST, *extra]
    code = tj.train_main(argv)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines, err
    return code, json.loads(lines[-1]), err


def versions(lake) -> list[str]:
    return sorted(mv.version for mv in client(lake).search_model_versions(f"name = '{MODEL}'"))


def test_first_model_is_champion_with_lineage_and_a_rerun_changes_nothing(lake, capsys):
    code, s, err = train(lake, capsys)
    assert code == 0, err
    assert (s["action"], s["changed"], s["model_version"], s["decision"], s["promoted"]) == (
        "trained",
        True,
        "1",
        "champion",
        True,
    )
    assert s["reason"].startswith("no champion")
    latest = s3_json(lake["s3"], f"curated/{DATASET}/latest")
    manifest = s3_json(lake["s3"], latest["manifest"])
    assert s["dataset_version"] == latest["version"]
    # A real model on the planted signal (the generator's oracle AUC is ~0.94), far from chance.
    assert 0.8 < s["metrics"]["roc_auc"] <= 1.0 and 0 < s["metrics"]["pr_auc"] <= 1.0

    c = client(lake)
    mv = c.get_model_version_by_alias(MODEL, "champion")
    assert mv.version == "1" and mv.run_id == s["run_id"]
    raw_ids = {src["file"]: src["version_id"] for src in manifest["source"]}
    assert json.loads(mv.tags["fraud_demo.raw_version_ids"]) == raw_ids
    assert mv.tags["fraud_demo.dataset_version"] == latest["version"]
    run = c.get_run(s["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["fraud_demo.code_version"] == mv.tags["fraud_demo.code_version"]
    assert run.inputs.dataset_inputs[0].dataset.digest == latest["version"]
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(s["metrics"]["roc_auc"])
    # Artifacts went through the server to the bucket's models/ (the job has no S3 rights for them).
    stored = keys(lake["s3"], "models/")
    for plot in ("roc.png", "pr.png", "feature_importance.png"):
        assert any(k.endswith(f"/{s['run_id']}/artifacts/plots/{plot}") for k in stored), plot
    # pyfunc of the logged Booster answers probabilities, the same as the native model.
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    example = model.input_example
    proba = np.asarray(model.predict(example))
    assert ((proba > 0) & (proba < 1)).all() and not set(np.unique(proba)) <= {0.0, 1.0}
    # The registry database is backed up to registry/ after the change.
    assert s["registry_backup"]["changed"] is True
    assert s["registry_backup"]["key"] in keys(lake["s3"], "registry/")

    code, again, err = train(lake, capsys)
    assert code == 0, err
    assert (again["action"], again["changed"], again["model_version"]) == ("unchanged", False, "1")
    code, check, err = train(lake, capsys, "--check")
    assert (code, check["action"], check["changed"]) == (0, "unchanged", False)
    assert versions(lake) == ["1"]


def test_same_inputs_give_the_same_metrics_and_an_equal_model_is_not_promoted(lake, capsys):
    """A second experiment holds no run with the training key, so the same inputs train again: the metrics match
    the first training to 1e-6, and an equal model does not beat the champion."""
    first = client(lake).get_model_version_by_alias(MODEL, "champion")
    first_metrics = client(lake).get_run(first.run_id).data.metrics
    code, s, err = train(lake, capsys, experiment="rerun")
    assert code == 0, err
    for name in ("roc_auc", "pr_auc", "recall_at_1pct_fpr", "precision_at_top_1pct"):
        assert abs(s["metrics"][name] - first_metrics[f"holdout_{name}"]) <= 1e-6, name
    assert abs(s["champion_auc"] - s["candidate_auc"]) <= 1e-6
    assert (s["decision"], s["promoted"]) == ("challenger", False)
    assert "does not beat" in s["reason"]
    assert client(lake).get_model_version_by_alias(MODEL, "champion").version == first.version
    assert client(lake).get_model_version_by_alias(MODEL, "challenger").version == s["model_version"]


def test_corrupted_labels_fail_the_guardrail_although_the_champion_scores_as_badly(lake, capsys):
    raw = lake["raw"]
    bad = lake["tmp"] / "raw-shuffled"
    shutil.copytree(raw, bad)
    t = pd.read_csv(raw / "train_transaction.csv", dtype=str, keep_default_na=False)
    t["isFraud"] = t["isFraud"].sample(frac=1.0, random_state=3).to_numpy()
    t.to_csv(bad / "train_transaction.csv", index=False)
    n_runs = len(client(lake).search_runs([client(lake).get_experiment_by_name("fraud-demo").experiment_id]))
    # The new raw object is a new curated version; --check says a model would be trained and writes nothing.
    lake["s3"].put_object(
        Bucket=BUCKET, Key=f"raw/{DATASET}/train_transaction.csv", Body=(bad / "train_transaction.csv").read_bytes()
    )
    ingest_args = ["--bucket", BUCKET, "--work-dir", str(lake["tmp"] / "ingest"), "--no-cloudwatch", *aws_args(lake)]
    assert ingest.ingest_main(ingest_args) == 0
    capsys.readouterr()
    code, check, _ = train(lake, capsys, "--check")
    assert (code, check["action"], check["changed"]) == (0, "would_train", True)
    assert len(client(lake).search_runs([client(lake).get_experiment_by_name("fraud-demo").experiment_id])) == n_runs

    champion = client(lake).get_model_version_by_alias(MODEL, "champion").version
    code, s, err = train(lake, capsys)
    assert code == 0, err
    assert s["action"] == "trained" and s["decision"] == "challenger" and s["promoted"] is False
    assert s["reason"].startswith("guardrail: holdout AUC")
    assert s["candidate_auc"] < 0.75 and s["champion_auc"] < 0.75  # no signal left for either model
    assert client(lake).get_model_version_by_alias(MODEL, "champion").version == champion
    run = client(lake).get_run(s["run_id"])
    assert run.data.tags["fraud_demo.decision"] == "challenger"
    assert run.data.tags["fraud_demo.reason"] == s["reason"]
    assert run.data.metrics["champion_holdout_roc_auc"] == pytest.approx(s["champion_auc"])


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--holdout-days", "0"], 2, "--holdout-days must be"),
        (["--min-auc", "1.5"], 2, "--min-auc must be"),
        (["--num-leaves", "1"], 2, "--num-leaves must be"),
        (["--version", "nothex"], 2, "is not a curated version id"),
        (["--dataset", "no-such-dataset"], 1, "no curated version of no-such-dataset yet"),
        (["--version", "0123456789abcdef"], 1, "has no manifest"),
        (["--holdout-days", "300"], 1, "part of the time split is empty"),
    ],
)
def test_bad_settings_and_inputs_fail_with_one_message_and_no_run(lake, capsys, args, code, words):
    before = versions(lake)
    got, s, err = train(lake, capsys, *args, experiment="bad-input")
    assert got == code and s["failed"] is True and words in s["msg"], (s, err)
    assert err.strip().splitlines()[-1] == f"fraud-demo-train: error: {s['msg']}"
    assert versions(lake) == before
    exp = client(lake).get_experiment_by_name("bad-input")
    assert exp is None or all(r.info.status != "RUNNING" for r in client(lake).search_runs([exp.experiment_id]))


def test_damaged_version_and_a_dead_tracking_server_are_named(lake, capsys):
    s3 = lake["s3"]
    latest = s3_json(s3, f"curated/{DATASET}/latest")
    manifest = s3_json(s3, latest["manifest"])
    broken = "broken-copy"
    for t in manifest["tables"]:
        t["key"] = t["key"].replace(f"curated/{DATASET}/", f"curated/{broken}/")
    manifest["dataset"] = broken
    s3.put_object(Bucket=BUCKET, Key=f"curated/{broken}/{latest['version']}/manifest.json", Body=json.dumps(manifest))
    pointer = {"dataset": broken, "version": latest["version"], "manifest": latest["manifest"].replace(DATASET, broken)}
    s3.put_object(Bucket=BUCKET, Key=f"curated/{broken}/latest", Body=json.dumps(pointer))
    code, s, _ = train(lake, capsys, "--dataset", broken)
    assert code == 1 and "is damaged" in s["msg"] and "train_transaction.parquet" in s["msg"]

    port = free_port()
    argv = ["--bucket", BUCKET, "--tracking-uri", f"http://127.0.0.1:{port}", "--work-dir", str(lake["tmp"] / "w2")]
    argv += aws_args(lake)
    code = tj.train_main(argv)
    out, _err = capsys.readouterr()
    s = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and "does not answer" in s["msg"] and "systemctl start fraud-demo-mlflow" in s["msg"]


def _job(lake, experiment: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "fraud_demo_jobs.train", "--bucket", BUCKET, "--tracking-uri", lake["uri"]]
    cmd += ["--work-dir", str(lake["tmp"] / "sig"), "--experiment", experiment, "--no-cloudwatch", *aws_args(lake)]
    cmd += ["--max-rounds", "5000", "--learning-rate", "0.001", "--early-stopping-rounds", "5000"]  # long enough
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _wait_for(proc: subprocess.Popen, words: str) -> list[str]:
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if words in line:
            return seen
    raise AssertionError("".join(seen))


def test_killed_and_terminated_runs_register_nothing_and_the_next_run_is_clean(lake, capsys):
    exp = "signals"
    before = versions(lake)
    # SIGKILL mid-training: nothing can clean up, the run is left RUNNING ...
    proc = _job(lake, exp)
    _wait_for(proc, "run_started")
    time.sleep(3)
    proc.kill()
    proc.communicate(timeout=60)
    c = client(lake)
    exp_id = c.get_experiment_by_name(exp).experiment_id
    orphan = [r.info.run_id for r in c.search_runs([exp_id]) if r.info.status == "RUNNING"]
    assert len(orphan) == 1
    # ... SIGTERM mid-training: exit 143, the run KILLED, and it marked the orphan FAILED first.
    proc = _job(lake, exp)
    _wait_for(proc, "run_started")
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["msg"].startswith("terminated (SIGTERM)") and s["orphans_failed"] == orphan
    statuses = {r.info.run_id: r.info.status for r in c.search_runs([exp_id])}
    assert statuses[orphan[0]] == "FAILED" and statuses[s["run_id"]] == "KILLED"
    assert versions(lake) == before
    # The next run trains and registers as if nothing had happened.
    code, done, err = train(lake, capsys, experiment=exp)
    assert code == 0 and done["action"] == "trained" and done["orphans_failed"] == [], err
    assert versions(lake) == sorted([*before, done["model_version"]])


def test_registry_backup_is_a_consistent_copy_of_the_server_database(lake):
    """The backed-up database reads back with the same registered versions and aliases as the live one."""
    s3 = lake["s3"]
    body = s3.get_object(Bucket=BUCKET, Key=keys(s3, "registry/")[0])["Body"].read()
    copy = lake["tmp"] / "restored.db"
    copy.write_bytes(body)

    def rows(path):
        with sqlite3.connect(path) as con:
            return con.execute("select name, alias, version from registered_model_aliases order by alias").fetchall()

    assert rows(copy) == rows(lake["db"])
