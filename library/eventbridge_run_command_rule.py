#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: eventbridge_run_command_rule
short_description: An EventBridge rule whose one target runs an SSM command on tagged instances
description:
  - Creates, converges or deletes an EventBridge rule (event pattern, description, state, tags) and its single
    target, an SSM Run Command (a document such as C(AWS-RunShellScript) with its C(commands)) on the instances
    that carry O(instance_tags), sent with the IAM role O(role_arn).
  - Why not M(amazon.aws.cloudwatchevent_rule) - it cannot give a target C(RunCommandParameters), removes every
    target it was not given (so a second module cannot own the target), has no check mode and no tags.
  - The rule is the module's own - any other target on it is removed. A rule of that name without every tag
    in O(tags) is refused (never adopted, changed or deleted).
  - Supports check mode and diff mode.
options:
  name:
    description: Name of the rule (on the default event bus).
    type: str
    required: true
  state:
    description: C(present) creates or converges; C(absent) deletes the target and the rule.
    type: str
    choices: [present, absent]
    default: present
  event_pattern:
    description: The event pattern (a dict, compared as JSON). Required with O(state=present).
    type: dict
  description:
    description: Description of the rule.
    type: str
    default: ""
  enabled:
    description: Whether the rule is enabled.
    type: bool
    default: true
  role_arn:
    description: IAM role EventBridge assumes to call C(ssm:SendCommand). Required with O(state=present).
    type: str
  document:
    description: Name of the SSM document (an AWS-owned one, such as C(AWS-RunShellScript)).
    type: str
    default: AWS-RunShellScript
  commands:
    description: The document's C(commands) parameter. Required with O(state=present).
    type: list
    elements: str
  instance_tags:
    description:
      - Tags (key and value) an instance must all carry to receive the command (Run Command targets C(tag:<key>)).
      - At most 5. Required with O(state=present).
    type: dict
  target_id:
    description: Id of the target on the rule.
    type: str
    default: run-command
  tags:
    description: Tags of the rule; a rule that exists without all of them is refused.
    type: dict
    default: {}
author:
  - fraud-demo maintainers
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Start the retraining on the node when the drift alarm fires
  eventbridge_run_command_rule:
    name: fraud-demo-fraud-demo-retrain-on-drift
    event_pattern:
      source: [aws.cloudwatch]
      detail-type: [CloudWatch Alarm State Change]
      resources: [arn:aws:cloudwatch:eu-west-1:123456789012:alarm:fraud-demo-fraud-demo-drift-share]
      detail:
        state:
          value: [ALARM]
    role_arn: arn:aws:iam::123456789012:role/fraud-demo-fraud-demo-retrain-events
    commands: [systemctl start --no-block fraud-demo-retrain.service]
    instance_tags:
      Purpose: fraud-demo
      Project: fraud-demo
    tags:
      Purpose: fraud-demo
      Project: fraud-demo

- name: Remove it
  eventbridge_run_command_rule:
    name: fraud-demo-fraud-demo-retrain-on-drift
    tags:
      Purpose: fraud-demo
    state: absent
"""

RETURN = r"""
rule:
  description: The rule as it is now (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  contains:
    arn:
      description: ARN of the rule.
      type: str
      returned: when present
    event_pattern:
      description: The event pattern.
      type: dict
      returned: when present
    state:
      description: C(ENABLED) or C(DISABLED).
      type: str
      returned: when present
    tags:
      description: Tags of the rule.
      type: dict
      returned: when present
target:
  description: The Run Command target as it is now (as it would be, in check mode); empty when absent.
  returned: always
  type: dict
  contains:
    id:
      description: Target id.
      type: str
      returned: when present
    arn:
      description: ARN of the SSM document.
      type: str
      returned: when present
    role_arn:
      description: The role EventBridge assumes.
      type: str
      returned: when present
    commands:
      description: The commands sent.
      type: list
      elements: str
      returned: when present
    instance_tags:
      description: The tags an instance must carry.
      type: dict
      returned: when present
"""

import json

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import ansible_dict_to_boto3_tag_list
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags


class Rule:
    """The rule, its tags and its targets, read once and written only outside check mode."""

    def __init__(self, module, events):
        self.module, self.events, self.name = module, events, module.params["name"]

    def call(self, what, fn, **kwargs):
        try:
            return fn(aws_retry=True, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.module.fail_json_aws(e, msg=f"Could not {what} EventBridge rule {self.name}")

    def write(self, what, fn, **kwargs):
        if not self.module.check_mode:
            return self.call(what, fn, **kwargs)
        return {}

    def read(self):
        """The rule as {arn, event_pattern, description, state, tags, targets}, or {} when it does not exist."""
        try:
            rule = self.events.describe_rule(Name=self.name, aws_retry=True)
        except is_boto3_error_code("ResourceNotFoundException"):
            return {}
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(e, msg=f"Could not describe EventBridge rule {self.name}")
        tags = self.call("read the tags of", self.events.list_tags_for_resource, ResourceARN=rule["Arn"])["Tags"]
        targets = self.call("list the targets of", self.events.list_targets_by_rule, Rule=self.name)["Targets"]
        return dict(
            arn=rule["Arn"],
            event_pattern=json.loads(rule.get("EventPattern") or "{}"),
            description=rule.get("Description", ""),
            state=rule.get("State", ""),
            tags=boto3_tag_list_to_ansible_dict(tags),
            targets=targets,
        )


def target_view(target):
    """A target in the module's terms (the comparison ignores key order and Input's JSON spelling)."""
    if not target:
        return {}
    params = json.loads(target.get("Input") or "{}")
    run = target.get("RunCommandParameters", {}).get("RunCommandTargets", [])
    return dict(
        id=target["Id"],
        arn=target["Arn"],
        role_arn=target.get("RoleArn", ""),
        commands=params.get("commands", []),
        instance_tags={t["Key"][len("tag:") :]: t["Values"][0] for t in run if t["Key"].startswith("tag:")},
    )


def wanted_target(p, arn):
    return dict(
        id=p["target_id"],
        arn=arn,
        role_arn=p["role_arn"],
        commands=list(p["commands"]),
        instance_tags={str(k): str(v) for k, v in p["instance_tags"].items()},
    )


def target_request(t):
    return dict(
        Id=t["id"],
        Arn=t["arn"],
        RoleArn=t["role_arn"],
        Input=json.dumps({"commands": t["commands"]}),
        RunCommandParameters=dict(
            RunCommandTargets=[dict(Key=f"tag:{k}", Values=[v]) for k, v in sorted(t["instance_tags"].items())]
        ),
    )


def refuse_foreign(module, current, tags):
    if current and any(current["tags"].get(k) != v for k, v in tags.items()):
        module.fail_json(
            msg=(
                f"EventBridge rule {module.params['name']} exists without the tags {json.dumps(tags)} "
                f"(it has {json.dumps(current['tags'])}); it is not ours, so it is neither changed nor deleted. "
                "Remove or rename it, or choose another fraud_demo_name."
            )
        )


def ensure_present(module, rule, current, tags, document_arn):
    p = module.params
    state = "ENABLED" if p["enabled"] else "DISABLED"
    changed = False
    after = dict(
        arn=current.get("arn", ""),
        event_pattern=p["event_pattern"],
        description=p["description"],
        state=state,
        tags=dict(current.get("tags", {})),
    )
    if not current or any(current[k] != after[k] for k in ("event_pattern", "description", "state")):
        request = dict(Name=p["name"], EventPattern=json.dumps(p["event_pattern"]), Description=p["description"])
        request["State"] = state
        if not current:
            request["Tags"] = ansible_dict_to_boto3_tag_list(tags)
            after["tags"] = dict(tags)
        after["arn"] = rule.write("create or update", rule.events.put_rule, **request).get("RuleArn", after["arn"])
        changed = True
    if current:
        to_set, to_remove = compare_aws_tags(current["tags"], tags, purge_tags=True)
        if to_remove:
            rule.write("untag", rule.events.untag_resource, ResourceARN=current["arn"], TagKeys=to_remove)
        if to_set:
            rule.write("tag", rule.events.tag_resource, ResourceARN=current["arn"], Tags=ansible_dict_to_boto3_tag_list(to_set))
        changed |= bool(to_set or to_remove)
        after["tags"] = {k: v for k, v in current["tags"].items() if k not in to_remove} | to_set
    want = wanted_target(p, document_arn)
    existing = current.get("targets", [])
    others = [t["Id"] for t in existing if t["Id"] != want["id"]]
    if others:
        rule.write("remove other targets of", rule.events.remove_targets, Rule=p["name"], Ids=others)
        changed = True
    mine = next((t for t in existing if t["Id"] == want["id"]), None)
    if target_view(mine) != want:
        result = rule.write("set the target of", rule.events.put_targets, Rule=p["name"], Targets=[target_request(want)])
        if result.get("FailedEntryCount"):
            module.fail_json(msg=f"EventBridge refused the target of rule {p['name']}: {result['FailedEntries']}")
        changed = True
    return changed, after, want


def ensure_absent(module, rule, current):
    if not current:
        return False
    ids = [t["Id"] for t in current["targets"]]
    if ids:
        rule.write("remove the targets of", rule.events.remove_targets, Rule=module.params["name"], Ids=ids)
    rule.write("delete", rule.events.delete_rule, Name=module.params["name"])
    return True


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            event_pattern=dict(type="dict"),
            description=dict(type="str", default=""),
            enabled=dict(type="bool", default=True),
            role_arn=dict(type="str"),
            document=dict(type="str", default="AWS-RunShellScript"),
            commands=dict(type="list", elements="str"),
            instance_tags=dict(type="dict"),
            target_id=dict(type="str", default="run-command"),
            tags=dict(type="dict", default={}),
        ),
        required_if=[("state", "present", ["event_pattern", "role_arn", "commands", "instance_tags"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "present" and not 1 <= len(p["instance_tags"]) <= 5:
        module.fail_json(msg="instance_tags needs 1 to 5 tags (Run Command targets at most 5 tag keys)")
    tags = {str(k): str(v) for k, v in p["tags"].items()}
    events = module.client("events", retry_decorator=AWSRetry.jittered_backoff(retries=5))
    rule = Rule(module, events)
    current = rule.read()
    refuse_foreign(module, current, tags)
    before = {k: v for k, v in current.items() if k != "targets"}
    mine = next((t for t in current.get("targets", []) if t["Id"] == p["target_id"]), None)
    diff_before = dict(rule=before, target=target_view(mine), other_targets=[t["Id"] for t in current.get("targets", []) if t is not mine])
    if p["state"] == "absent":
        changed = ensure_absent(module, rule, current)
        module.exit_json(changed=changed, rule={}, target={}, diff=dict(before=diff_before, after={}))
    region = module.region
    partition = current.get("arn", "arn:aws").split(":")[1] if current else p["role_arn"].split(":")[1]
    document_arn = f"arn:{partition}:ssm:{region}::document/{p['document']}"
    changed, after, target = ensure_present(module, rule, current, tags, document_arn)
    module.exit_json(
        changed=changed,
        rule=after,
        target=target,
        diff=dict(before=diff_before, after=dict(rule=after, target=target, other_targets=[])),
    )


if __name__ == "__main__":
    main()
