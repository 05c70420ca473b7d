#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: cloudwatch_alarm_tags
short_description: Set the tags of existing CloudWatch alarms
description:
  - M(amazon.aws.cloudwatch_metric_alarm) cannot tag an alarm, and PutMetricAlarm ignores C(Tags) when it updates
    an existing alarm. This module converges the tags of alarms by name with TagResource/UntagResource.
  - An alarm that does not exist fails the task, except in check mode (the alarm task before it would only have
    reported that it creates it); it is then reported as changed.
options:
  names:
    description: Names of the alarms.
    type: list
    elements: str
    required: true
  tags:
    description: Tags every alarm must carry.
    type: dict
    required: true
  purge_tags:
    description: Remove tags not in O(tags).
    type: bool
    default: true
author:
  - fraud-demo maintainers
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Tag the alarms
  cloudwatch_alarm_tags:
    names: [fraud-demo-fraud-demo-drift-share]
    tags:
      Purpose: fraud-demo
      Project: fraud-demo
"""

RETURN = r"""
alarms:
  description: One entry per name, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The alarm name.
      returned: always
      type: str
    arn:
      description: The alarm ARN (empty when it does not exist yet, in check mode).
      returned: always
      type: str
    tags:
      description: The alarm's tags after the change (what they would be, in check mode).
      returned: always
      type: dict
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import ansible_dict_to_boto3_tag_list
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

def alarm_arns(module, cw, names):
    try:
        found = cw.describe_alarms(AlarmNames=names, AlarmTypes=["MetricAlarm", "CompositeAlarm"], aws_retry=True)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not describe the alarms {', '.join(names)}")
    alarms = found.get("MetricAlarms", []) + found.get("CompositeAlarms", [])
    return {a["AlarmName"]: a["AlarmArn"] for a in alarms}


def converge(module, cw, name, arn, wanted, purge):
    """Returns (changed, before, after) for one alarm."""
    if not arn:
        if not module.check_mode:
            module.fail_json(msg=f"CloudWatch alarm {name} does not exist: create it before tagging it")
        return True, {}, wanted
    try:
        before = boto3_tag_list_to_ansible_dict(cw.list_tags_for_resource(ResourceARN=arn, aws_retry=True)["Tags"])
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not read the tags of alarm {name}")
    to_set, to_remove = compare_aws_tags(before, wanted, purge_tags=purge)
    if not to_set and not to_remove:
        return False, before, before
    after = {k: v for k, v in before.items() if k not in to_remove}
    after.update(to_set)
    if not module.check_mode:
        try:
            if to_remove:
                cw.untag_resource(ResourceARN=arn, TagKeys=to_remove, aws_retry=True)
            if to_set:
                cw.tag_resource(ResourceARN=arn, Tags=ansible_dict_to_boto3_tag_list(to_set), aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            module.fail_json_aws(e, msg=f"Could not set the tags of alarm {name}")
    return True, before, after


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            tags=dict(type="dict", required=True),
            purge_tags=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    names = module.params["names"]
    wanted = {str(k): str(v) for k, v in module.params["tags"].items()}
    cw = module.client("cloudwatch", retry_decorator=AWSRetry.jittered_backoff(retries=5))
    arns = alarm_arns(module, cw, names)
    changed, alarms, before, after = False, [], {}, {}
    for name in names:
        one_changed, one_before, one_after = converge(
            module, cw, name, arns.get(name, ""), wanted, module.params["purge_tags"]
        )
        changed |= one_changed
        before[name], after[name] = one_before, one_after
        alarms.append(dict(name=name, arn=arns.get(name, ""), tags=one_after))
    module.exit_json(changed=changed, alarms=alarms, diff=dict(before=before, after=after))


if __name__ == "__main__":
    main()
