#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: s3_bucket_claim_info
short_description: Tell whether S3 bucket names are free, ours, or somebody else's
description:
  - Looks bucket names up without changing anything, so a playbook can refuse to adopt, modify or delete
    a bucket it did not create.
  - A bucket is I(ours) when it exists in the caller's account and carries every tag in O(tags).
  - Bucket names are global, so a name can also be taken by another account; that is reported as
    RV(buckets[].exists=true) with RV(buckets[].owned_by_caller=false).
options:
  names:
    description: The bucket names.
    type: list
    elements: str
    required: true
  tags:
    description: Tags (key and value) that mark the bucket as created by us.
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
- name: Look the data bucket up
  s3_bucket_claim_info:
    names: [fraud-demo-data-123456789012-eu-west-1]
    tags:
      Purpose: fraud-demo
  register: claim

- name: Refuse somebody else's bucket
  ansible.builtin.assert:
    that: not item.exists or item.ours
  loop: "{{ claim.buckets }}"
"""

RETURN = r"""
buckets:
  description: One entry per name, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The bucket name.
      returned: always
      type: str
    exists:
      description: Whether a bucket of that name exists anywhere.
      returned: always
      type: bool
    owned_by_caller:
      description: Whether it exists in the caller's account.
      returned: always
      type: bool
    ours:
      description: Whether it exists in the caller's account and carries every requested tag.
      returned: always
      type: bool
    tags:
      description: The bucket's tags, when readable.
      returned: always
      type: dict
    bucket_region:
      description: The region the bucket lives in, when known.
      returned: always
      type: str
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def claim(module, s3, account, name, wanted):
    result = dict(name=name, exists=False, owned_by_caller=False, ours=False, tags={}, bucket_region="")
    try:
        # ExpectedBucketOwner turns "exists in another account" into a 403 instead of a silent success.
        head = s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
    except is_boto3_error_code(["404", "NoSuchBucket", "NotFound"]):
        return result
    except is_boto3_error_code(["403", "AccessDenied", "Forbidden"]):
        result["exists"] = True
        return result
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg=f"Could not look up bucket {name}")
    headers = head.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    result.update(exists=True, owned_by_caller=True)
    result["bucket_region"] = head.get("BucketRegion") or headers.get("x-amz-bucket-region", "")
    try:
        tagset = s3.get_bucket_tagging(Bucket=name, aws_retry=True).get("TagSet", [])
        result["tags"] = {t["Key"]: t["Value"] for t in tagset}
    except is_boto3_error_code(["NoSuchTagSet", "NoSuchTagSetError"]):
        pass
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg=f"Could not read the tags of bucket {name}")
    result["ours"] = all(result["tags"].get(k) == v for k, v in wanted.items())
    return result


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            names=dict(type="list", elements="str", required=True),
            tags=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    wanted = {str(k): str(v) for k, v in module.params["tags"].items()}
    retry = AWSRetry.jittered_backoff(retries=5)
    s3 = module.client("s3", retry_decorator=retry)
    sts = module.client("sts", retry_decorator=retry)
    try:
        account = sts.get_caller_identity(aws_retry=True)["Account"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Could not identify the AWS account (check your credentials)")
    buckets = [claim(module, s3, account, name, wanted) for name in module.params["names"]]
    module.exit_json(changed=False, buckets=buckets)


if __name__ == "__main__":
    main()
