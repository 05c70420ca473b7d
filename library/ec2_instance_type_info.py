#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: ec2_instance_type_info
short_description: Check that an EC2 instance type exists in a region and describe it
description:
  - Calls C(DescribeInstanceTypes) for one instance type, so a playbook can reject a typo before it creates
    anything, and pick an image for the type's CPU architecture.
options:
  instance_type:
    description: The instance type, such as C(t3.large).
    type: str
    required: true
author:
  - fraud-demo maintainers
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Validate the node's instance type
  ec2_instance_type_info:
    instance_type: t3.large
  register: itype
"""

RETURN = r"""
exists:
  description: Whether the region offers this instance type.
  returned: always
  type: bool
architectures:
  description: Supported CPU architectures, such as C(x86_64) or C(arm64).
  returned: when exists
  type: list
  elements: str
vcpus:
  description: Default number of vCPUs.
  returned: when exists
  type: int
memory_mib:
  description: Memory in MiB.
  returned: when exists
  type: int
availability_zones:
  description: The region's availability zones that offer this instance type, sorted.
  returned: when exists
  type: list
  elements: str
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(instance_type=dict(type="str", required=True)),
        supports_check_mode=True,
    )
    wanted = module.params["instance_type"]
    ec2 = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff(retries=5))
    try:
        found = ec2.describe_instance_types(InstanceTypes=[wanted], aws_retry=True).get("InstanceTypes", [])
    except is_boto3_error_code(["InvalidInstanceType", "InvalidParameterValue"]):
        found = []
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg=f"Could not look up instance type {wanted}")
    if not found:
        module.exit_json(changed=False, exists=False)
    info = found[0]
    try:
        paginator = ec2.get_paginator("describe_instance_type_offerings")
        offers = paginator.paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [wanted]}]
        ).build_full_result()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg=f"Could not list the availability zones that offer {wanted}")
    zones = sorted({o["Location"] for o in offers.get("InstanceTypeOfferings", [])})
    module.exit_json(
        changed=False,
        exists=True,
        architectures=info.get("ProcessorInfo", {}).get("SupportedArchitectures", []),
        vcpus=info.get("VCpuInfo", {}).get("DefaultVCpus"),
        memory_mib=info.get("MemoryInfo", {}).get("SizeInMiB"),
        availability_zones=zones,
    )


if __name__ == "__main__":
    main()
