"""End-to-end test of the train, deploy and monitor stages on the sandbox: site.yml (seven stages) twice and in check
mode; settings and a stopped tracking server refused with their message; a promotion under load and a restart of the
scoring service under load without a failed request; batch scoring idempotent; bad requests over the real service;
then the node replaced (teardown, data kept) and the registry, the service and the predictions back; then the closed
loop: a drifted batch lands, the loop started by systemd is stopped with SIGTERM while it trains (nothing
half-promoted), retrain.yml completes it (drift, train, the gate's decision, the new champion served) while a second
loop started by systemd meanwhile is refused by the lock, and a second retrain.yml with nothing new does nothing."""

import http.client
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import ROOT, on_node, one_line, wait_for
from fraud_demo_jobs import layout
from loadgen import run_load
from mlflow.tracking import MlflowClient
from modelstate import check_model, runs_by_status, snapshot

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

# The service looks at the registry only when told (SIGHUP from deploy.yml), so the promotion below is deploy.yml's.
DEPLOY = ["-e", "scoring_service_reload_interval=0"]
ROWS = ["-e", "fraud_demo_synthetic_rows=20000", *DEPLOY]
MODEL = "fraud-detector"
SERVICE = "fraud-demo-mlflow"
SCORING = "fraud-demo-scoring"
RETRAIN = "fraud-demo-retrain"
# The roles of the ML stages (train, deploy, monitor's node side), whose share of the site.yml re-run is measured.
ML_ROLES = ("mlflow_server", "train", "scoring_service", "batch_score", "drift_report", "retrain_loop")
PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_roles"}
ROLE_TIME = re.compile(r"^(\w+) -{3,} (\d+\.\d+)s$", re.M)
# One transaction with the contract's required fields (the first row of the real test_transaction.csv).
TRANSACTION = {
    "TransactionID": 3663549,
    "TransactionDT": 18403224,
    "TransactionAmt": 31.95,
    "ProductCD": "W",
    "card1": 10409,
}


def post(url, body, token=None, timeout=30):
    """(status, JSON answer) of POST url with a JSON body (bytes are sent as they are)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def post_oversized(url, size, token):
    """Status of a POST whose body is `size` bytes: the service may answer 413 and close before it has all of it, so
    a refused send is not the end (the answer is already on the socket)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("POST", parts.path)
    for name, value in (("Content-Type", "application/json"), ("Content-Length", str(size))):
        connection.putheader(name, value)
    connection.putheader("Authorization", f"Bearer {token}")
    connection.endheaders()
    try:
        connection.send(b"[" + b" " * (size - 2) + b"]")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        return connection.getresponse().status
    finally:
        connection.close()


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def under_load(url, token, action, rate=40, window=4):
    """Run action() while scripts/sandboxlib/loadgen.py sends a bounded open-loop load to /predict (loopback,
    `rate` requests a second, in loads of `window` seconds back to back: one before the action, as many as it
    lasts, one after it). Returns (action's result, every request's Outcome in the order they were sent)."""
    body = json.dumps(TRANSACTION).encode()
    headers = {"Authorization": f"Bearer {token}"}

    def window_of_load():
        result = run_load(
            f"{url}/predict", rate, duration=window, body=body, headers=headers, field="model_version", timeout=30
        )
        return result.outcomes

    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("result", action()))
    outcomes = window_of_load()
    thread.start()
    while thread.is_alive():
        outcomes += window_of_load()
    outcomes += window_of_load()
    thread.join()
    return done["result"], outcomes


def versions_in_order(outcomes):
    """The model versions that answered, in the order the requests were sent, runs collapsed: ["1", "2"]."""
    out = []
    for outcome in outcomes:
        if not out or out[-1] != outcome.value:
            out.append(outcome.value)
    return out


def role_seconds(output):
    """{role: seconds} from the profile_roles callback's table (a role met in several plays is summed by it)."""
    return {name: float(seconds) for name, seconds in ROLE_TIME.findall(output) if name != "total"}


def drift_summaries(s3, bucket):
    """{run: summary.json} of every complete drift report under reports/drift/."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.DRIFT_REPORTS)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {
        key[len(layout.DRIFT_REPORTS) :].split("/")[0]: json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for key in keys
        if key.endswith("/" + layout.DRIFT_SUMMARY)
    }


def prediction_objects(s3, bucket, model_version):
    """{key@VersionId: ETag} of every object version under predictions/<model version>/."""
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=layout.predictions_model_prefix(model_version)
    )
    return {v["Key"] + "@" + v["VersionId"]: v["ETag"] for page in pages for v in page.get("Versions", [])}


def all_runs(client):
    """{run id: (status, artifact URI, metrics)} of every run in every experiment: what a restore must bring back."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments) if experiments else []
    return {r.info.run_id: (r.info.status, r.info.artifact_uri, tuple(sorted(r.data.metrics.items()))) for r in runs}


def node_down_and_fresh():
    """Replace the node: stop it and boot a fresh tree from the image (nothing of the old disk survives)."""
    for verb in ("down", "up"):
        subprocess.run(["scripts/sandbox-node.sh", verb], cwd=ROOT, check=True, capture_output=True, timeout=300)


@pytest.fixture
def node_left_empty():
    """Replace the node after the test: its timers and services (the registry backup every 15 min, the scoring
    service's sample flush) would otherwise keep writing into the next test's bucket of the same name."""
    yield
    node_down_and_fresh()


def test_site_trains_deploys_once_reruns_clean_promotes_under_load_and_restores(
    aws, names, playbook, sandbox_env, capsys, node_left_empty
):
    # A node with a registry from an earlier run would hold runs of a bucket the emulator's reset forgot.
    node_down_and_fresh()
    client = MlflowClient(
        tracking_uri=sandbox_env["MLFLOW_TRACKING_URI"], registry_uri=sandbox_env["MLFLOW_TRACKING_URI"]
    )
    url, token = sandbox_env["FRAUD_DEMO_SCORING_URL"], sandbox_env["FRAUD_DEMO_SCORING_TOKEN"]
    s3 = aws.client("s3")

    first = playbook("site.yml", *ROWS)
    assert first.rc == 0, first
    state, problems = check_model(aws, names.bucket, client, MODEL, versions=1)
    assert problems == []
    assert state["aliases"] == {"champion": "1"}
    text = one_line(first.output)
    assert f"{MODEL} version 1: trained and registered" in text, first
    assert "decision: champion (promoted)" in text, first
    assert "this model) vs none (no champion before)" in text, first
    # Stage 6: the service serves the champion, the batch predictions of version 1 are written.
    assert get(f"{url}/health")["model_version"] == "1"
    assert "served: version 1" in text, first
    assert f"{MODEL} version 1 on ieee-fraud-detection version" in text and "scored and written" in text, first
    assert len(prediction_objects(s3, names.bucket, "1")) == 3
    # Stage 7: one drift report of the champion against the curated test tables, the loop's units installed.
    reports = drift_summaries(s3, names.bucket)
    assert len(reports) == 1, reports
    first_drift = next(iter(reports.values()))
    assert first_drift["model_version"] == "1" and 0 <= first_drift["drift_share"] <= 1, first_drift
    assert f"drift share: {first_drift['drift_share']:.3f}" in text, first
    assert on_node(f"systemctl is-enabled {RETRAIN}.timer") == "enabled"

    again = playbook("site.yml", *ROWS, env=PROFILE)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert "unchanged, the report of this model version, current data and settings exists" in one_line(again.output)
    roles = role_seconds(again.output)
    ml_share = sum(roles.get(r, 0.0) for r in ML_ROLES) / again.seconds
    assert "unchanged, a version trained on the same dataset version" in one_line(again.output), again
    assert "unchanged, the predictions of this model version and dataset version exist" in one_line(again.output)

    check = playbook("site.yml", "--check", "--diff", *ROWS)
    assert check.rc == 0, check
    assert check.changed == 0, check
    assert snapshot(client, MODEL) == state
    assert token not in check.output + again.output + first.output

    with capsys.disabled():
        print(
            f"\nsite.yml with all seven stages: first run {first.seconds:.1f}s, re-run {again.seconds:.1f}s"
            f" (ML stages' roles {ml_share:.0%}: "
            + ", ".join(f"{r} {roles.get(r, 0.0):.1f}s" for r in ML_ROLES)
            + f"), --check {check.seconds:.1f}s"
        )
    added = time.monotonic()

    # Bad requests over the real service: each one refused with its status, field and rule; it keeps serving.
    assert post(f"{url}/predict", TRANSACTION)[0] == 401
    assert post(f"{url}/predict", TRANSACTION, "not-the-token")[0] == 401
    status, answer = post(f"{url}/predict", {**TRANSACTION, "ProductCD": "Z", "isFraud": 1}, token)
    assert status == 422, answer
    assert {p["field"] for p in answer["problems"]} >= {"ProductCD", "isFraud"}, answer
    assert all(p["rule"] for p in answer["problems"]), answer
    assert post(f"{url}/predict", [TRANSACTION] * 1001, token)[0] == 413
    assert post_oversized(f"{url}/predict", 2 << 20, token) == 413
    assert post(f"{url}/predict", TRANSACTION, token)[0] == 200

    # The deploy stage's settings refused by its preflight before anything changes, each with its own message.
    bad = playbook("deploy.yml", "-e", "fraud_demo_scoring_host=0.0.0.0")
    assert bad.rc != 0 and bad.changed == 0, bad
    assert "the scoring service must never listen anywhere but a loopback address" in one_line(bad.output), bad
    bad = playbook("deploy.yml", "-e", "fraud_demo_scoring_token=")
    assert bad.rc != 0 and bad.changed == 0, bad
    assert "No bearer token for the scoring service" in one_line(bad.output), bad

    # A promotion under load: version 2 (a copy of 1, lineage tags included) becomes champion through the
    # registry, deploy.yml swaps it in with SIGHUP; every request succeeds and the answers switch from 1 to 2.
    client.copy_model_version(f"models:/{MODEL}/1", MODEL)
    client.set_registered_model_alias(MODEL, "champion", "2")
    promoted, load = under_load(url, token, lambda: playbook("deploy.yml", "--skip-tags", "batch_score", *DEPLOY))
    assert promoted.rc == 0 and promoted.changed >= 1, promoted
    assert "swapped from 1" in one_line(promoted.output), promoted
    assert [o for o in load if o.error] == [], [o for o in load if o.error][:5]
    assert versions_in_order(load) == ["1", "2"], versions_in_order(load)
    assert get(f"{url}/version")["model_version"] == "2"
    promotion = (len(load), promoted.seconds)

    # Batch scoring of the new champion once; a second run changes nothing and touches no object.
    scored = playbook("deploy.yml", "--skip-tags", "scoring_service", *DEPLOY)
    assert scored.rc == 0 and scored.changed == 1, scored
    objects = prediction_objects(s3, names.bucket, "2")
    assert len(objects) == 3
    unchanged = playbook("deploy.yml", "--skip-tags", "scoring_service", *DEPLOY)
    assert unchanged.rc == 0 and unchanged.changed == 0, unchanged
    assert prediction_objects(s3, names.bucket, "2") == objects

    # The service stopped (SIGTERM: drain, exit 0) and restarted under load: the socket holds the connections
    # meanwhile, the next one starts it again (socket activation), and no request fails.
    def stop_and_restart():
        on_node(f"systemctl kill -s TERM {SCORING}.service")
        time.sleep(5)
        on_node(f"systemctl restart {SCORING}.service")

    _, load = under_load(url, token, stop_and_restart)
    assert [o for o in load if o.error] == [], [o for o in load if o.error][:5]
    assert versions_in_order(load) == ["2"], versions_in_order(load)
    assert on_node(f"systemctl is-active {SCORING}.service") == "active"
    on_node(f"systemctl start {SERVICE}-backup.service")  # the alias moved outside the train job: back it up
    state, problems = check_model(aws, names.bucket, client, MODEL, versions=2)
    assert problems == [], problems

    with capsys.disabled():
        print(
            f"deploy checks: {time.monotonic() - added:.1f}s; promotion under load: {promotion[0]} requests,"
            f" deploy.yml {promotion[1]:.1f}s; batch scoring {scored.seconds:.1f}s, unchanged {unchanged.seconds:.1f}s;"
            f" SIGTERM + restart under load: {len(load)} requests, slowest {max(o.latency for o in load):.1f}s"
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
    assert check_model(aws, names.bucket, client, MODEL, versions=2)[1] == []
    assert get(f"{url}/health")["model_version"] == "2"
    assert "unchanged, the predictions of this model version and dataset version exist" in one_line(restored.output)

    with capsys.disabled():
        print(f"site.yml on a fresh node, registry restored: {restored.seconds:.1f}s")

    # The drift report refused clearly where the data is not there: a curated version that does not exist, an alias
    # no version carries; each the job's own message, nothing changed.
    bad = playbook("monitor.yml", "-e", "drift_report_current=0123456789abcdef", *DEPLOY)
    assert bad.rc != 0 and bad.changed == 0, bad
    assert "no current data: curated version 0123456789abcdef of ieee-fraud-detection does not exist" in one_line(
        bad.output
    ), bad
    bad = playbook("monitor.yml", "-e", "drift_report_alias=nobody", *DEPLOY)
    assert bad.rc != 0 and bad.changed == 0, bad
    assert f"no model version of {MODEL} has the alias nobody yet" in one_line(bad.output), bad
    bad = playbook("monitor.yml", "-e", json.dumps({"fraud_demo_retrain_schedule": "every tuesday"}), *DEPLOY)
    assert bad.rc != 0 and bad.changed == 0, bad
    assert "is not a systemd OnCalendar expression" in one_line(bad.output), bad

    # The closed loop. A later, drifted batch lands in raw/ (its own directory on the node, the normal one kept).
    loop_start = time.monotonic()
    landed = playbook("dataset.yml", "-e", "fraud_demo_synthetic_drift=true", *ROWS)
    assert landed.rc == 0 and landed.changed >= 1, landed
    before = snapshot(client, MODEL)

    # The timer's service starts the loop (as systemd would at 04:00): it ingests the batch, reports the drift and
    # trains; SIGTERM while it trains (systemctl stop: to the loop, which forwards it to the training step) leaves no
    # half-promoted state: no new version, no alias moved, no run left RUNNING.
    on_node(f"systemctl start --no-block {RETRAIN}.service")
    wait_for(lambda: runs_by_status(client, "RUNNING") != [], 600, "the loop's training run")
    on_node(f"systemctl stop {RETRAIN}.service")
    assert on_node(f"systemctl show -p ExecMainStatus --value {RETRAIN}.service") == "143"
    assert snapshot(client, MODEL) == before
    assert runs_by_status(client, "RUNNING") == []
    stopped = time.monotonic()

    # retrain.yml completes it: the new curated version (and its drift) reported, a new version trained and gated,
    # the decision with its reason, the service serving the champion, its batch predictions written. While it
    # trains, the timer's service starts a second loop: refused by the lock at once (exit 75), naming the running
    # one. The service here looks at the registry only on SIGHUP (DEPLOY), which retrain.yml's swap sends, so the
    # loop is told not to wait long for it.
    done = {}
    args = ("retrain.yml", "-e", "retrain_loop_serve_timeout=5", *DEPLOY)
    thread = threading.Thread(target=lambda: done.setdefault("loop", playbook(*args)))
    thread.start()
    wait_for(lambda: runs_by_status(client, "RUNNING") != [], 600, "retrain.yml's training run")
    on_node(f"systemctl start {RETRAIN}.service")
    busy_status = on_node(f"systemctl show -p ExecMainStatus --value {RETRAIN}.service")
    busy_log = one_line(on_node(f"journalctl -u {RETRAIN}.service -n 5 --no-pager"))
    thread.join()
    loop = done["loop"]
    assert busy_status == "75", busy_status
    assert "another retrain" in busy_log and "is running" in busy_log, busy_log
    assert loop.rc == 0 and loop.changed >= 1, loop
    text = one_line(loop.output)
    assert "retrain loop: trained, and the gate promoted the new version to champion" in text, loop
    assert "- new curated data: latest is version" in text and "is the new champion: holdout AUC" in text, loop
    state = snapshot(client, MODEL)
    champion = state["aliases"]["champion"]
    assert champion not in ("1", "2"), state
    assert get(f"{url}/health")["model_version"] == champion
    assert len(prediction_objects(s3, names.bucket, champion)) == 3
    # The drifted batch's report against the old champion: more columns drifted than in the first champion's own
    # data's report; then the new champion's own report on the same data (made by the promoting pass, so the
    # DriftShare metric describes the model that serves): less drift than the one that made the loop retrain.
    reports = drift_summaries(s3, names.bucket)
    new_data = [
        r for r in reports.values() if r["current"]["dataset_version"] != first_drift["current"]["dataset_version"]
    ]
    drifted = [r for r in new_data if r["model_version"] != champion]
    after = [r for r in new_data if r["model_version"] == champion]
    assert drifted and drifted[0]["drift_share"] > first_drift["drift_share"], reports
    assert after and after[0]["drift_share"] < drifted[0]["drift_share"], reports
    completed = time.monotonic()

    # Nothing new: the loop reports the same drift run (unchanged), trains nothing, changes nothing.
    idle = playbook("retrain.yml", "-e", "retrain_loop_serve_timeout=5", *DEPLOY)
    assert idle.rc == 0 and idle.changed == 0, idle
    assert "retrain loop: nothing to do" in one_line(idle.output), idle
    assert snapshot(client, MODEL) == state

    with capsys.disabled():
        print(
            f"the loop: drifted batch landed {landed.seconds:.1f}s; systemd's loop until training + SIGTERM"
            f" {stopped - loop_start - landed.seconds:.1f}s; retrain.yml drift → train → gate → served → scored"
            f" {loop.seconds:.1f}s ({completed - stopped:.1f}s); nothing to do {idle.seconds:.1f}s;"
            f" drift share {first_drift['drift_share']:.3f} → {drifted[0]['drift_share']:.3f}"
        )
