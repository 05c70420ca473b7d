"""The retraining loop for real: ``fraud-demo-retrain`` with the real ingest and train jobs as its steps, against a
moto server and a real MLflow server (jobs_lake), on small generated batches.

No champion -> train -> promoted; the drifted batch (``fraud-demo-generate --drift``) lands in raw/ -> ingest makes a
new curated version -> new data -> train, SIGTERM in the middle of it (no version, no run left RUNNING) -> the next
pass trains again and the gate promotes the model trained on it; then nothing new -> nothing to do. The drift step
is a stand-in that reports no drift (the drift job's own tests are its; the decision reads only its summary), so
the new-data path is the one exercised here. Expected values come from MLflow's API and the
bucket's ``latest`` pointer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from fraud_demo_jobs import synthetic
from jobs_lake import BUCKET, DATASET, FAST, MODEL, ROWS, aws_args, client, running_lake, s3_json

NO_DRIFT = {"job": "drift", "changed": False, "status": "unchanged", "run": "stand-in", "drift_share": 0.05,
            "threshold": 0.3, "drift_detected": False, "columns": 40, "drifted_columns": 2, "top_drifted": [],
            "report": None}  # fmt: skip


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    with running_lake(tmp_path_factory.mktemp("retrain")) as lk:
        yield lk


def _steps(lake, tmp) -> str:
    py = [sys.executable, "-m"]
    common = ["--bucket", BUCKET, "--no-cloudwatch", *aws_args(lake)]
    steps = {
        "ingest": [*py, "fraud_demo_jobs.ingest", *common, "--work-dir", str(tmp / "ingest")],
        "drift": [sys.executable, "-c", f"print({json.dumps(json.dumps(NO_DRIFT))})"],
        "train": [*py, "fraud_demo_jobs.train", *common, "--tracking-uri", lake["uri"], *FAST, "--work-dir",
                  str(tmp / "train")],
        "score": None,
    }  # fmt: skip
    path = tmp / "steps.json"
    path.write_text(json.dumps(steps))
    return str(path)


def _cmd(steps: str, tmp) -> list[str]:
    return [sys.executable, "-m", "fraud_demo_jobs.retrain", "--steps", steps, "--work-dir", str(tmp / "loop")]


def _loop(steps: str, tmp) -> tuple[int, dict]:
    res = subprocess.run(_cmd(steps, tmp), capture_output=True, text=True, timeout=600, check=False)
    return res.returncode, json.loads(res.stdout.strip().splitlines()[-1])


def _terminated_during_training(steps: str, tmp) -> dict:
    """A pass stopped by SIGTERM once the train step's MLflow run has started (the step's events reach the loop's
    stderr); its summary."""
    proc = subprocess.Popen(_cmd(steps, tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "run_started" in line:
            break
    else:
        raise AssertionError("".join(seen))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    return json.loads(out.strip().splitlines()[-1])


def test_first_champion_then_the_drifted_batch_is_promoted_then_nothing_to_do(lake, tmp_path):
    steps = _steps(lake, tmp_path)
    code, first = _loop(steps, tmp_path)
    assert code == 0, first
    assert first["status"] == "promoted" and first["champion_before"] is None and first["champion_after"] == "1"
    assert first["reasons"][0].startswith("there is no champion yet")
    assert [s["job"] for s in first["steps"]] == ["ingest", "train-check", "train", "drift-after"]

    # The drifted batch arrives in raw/ (new S3 object versions of the same keys).
    drifted = tmp_path / "drifted"
    synthetic.generate(str(drifted), rows=ROWS, seed=7, drift=True)
    for f in sorted(drifted.glob("*.csv")):
        lake["s3"].put_object(Bucket=BUCKET, Key=f"raw/{DATASET}/{f.name}", Body=f.read_bytes())
    stopped = _terminated_during_training(steps, tmp_path)
    assert stopped["status"] == "interrupted" and stopped["msg"].startswith("terminated (SIGTERM) during step train")
    assert stopped["steps"][0]["status"] in ("created", "promoted")  # the drifted batch was ingested
    c = client(lake)
    assert [mv.version for mv in c.search_model_versions(f"name='{MODEL}'")] == ["1"]  # nothing half-registered
    assert c.get_model_version_by_alias(MODEL, "champion").version == "1"
    experiment = c.get_experiment_by_name("fraud-demo").experiment_id
    assert not [r for r in c.search_runs([experiment]) if r.info.status == "RUNNING"]

    code, second = _loop(steps, tmp_path)
    latest = s3_json(lake["s3"], f"curated/{DATASET}/latest")["version"]
    assert code == 0, second
    assert [s["job"] for s in second["steps"]] == ["ingest", "train-check", "drift", "train", "drift-after"], second
    assert second["steps"][0]["status"] == "unchanged"  # ingested by the interrupted pass
    assert second["reasons"][0].startswith(f"new curated data: latest is version {latest}, the champion v1")
    assert second["status"] == "promoted", second["reasons"]
    assert (second["champion_before"], second["champion_after"]) == ("1", "2")
    champion = client(lake).get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "2" and champion.tags["fraud_demo.dataset_version"] == latest

    code, third = _loop(steps, tmp_path)
    assert code == 0 and third["status"] == "nothing_to_do", third
    assert third["changed"] is False and third["champion_after"] == "2"
    assert [s["job"] for s in third["steps"]] == ["ingest", "train-check", "drift"]
    assert third["reasons"][0] == f"no new curated data: the champion v2 was trained on the latest version {latest}"
