"""Read the monitoring resources of molecule/monitor back through the AWS API (boto3) and compare them with
hand-written expectations (the settings of vars.yml, spelled out again here on purpose).

    python check_monitor.py verify      every promised property; exit 1 with the list of problems
    python check_monitor.py leftovers   none of the scenario's resources exists; exit 1 if one does
"""

from __future__ import annotations

import json
import sys

import boto3
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"  # the emulator's account
PREFIX = "fraud-demo-molecule-mon"
TOPIC = f"{PREFIX}-alerts"
ALARMS = {"drift": f"{PREFIX}-drift-share", "error_rate": f"{PREFIX}-error-rate", "p99": f"{PREFIX}-p99-latency"}
RULE = f"{PREFIX}-retrain-on-drift"
ROLE = f"{PREFIX}-retrain-events"
TAGS = {"Purpose": "fraud-demo", "Project": "molecule-mon"}
SCORING = [{"Name": "Dataset", "Value": "ieee-fraud-detection"}, {"Name": "Stage", "Value": "scoring"}]
MONITOR = [{"Name": "Dataset", "Value": "ieee-fraud-detection"}, {"Name": "Stage", "Value": "monitor"}]


def expect(problems: list[str], label: str, got, want) -> None:
    if got != want:
        problems.append(f"{label}: got {got!r}, want {want!r}")


def tags_of(pairs: list[dict]) -> dict:
    return {p["Key"]: p["Value"] for p in pairs}


def check_topic(sns, region: str, problems: list[str]) -> str:
    arn = f"arn:aws:sns:{region}:{ACCOUNT}:{TOPIC}"
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    if arn not in topics:
        problems.append(f"topic {arn} missing")
        return arn
    expect(problems, "topic tags", tags_of(sns.list_tags_for_resource(ResourceArn=arn)["Tags"]), {**TAGS, "Name": TOPIC})
    policy = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    statement = policy["Statement"][0]
    expect(problems, "topic policy statements", len(policy["Statement"]), 1)
    expect(problems, "topic policy principal", statement["Principal"], {"Service": "cloudwatch.amazonaws.com"})
    expect(problems, "topic policy action", statement["Action"], "sns:Publish")
    expect(problems, "topic policy account", statement["Condition"]["StringEquals"], {"aws:SourceAccount": ACCOUNT})
    subs = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    expect(problems, "subscriptions", [(s["Protocol"], s["Endpoint"]) for s in subs], [("email", "alerts@example.com")])
    return arn


def check_alarms(cw, topic_arn: str, problems: list[str]) -> str:
    found = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNames=list(ALARMS.values()))["MetricAlarms"]}
    for name in ALARMS.values():
        if name not in found:
            problems.append(f"alarm {name} missing")
            continue
        alarm = found[name]
        expect(problems, f"{name} tags", tags_of(cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]), TAGS)
        expect(problems, f"{name} alarm actions", alarm["AlarmActions"], [topic_arn])
        expect(problems, f"{name} comparison", alarm["ComparisonOperator"], "GreaterThanOrEqualToThreshold")
    drift = found.get(ALARMS["drift"], {})
    want = {
        "Namespace": "FraudDemo",
        "MetricName": "DriftShare",
        "Dimensions": MONITOR,
        "Statistic": "Maximum",
        "Threshold": 0.25,
        "TreatMissingData": "ignore",
        "EvaluationPeriods": 1,
    }
    for key, value in want.items():
        expect(problems, f"drift alarm {key}", drift.get(key), value)
    p99 = found.get(ALARMS["p99"], {})
    want = {
        "Namespace": "FraudDemo",
        "MetricName": "Latency",
        "Dimensions": SCORING,
        "ExtendedStatistic": "p99",
        "Threshold": 300.0,
        "TreatMissingData": "notBreaching",
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Period": 300,
    }
    for key, value in want.items():
        expect(problems, f"p99 alarm {key}", p99.get(key), value)
    rate = found.get(ALARMS["error_rate"], {})
    expect(problems, "error-rate threshold", rate.get("Threshold"), 0.02)
    expect(problems, "error-rate missing data", rate.get("TreatMissingData"), "notBreaching")
    metrics = {m["Id"]: m for m in rate.get("Metrics", [])}
    for mid, metric_name in (("errors", "Errors5xx"), ("requests", "Requests")):
        stat = metrics.get(mid, {}).get("MetricStat", {})
        expect(problems, f"error-rate {mid} metric", stat.get("Metric", {}).get("MetricName"), metric_name)
        expect(problems, f"error-rate {mid} dims", stat.get("Metric", {}).get("Dimensions"), SCORING)
        expect(problems, f"error-rate {mid} stat", (stat.get("Stat"), stat.get("Period")), ("Sum", 300))
    expect(problems, "error-rate expression", metrics.get("rate", {}).get("Expression"), "IF(requests >= 20, errors / requests, 0)")
    return drift.get("AlarmArn", "")


def check_rule(events, iam, region: str, drift_arn: str, problems: list[str]) -> None:
    try:
        rule = events.describe_rule(Name=RULE)
    except ClientError:
        problems.append(f"rule {RULE} missing")
        return
    pattern = json.loads(rule["EventPattern"])
    expect(problems, "rule resources", pattern.get("resources"), [drift_arn])
    expect(problems, "rule state filter", pattern.get("detail"), {"state": {"value": ["ALARM"]}})
    expect(problems, "rule detail-type", pattern.get("detail-type"), ["CloudWatch Alarm State Change"])
    expect(problems, "rule tags", tags_of(events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]), {**TAGS, "Name": RULE})
    targets = events.list_targets_by_rule(Rule=RULE)["Targets"]
    expect(problems, "rule targets", len(targets), 1)
    target = targets[0] if targets else {}
    expect(problems, "target document", target.get("Arn"), f"arn:aws:ssm:{region}::document/AWS-RunShellScript")
    expect(problems, "target role", target.get("RoleArn"), f"arn:aws:iam::{ACCOUNT}:role/{ROLE}")
    expect(
        problems,
        "target commands",
        json.loads(target.get("Input", "{}")),
        {"commands": ["systemctl start --no-block fraud-demo-retrain.service"]},
    )
    run = target.get("RunCommandParameters", {}).get("RunCommandTargets", [])
    expect(problems, "target instances", sorted((t["Key"], t["Values"]) for t in run), [
        ("tag:Project", ["molecule-mon"]),
        ("tag:Purpose", ["fraud-demo"]),
    ])
    role = iam.get_role(RoleName=ROLE)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    expect(problems, "role trust principal", trust["Statement"][0]["Principal"], {"Service": "events.amazonaws.com"})
    expect(problems, "role tags", tags_of(iam.list_role_tags(RoleName=ROLE)["Tags"]), {**TAGS, "Name": ROLE})
    expect(problems, "role managed policies", iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"], [])
    policy = iam.get_role_policy(RoleName=ROLE, PolicyName="send-retrain-command")["PolicyDocument"]
    expect(problems, "role actions", sorted({s["Action"] for s in policy["Statement"]}), ["ssm:SendCommand"])
    instance = [s for s in policy["Statement"] if ":instance/" in s["Resource"]]
    expect(
        problems,
        "role instance condition",
        instance[0]["Condition"] if instance else None,
        {"StringEquals": {"ssm:resourceTag/Purpose": "fraud-demo", "ssm:resourceTag/Project": "molecule-mon"}},
    )


def leftovers(session) -> list[str]:
    found = []
    if any(t["TopicArn"].endswith(f":{TOPIC}") for t in session.client("sns").list_topics()["Topics"]):
        found.append(f"topic {TOPIC}")
    found += [f"alarm {a['AlarmName']}" for a in session.client("cloudwatch").describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"]]
    found += [f"rule {r['Name']}" for r in session.client("events").list_rules(NamePrefix=PREFIX)["Rules"]]
    found += [f"role {r['RoleName']}" for r in session.client("iam").list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)]
    found += [f"subscription {s['Endpoint']}" for s in session.client("sns").list_subscriptions()["Subscriptions"] if TOPIC in s["TopicArn"]]
    return found


def main(argv: list[str]) -> int:
    session = boto3.session.Session()
    if argv[1:] == ["leftovers"]:
        left = leftovers(session)
        print("\n".join(f"left over: {x}" for x in left) or "nothing of the scenario's exists")
        return 1 if left else 0
    if argv[1:] != ["verify"]:
        print(__doc__, file=sys.stderr)
        return 2
    region, problems = session.region_name, []
    topic = check_topic(session.client("sns"), region, problems)
    drift = check_alarms(session.client("cloudwatch"), topic, problems)
    check_rule(session.client("events"), session.client("iam"), region, drift, problems)
    for p in problems:
        print(f"PROBLEM {p}")
    if not problems:
        print(f"ok: topic {TOPIC} (policy, tags, e-mail subscription), alarms {', '.join(ALARMS.values())}, rule {RULE} + target, role {ROLE}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
