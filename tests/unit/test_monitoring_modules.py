"""library/eventbridge_run_command_rule.py and library/cloudwatch_alarm_tags.py, run the way Ansible runs them
(the `ansible` CLI, ad hoc, with this repository's ansible.cfg), against an in-process moto server on a free
loopback port. Expected values are written out by hand, not derived from the modules.

Run: .venv/bin/pytest -q tests/unit/test_monitoring_modules.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / ".venv" / "bin" / "ansible"
PYTHON = ROOT / ".venv" / "bin" / "python"
# The controller itself, with the venv's Python (it has boto3; interpreter discovery may pick another).
INVENTORY = ["-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={PYTHON}"]
REGION = "us-east-1"
RULE = "fraud-demo-unit-retrain-on-drift"
ROLE_ARN = "arn:aws:iam::123456789012:role/fraud-demo-unit-retrain-events"
DRIFT_ALARM_ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:fraud-demo-unit-drift-share"
TAGS = {"Purpose": "fraud-demo", "Project": "unit"}
PATTERN = {
    "source": ["aws.cloudwatch"],
    "detail-type": ["CloudWatch Alarm State Change"],
    "resources": [DRIFT_ALARM_ARN],
    "detail": {"state": {"value": ["ALARM"]}},
}
COMMAND = "systemctl start --no-block fraud-demo-retrain.service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def env(endpoint):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANSIBLE_"))}
    e.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
    )
    requests = boto3.session.Session(region_name=REGION)
    events = requests.client(
        "events", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    cw = requests.client(
        "cloudwatch", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    yield e, events, cw
    for rule in events.list_rules()["Rules"]:
        ids = [t["Id"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]]
        if ids:
            events.remove_targets(Rule=rule["Name"], Ids=ids)
        events.delete_rule(Name=rule["Name"])
    names = [a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]]
    if names:
        cw.delete_alarms(AlarmNames=names)


def run(env, module: str, args: dict, *flags: str) -> dict:
    """One ad-hoc module call; returns the host's result."""
    proc = subprocess.run(
        [str(ANSIBLE), "localhost", *INVENTORY, "-m", module, "-a", json.dumps(args), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = json.loads(proc.stdout)
    return out["plays"][0]["tasks"][0]["hosts"]["localhost"]


def rule_args(**overrides) -> dict:
    args = dict(
        name=RULE,
        event_pattern=PATTERN,
        description="drift -> retrain",
        role_arn=ROLE_ARN,
        commands=[COMMAND],
        instance_tags=TAGS,
        tags=TAGS,
    )
    return {**args, **overrides}


def test_rule_created_then_unchanged(env):
    e, events, _ = env
    first = run(e, "eventbridge_run_command_rule", rule_args())
    assert first["changed"] is True, first
    second = run(e, "eventbridge_run_command_rule", rule_args())
    assert second["changed"] is False, second

    rule = events.describe_rule(Name=RULE)
    assert json.loads(rule["EventPattern"]) == PATTERN
    assert rule["State"] == "ENABLED"
    tags = {t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]}
    assert tags == {"Purpose": "fraud-demo", "Project": "unit"}
    (target,) = events.list_targets_by_rule(Rule=RULE)["Targets"]
    assert target["Id"] == "run-command"
    assert target["Arn"] == "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
    assert target["RoleArn"] == ROLE_ARN
    assert json.loads(target["Input"]) == {"commands": ["systemctl start --no-block fraud-demo-retrain.service"]}
    run_targets = sorted((t["Key"], t["Values"]) for t in target["RunCommandParameters"]["RunCommandTargets"])
    assert run_targets == [("tag:Project", ["unit"]), ("tag:Purpose", ["fraud-demo"])]


def test_check_mode_reports_and_diffs_without_writing(env):
    e, events, _ = env
    run(e, "eventbridge_run_command_rule", rule_args())
    checked = run(e, "eventbridge_run_command_rule", rule_args(commands=["true"]), "--check", "--diff")
    assert checked["changed"] is True
    assert checked["diff"]["before"]["target"]["commands"] == [COMMAND]
    assert checked["diff"]["after"]["target"]["commands"] == ["true"]
    (target,) = events.list_targets_by_rule(Rule=RULE)["Targets"]
    assert json.loads(target["Input"]) == {"commands": [COMMAND]}


def test_foreign_target_is_removed_and_own_target_kept(env):
    e, events, _ = env
    run(e, "eventbridge_run_command_rule", rule_args())
    events.put_targets(Rule=RULE, Targets=[{"Id": "someone-else", "Arn": "arn:aws:sns:us-east-1:123456789012:x"}])
    again = run(e, "eventbridge_run_command_rule", rule_args())
    assert again["changed"] is True
    assert again["diff"]["before"]["other_targets"] == ["someone-else"]
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=RULE)["Targets"]] == ["run-command"]


def test_rule_without_our_tags_is_refused(env):
    e, events, _ = env
    events.put_rule(Name=RULE, EventPattern=json.dumps(PATTERN), Tags=[{"Key": "Purpose", "Value": "other"}])
    refused = run(e, "eventbridge_run_command_rule", rule_args())
    assert refused.get("failed") is True
    assert "exists without the tags" in refused["msg"] and "neither changed nor deleted" in refused["msg"]
    absent = run(e, "eventbridge_run_command_rule", {"name": RULE, "tags": TAGS, "state": "absent"})
    assert absent.get("failed") is True
    assert events.describe_rule(Name=RULE)["Name"] == RULE
    assert events.list_targets_by_rule(Rule=RULE)["Targets"] == []


def test_absent_deletes_then_is_unchanged(env):
    e, events, _ = env
    run(e, "eventbridge_run_command_rule", rule_args())
    gone = run(e, "eventbridge_run_command_rule", {"name": RULE, "tags": TAGS, "state": "absent"})
    assert gone["changed"] is True
    assert events.list_rules(NamePrefix=RULE)["Rules"] == []
    again = run(e, "eventbridge_run_command_rule", {"name": RULE, "tags": TAGS, "state": "absent"})
    assert again["changed"] is False


def test_alarm_tags_set_purged_and_missing_alarm_named(env):
    e, _, cw = env
    cw.put_metric_alarm(
        AlarmName="unit-alarm",
        Namespace="FraudDemo",
        MetricName="DriftShare",
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0.3,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Tags=[{"Key": "Stale", "Value": "yes"}],
    )
    arn = cw.describe_alarms(AlarmNames=["unit-alarm"])["MetricAlarms"][0]["AlarmArn"]
    tagged = run(e, "cloudwatch_alarm_tags", {"names": ["unit-alarm"], "tags": TAGS}, "--diff")
    assert tagged["changed"] is True
    assert tagged["diff"]["before"] == {"unit-alarm": {"Stale": "yes"}}
    assert {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=arn)["Tags"]} == {
        "Purpose": "fraud-demo",
        "Project": "unit",
    }
    assert run(e, "cloudwatch_alarm_tags", {"names": ["unit-alarm"], "tags": TAGS})["changed"] is False
    missing = run(e, "cloudwatch_alarm_tags", {"names": ["no-such-alarm"], "tags": TAGS})
    assert missing.get("failed") is True and "no-such-alarm does not exist" in missing["msg"]
    in_check = run(e, "cloudwatch_alarm_tags", {"names": ["no-such-alarm"], "tags": TAGS}, "--check")
    assert in_check["changed"] is True and not in_check.get("failed")
