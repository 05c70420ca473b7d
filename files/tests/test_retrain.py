"""Tests of the retraining loop (``fraud-demo-retrain``): the decision table on hand-written job summaries, and the
loop itself with small fake step commands (test doubles of the subprocess boundary: each prints the JSON summary
it is told to, logs its argv and the signals it receives, and may sleep)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import ClassVar

import pytest

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import retrain as R
from fraud_demo_jobs import retrain_decide as D

# isort: on

V_OLD, V_NEW = "0123456789abcdef", "fedcba9876543210"  # curated version ids
CHAMPION_3 = {"version": "3", "run_id": "r3", "dataset_version": V_OLD}


def probe(latest=V_OLD, champion=CHAMPION_3, action="would_train"):
    return {
        "job": "train",
        "changed": action == "would_train",
        "action": action,
        "dataset_version": latest,
        "champion": champion,
    }


def drift(share=0.05, detected=False, threshold=0.3):
    top = [{"column": c, "score": 0.4, "stattest": "psi", "drifted": True} for c in ("TransactionAmt", "P_emaildomain")]
    return {
        "job": "drift",
        "changed": True,
        "status": "reported",
        "run": "run-1",
        "model_version": "3",
        "drift_share": share,
        "threshold": threshold,
        "drift_detected": detected,
        "columns": 40,
        "drifted_columns": int(share * 40),
        "top_drifted": top if detected else [],
        "report": {"html": "s3://b/reports/drift/run-1/report.html"},
    }


def trained(version="4", promoted=True, champion="4", reason="holdout AUC 0.9204 beats the champion's 0.8827"):
    return {
        "job": "train",
        "changed": True,
        "action": "trained",
        "dataset_version": V_NEW,
        "model_version": version,
        "decision": "champion" if promoted else "challenger",
        "promoted": promoted,
        "reason": reason,
        "champion": {"version": champion, "dataset_version": V_NEW if promoted else V_OLD},
    }


# ------------------------------------------------------------------------------------------- decision table


def test_decide_no_champion_trains():
    d = D.decide(probe(champion=None), None)
    assert d.train is True
    assert d.reasons == [f"there is no champion yet: train the first model on curated version {V_OLD}"]


def test_decide_new_curated_data_trains():
    d = D.decide(probe(latest=V_NEW), drift(0.05))
    assert d.train is True
    assert d.reasons == [f"new curated data: latest is version {V_NEW}, the champion v3 was trained on {V_OLD}"]


def test_decide_drift_trains_and_names_the_top_columns():
    d = D.decide(probe(), drift(0.55, True))
    assert d.train is True
    assert d.reasons == [
        "drift: share 0.55 is at or above the threshold 0.3 (22 of 40 columns drifted; most: TransactionAmt, "
        "P_emaildomain)"
    ]


def test_decide_drift_and_new_data_give_both_reasons():
    d = D.decide(probe(latest=V_NEW), drift(0.55, True))
    assert d.train is True and len(d.reasons) == 2


def test_decide_nothing_to_do_says_why():
    d = D.decide(probe(action="unchanged"), drift(0.05))
    assert d.train is False
    assert d.reasons == [
        f"no new curated data: the champion v3 was trained on the latest version {V_OLD}",
        "no drift: share 0.05 is below the threshold 0.3 (2 of 40 columns drifted)",
    ]


def test_decide_check_mode_ingest_would_add_data():
    ingest = {"job": "ingest", "changed": True, "action": "would_create", "version": V_NEW}
    d = D.decide(probe(), {"job": "drift", "status": "would_report", "changed": True}, ingest)
    assert d.train is True
    assert d.reasons == [f"ingest would make curated version {V_NEW} the latest (new data)"]  # why it trains
    d = D.decide(probe(), {"job": "drift", "status": "would_report", "changed": True})
    assert d.train is False
    assert d.reasons[1] == "drift was not computed (drift job would_report)"


def test_outcome_promoted():
    o = D.outcome(trained())
    assert (o.status, o.model_version, o.champion_after) == ("promoted", "4", "4")
    assert o.reasons == ["v4 is the new champion: holdout AUC 0.9204 beats the champion's 0.8827"]


def test_outcome_gate_refuses():
    reason = "holdout AUC 0.9001 does not beat the champion's 0.9100 (gain -0.0099, min_auc_gain=0)"
    o = D.outcome(trained("5", promoted=False, champion="3", reason=reason))
    assert (o.status, o.champion_after) == ("refused", "3")
    assert o.reasons == [f"the gate refused v5 (the champion stays v3): {reason}"]


def test_outcome_train_unchanged():
    summary = {
        "job": "train",
        "changed": False,
        "action": "unchanged",
        "dataset_version": V_NEW,
        "model_version": "5",
        "decision": "challenger",
        "promoted": None,
        "reason": "does not beat",
        "champion": CHAMPION_3,
    }
    o = D.outcome(summary)
    assert (o.status, o.champion_after) == ("unchanged", "3")
    assert o.reasons == [
        f"nothing new to learn from: model v5 was already trained on curated version {V_NEW} with this code and "
        "these settings (its gate: does not beat)"
    ]


# ------------------------------------------------------------------------------------- the loop, fake steps

FAKE_JOB = textwrap.dedent(
    """
    import json, os, signal, sys, time
    name, plan_file, log_file = sys.argv[1:4]
    check = "--check" in sys.argv[4:]
    def log(**kw):
        with open(log_file, "a") as f:
            f.write(json.dumps({"step": name, **kw}) + "\\n")
    def on_term(signum, frame):
        log(signal=signum)
        print(json.dumps({"job": name, "changed": False, "failed": True, "msg": f"terminated by signal {signum}"}))
        sys.exit(143)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log(argv=sys.argv[4:])
    plan = json.load(open(plan_file))[name + ("-check" if check else "")]
    print("some progress line")
    time.sleep(plan.get("sleep", 0))
    print(json.dumps(plan["summary"]), flush=True)
    sys.exit(plan.get("rc", 0))
    """
)


class Fake:
    """A steps file whose steps are the fake job, with a plan per step (and per step in --check mode)."""

    def __init__(self, tmp_path, plan: dict, ingest=False, score=False):
        self.dir = tmp_path
        self.plan_file, self.log_file = tmp_path / "plan.json", tmp_path / "calls.log"
        (tmp_path / "fake_job.py").write_text(FAKE_JOB)
        self.plan_file.write_text(json.dumps(plan))

        def cmd(name):
            return [sys.executable, str(tmp_path / "fake_job.py"), name, str(self.plan_file), str(self.log_file)]

        steps = {
            "ingest": cmd("ingest") if ingest else None,
            "drift": cmd("drift"),
            "train": cmd("train"),
            "score": cmd("score") if score else None,
        }
        self.steps = tmp_path / "steps.json"
        self.steps.write_text(json.dumps(steps))

    def args(self, *extra):
        return ["--steps", str(self.steps), "--work-dir", str(self.dir / "work"), *extra]

    def calls(self):
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]


def run_cli(args, **kw):
    res = subprocess.run(
        [sys.executable, "-m", "fraud_demo_jobs.retrain", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kw,
    )
    return res.returncode, json.loads(res.stdout.strip().splitlines()[-1]), res.stderr


def run_inproc(args, capsys):
    code = R.retrain_main(args)
    out = capsys.readouterr()
    return code, json.loads(out.out.strip().splitlines()[-1]), out.err


def test_loop_first_champion(tmp_path, capsys):
    plan = {"train-check": {"summary": probe(champion=None)}, "train": {"summary": trained()}}
    plan["drift"] = {"summary": drift()}
    fake = Fake(tmp_path, plan)
    code, summary, err = run_inproc(fake.args(), capsys)
    assert code == 0, err
    assert summary["status"] == "promoted" and summary["changed"] is True
    assert (summary["champion_before"], summary["champion_after"]) == (None, "4")
    assert summary["train"] == {"model_version": "4", "action": "trained", "decision": "champion"}
    assert summary["drift"] is None  # nothing to compare without a champion
    # After a promotion: the new champion's own drift report (the drift step again, now of the new champion).
    assert [s["job"] for s in summary["steps"]] == ["train-check", "train", "drift-after"]
    assert [c["argv"] for c in fake.calls()] == [["--check"], [], []]
    assert summary["drift_after"]["run"] == "run-1"
    assert "[train] some progress line" in err  # a step's other stdout lines go to stderr


def test_loop_drift_trains_and_the_gate_refuses(tmp_path, capsys):
    refused = trained("5", promoted=False, champion="3", reason="holdout AUC 0.90 does not beat the champion's 0.91")
    fake = Fake(
        tmp_path,
        {"train-check": {"summary": probe()}, "drift": {"summary": drift(0.55, True)}, "train": {"summary": refused}},
    )
    code, summary, _ = run_inproc(fake.args("--threshold", "0.25"), capsys)
    assert code == 0
    assert summary["status"] == "refused"
    assert summary["reasons"][0].startswith("drift: share 0.55 is at or above the threshold 0.3")
    assert summary["reasons"][1].startswith("the gate refused v5 (the champion stays v3)")
    assert (summary["champion_before"], summary["champion_after"]) == ("3", "3")
    assert summary["drift"]["drift_detected"] is True and summary["drift"]["run"] == "run-1"
    drift_call = next(c for c in fake.calls() if c["step"] == "drift")
    assert drift_call["argv"] == ["--threshold=0.25"]  # the loop's threshold is the drift job's


def test_loop_nothing_to_do_runs_no_training(tmp_path, capsys):
    fake = Fake(tmp_path, {"train-check": {"summary": probe(action="unchanged")}, "drift": {"summary": drift(0.05)}})
    code, summary, _ = run_inproc(fake.args(), capsys)
    assert code == 0
    assert summary["status"] == "nothing_to_do" and summary["train"] is None and summary["served"] is None
    assert [s["job"] for s in summary["steps"]] == ["train-check", "drift"]
    assert [c["argv"] for c in fake.calls() if c["step"] == "train"] == [["--check"]]
    assert summary["changed"] is True  # the drift job wrote its report (its own "changed")


def test_loop_train_unchanged(tmp_path, capsys):
    unchanged = {
        "job": "train",
        "changed": False,
        "action": "unchanged",
        "dataset_version": V_NEW,
        "model_version": "5",
        "reason": "does not beat",
        "champion": CHAMPION_3,
    }
    plan = {
        "train-check": {"summary": probe(latest=V_NEW, action="unchanged")},
        "drift": {"summary": {**drift(0.05), "changed": False}},
        "train": {"summary": unchanged},
    }
    code, summary, _ = run_inproc(Fake(tmp_path, plan).args(), capsys)
    assert code == 0 and summary["status"] == "unchanged" and summary["changed"] is False
    assert summary["reasons"][-1].startswith("nothing new to learn from: model v5")


def test_loop_check_mode_writes_nothing(tmp_path, capsys):
    plan = {
        "ingest-check": {"summary": {"job": "ingest", "changed": True, "action": "would_create", "version": V_NEW}},
        "train-check": {"summary": probe()},
        "drift-check": {"summary": {"job": "drift", "changed": True, "status": "would_report"}},
    }
    fake = Fake(tmp_path, plan, ingest=True, score=True)
    code, summary, _ = run_inproc(fake.args("--check"), capsys)
    assert code == 0 and summary["status"] == "would_train"
    assert all("--check" in c["argv"] for c in fake.calls())
    assert [c["step"] for c in fake.calls()] == ["ingest", "train", "drift"]


def test_loop_ingest_then_new_data_then_score(tmp_path, capsys):
    plan = {
        "ingest": {"summary": {"job": "ingest", "changed": True, "action": "created", "version": V_NEW}},
        "train-check": {"summary": probe(latest=V_NEW)},
        "drift": {"summary": drift(0.1)},
        "train": {"summary": trained()},
        "score": {"summary": {"job": "score", "changed": True, "status": "scored"}},
    }
    code, summary, _ = run_inproc(Fake(tmp_path, plan, ingest=True, score=True).args(), capsys)
    assert code == 0 and summary["status"] == "promoted"
    assert [s["job"] for s in summary["steps"]] == ["ingest", "train-check", "drift", "train", "score", "drift-after"]
    statuses = ["created", "would_train", "reported", "trained", "scored", "reported"]
    assert [s["status"] for s in summary["steps"]] == statuses


def test_loop_a_failed_step_stops_it(tmp_path, capsys):
    failed = {
        "job": "drift",
        "changed": False,
        "failed": True,
        "msg": f"curated version {V_OLD} of the champion v3 is gone; re-ingest it",
    }
    plan = {"train-check": {"summary": probe()}, "drift": {"summary": failed, "rc": 1}}
    code, summary, err = run_inproc(Fake(tmp_path, plan).args(), capsys)
    assert code == 1
    assert summary["status"] == "failed" and summary["failed"] is True
    assert summary["msg"] == f"step drift failed: curated version {V_OLD} of the champion v3 is gone; re-ingest it"
    assert err.strip().splitlines()[-1] == f"fraud-demo-retrain: error: {summary['msg']}"
    assert summary["steps"][-1] == {**summary["steps"][-1], "job": "drift", "status": "failed", "rc": 1}


def test_loop_a_step_without_a_summary(tmp_path, capsys):
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps({"drift": ["true"], "train": [sys.executable, "-c", "print('not json')"]}))
    code, summary, _ = run_inproc(["--steps", str(steps), "--work-dir", str(tmp_path)], capsys)
    assert code == 1
    assert summary["msg"].startswith("step train-check (") and summary["msg"].endswith(
        "exited 0 without a JSON summary as its last line"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the steps file"),
        ("[1", "is not JSON"),
        ('{"drift": ["x"], "train": ["y"], "deploy": ["z"]}', "unknown steps ['deploy']"),
        ('{"drift": ["x"]}', "step 'train' is None; required"),
        ('{"drift": ["x"], "train": "fraud-demo-train"}', "step 'train' is 'fraud-demo-train'; required"),
    ],
)
def test_bad_steps_file(tmp_path, capsys, content, message):
    steps = tmp_path / "steps.json"
    if content is not None:
        steps.write_text(content)
    code, summary, _ = run_inproc(["--steps", str(steps), "--work-dir", str(tmp_path)], capsys)
    assert code == 2 and message in summary["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--steps FILE (or FRAUD_DEMO_RETRAIN_STEPS) is required"),
        (["--steps", "s", "--threshold", "1.5"], "--threshold is a share of drifted columns, above 0 and at most 1"),
        (["--steps", "s", "--threshold", "0"], "got 0"),
        (["--steps", "s", "--lock-wait", "-1"], "--lock-wait must be between 0 and 86400"),
        (["--steps", "s", "--service-url", "localhost:8000"], "must be an http:// or https:// URL"),
    ],
)
def test_usage_errors(capsys, monkeypatch, args, message):
    monkeypatch.delenv("FRAUD_DEMO_RETRAIN_STEPS", raising=False)
    monkeypatch.delenv("FRAUD_DEMO_SCORING_URL", raising=False)
    code, summary, _ = run_inproc(args, capsys)
    assert code == 2 and message in summary["msg"] and summary["job"] == "retrain"


# -------------------------------------------------------------------------------- lock and signals (real)


def _start_slow_loop(fake: Fake, lock_file):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraud_demo_jobs.retrain", *fake.args("--lock-file", str(lock_file))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any(c["step"] == "drift" for c in fake.calls()):  # the slow step has started
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


def test_lock_second_run_exits_or_waits_then_sigterm_stops_the_first(tmp_path):
    plan = {"train-check": {"summary": probe()}, "drift": {"summary": drift(), "sleep": 30}}
    fake = Fake(tmp_path, plan)
    lock_file = tmp_path / "retrain.lock"
    first = _start_slow_loop(fake, lock_file)
    try:
        code, summary, err = run_cli(fake.args("--lock-file", str(lock_file)))
        assert code == 75
        assert summary["msg"].startswith(f"another retrain (pid {first.pid}, started 20")
        assert "--lock-wait SECONDS" in summary["msg"] and "nothing" not in err.lower()
        t = time.monotonic()
        code, summary, _ = run_cli(fake.args("--lock-file", str(lock_file), "--lock-wait", "1"))
        assert code == 75 and "after waiting 1 s" in summary["msg"] and time.monotonic() - t >= 1
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    assert first.returncode == 143
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "interrupted"
    assert summary["msg"] == (
        "terminated (SIGTERM) during step drift (terminated by signal 15); the next run starts again from the top"
    )
    signals = [c["signal"] for c in fake.calls() if "signal" in c]
    assert signals == [signal.SIGTERM]  # forwarded exactly once
    assert lock_file.read_text() == ""  # released, names nobody
    # the lock is free again: the next run completes
    plan["drift"]["sleep"] = 0
    fake.plan_file.write_text(json.dumps(plan))
    code, summary, _ = run_cli(fake.args("--lock-file", str(lock_file)))
    assert code == 0 and summary["status"] == "nothing_to_do"


def test_waiting_run_gets_the_lock_when_the_first_ends(tmp_path):
    plan = {"train-check": {"summary": probe(action="unchanged")}, "drift": {"summary": drift(), "sleep": 2}}
    fake = Fake(tmp_path, plan)
    lock_file = tmp_path / "retrain.lock"
    first = _start_slow_loop(fake, lock_file)
    code, summary, _ = run_cli(fake.args("--lock-file", str(lock_file), "--lock-wait", "30"))
    first.communicate(timeout=120)
    assert first.returncode == 0
    assert code == 0 and summary["status"] == "nothing_to_do"


def test_sigint_between_steps_stops_before_the_next(tmp_path):
    plan = {"train-check": {"summary": probe(), "sleep": 0}, "drift": {"summary": drift(0.5, True), "sleep": 30}}
    fake = Fake(tmp_path, plan)
    first = _start_slow_loop(fake, tmp_path / "l")
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["msg"].startswith("interrupted during step drift")
    assert not [c for c in fake.calls() if c["step"] == "train" and "--check" not in c["argv"]]


def test_held_signal_after_the_train_commit_still_reports_the_promotion(tmp_path, capsys):
    """The train job exits 143 after its commit when a SIGTERM was held through it: the version is registered and
    aliased; the loop says so while it reports the interruption."""
    late = {**trained(), "failed": True, "msg": "terminated (SIGTERM); ..."}
    plan = {
        "train-check": {"summary": probe(latest=V_NEW)},
        "drift": {"summary": drift()},
        "train": {"summary": late, "rc": 143},
    }
    code, summary, _ = run_inproc(Fake(tmp_path, plan).args(), capsys)
    assert code == 1 and summary["failed"] is True
    assert summary["champion_after"] == "4" and summary["train"]["action"] == "trained"
    assert "v4 is the new champion" in summary["reasons"][-1]


# ----------------------------------------------------------------------------------- waiting for the service


class _Health(http.server.BaseHTTPRequestHandler):
    versions: ClassVar[list[str]] = []  # what /health reports, one per request; the last one stays

    def do_GET(self):
        version = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        body = json.dumps({"status": "ok", "model_version": version}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_waits_until_the_service_serves_the_new_champion(tmp_path, capsys, monkeypatch, health_server):
    monkeypatch.setattr(R, "HEALTH_POLL_SECONDS", 0.05)
    _Health.versions = ["3", "3", "3", "4"]
    plan = {
        "train-check": {"summary": probe(latest=V_NEW)},
        "drift": {"summary": drift()},
        "train": {"summary": trained()},
    }
    url = f"http://127.0.0.1:{health_server.server_address[1]}"
    code, summary, _ = run_inproc(Fake(tmp_path, plan).args("--service-url", url), capsys)
    assert code == 0 and summary["served"] is True
    assert summary["steps"][-2]["job"] == "serve" and summary["steps"][-2]["status"] == "served"
    assert summary["steps"][-1]["job"] == "drift-after"
    assert summary["reasons"][-1] == f"the service at {url} serves v4"


def test_service_that_does_not_switch_in_time(tmp_path, capsys, monkeypatch, health_server):
    monkeypatch.setattr(R, "HEALTH_POLL_SECONDS", 0.05)
    _Health.versions = ["3"]
    plan = {
        "train-check": {"summary": probe(latest=V_NEW)},
        "drift": {"summary": drift()},
        "train": {"summary": trained()},
    }
    url = f"http://127.0.0.1:{health_server.server_address[1]}"
    code, summary, _ = run_inproc(Fake(tmp_path, plan).args("--service-url", url, "--serve-timeout", "0.3"), capsys)
    assert code == 0 and summary["status"] == "promoted" and summary["served"] is False
    assert summary["reasons"][-1].startswith(f"the service at {url} did not serve v4 within 0.3 s (it serves v3)")


def test_lock_file_default_is_in_the_work_dir(tmp_path, capsys):
    plan = {"train-check": {"summary": probe(action="unchanged")}, "drift": {"summary": drift()}}
    fake = Fake(tmp_path, plan)
    code, _, _ = run_inproc(fake.args(), capsys)
    assert code == 0 and os.path.exists(tmp_path / "work" / "retrain.lock")
