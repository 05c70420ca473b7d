#!/usr/bin/env python3
"""Read the provisioned fraud-demo resources back through the AWS API and check them.

    python scripts/sandboxlib/awsstate.py verify      # every property provision.yml promises; exit 1 on any problem
    python scripts/sandboxlib/awsstate.py leftovers   # anything of ours that still exists; exit 1 if so

Used by the Molecule scenario (verify, destroy) and by the pytest end-to-end tests. Works against the
sandbox emulator (AWS_ENDPOINT_URL) or a real account.
"""

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import ClientError

PURPOSE = "fraud-demo"
SSM_CORE = "AmazonSSMManagedInstanceCore"


class Names:
    def __init__(self, session, project="fraud-demo", bucket=None, transfer_bucket=None, log_group="fraud-demo-logs"):
        account = session.client("sts").get_caller_identity()["Account"]
        region = session.region_name
        self.project = project
        self.bucket = bucket or f"{project}-data-{account}-{region}"
        self.transfer_bucket = transfer_bucket or f"{project}-ssm-{account}-{region}"
        self.log_group = log_group
        self.role = f"{project}-node"
        self.policy = f"{project}-node-access"
        self.policy_arn = f"arn:aws:iam::{account}:policy/{self.policy}"
        self.security_group = f"{project}-node"
        self.tags = {"Purpose": PURPOSE, "Project": project}


def _tags(pairs):
    return {t["Key"]: t["Value"] for t in pairs or []}


def _ours(tags, names):
    return all(tags.get(k) == v for k, v in names.tags.items())


def reset_emulator(endpoint):
    """Forget every resource in the sandbox emulator (moto's reset API); refuses anything but loopback."""
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme not in ("http", "https") or url.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"refusing to reset {endpoint}: not the local sandbox emulator")
    # Only http(s) to loopback gets here (checked above): the URL is the emulator's.
    request = urllib.request.Request(endpoint + "/moto-api/reset", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310


def bucket_exists(s3, name):
    try:
        s3.head_bucket(Bucket=name)
        return True
    except ClientError:
        return False


def check_bucket(s3, name, names, versioned, problems, tls_only=True):
    p = f"bucket {name}:"
    if not bucket_exists(s3, name):
        problems.append(f"{p} missing")
        return
    status = s3.get_bucket_versioning(Bucket=name).get("Status")
    if versioned and status != "Enabled":
        problems.append(f"{p} versioning is {status}, expected Enabled")
    if not versioned and status == "Enabled":
        problems.append(f"{p} versioning is Enabled, expected off")
    pab = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    for key in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"):
        if pab.get(key) is not True:
            problems.append(f"{p} public access block {key} is {pab.get(key)}")
    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    algos = {r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules}
    if not algos & {"AES256", "aws:kms"}:
        problems.append(f"{p} no default encryption ({algos})")
    ownership = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"][0]["ObjectOwnership"]
    if ownership != "BucketOwnerEnforced":
        problems.append(f"{p} object ownership {ownership}")
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
    except ClientError:
        policy = {"Statement": []}
    deny_tls = [
        st
        for st in policy["Statement"]
        if st["Effect"] == "Deny"
        and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    if not tls_only:
        if policy["Statement"]:
            problems.append(f"{p} unexpected bucket policy {policy}")
    elif not deny_tls:
        problems.append(f"{p} bucket policy does not deny non-TLS requests")
    else:
        resources = deny_tls[0]["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        if {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"} - set(resources):
            problems.append(f"{p} TLS-only statement does not cover the bucket and its objects: {resources}")
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    enabled = [r for r in lifecycle if r["Status"] == "Enabled"]
    if versioned and not any("NoncurrentVersionExpiration" in r for r in enabled):
        problems.append(f"{p} no lifecycle rule expiring noncurrent versions")
    if not versioned and not any(r.get("Expiration", {}).get("Days") == 1 for r in enabled):
        problems.append(f"{p} transfer objects do not expire after a day")
    tags = _tags(s3.get_bucket_tagging(Bucket=name)["TagSet"])
    if not _ours(tags, names) or tags.get("Name") != name:
        problems.append(f"{p} tags {tags}")


def check_iam(iam, names, problems):
    try:
        role = iam.get_role(RoleName=names.role)["Role"]
    except iam.exceptions.NoSuchEntityException:
        problems.append(f"role {names.role}: missing")
        return
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    principals = [st["Principal"].get("Service") for st in trust["Statement"]]
    if principals != ["ec2.amazonaws.com"]:
        problems.append(f"role {names.role}: trusted principals {principals}, expected only ec2.amazonaws.com")
    if not _ours(_tags(role.get("Tags")), names):
        problems.append(f"role {names.role}: tags {role.get('Tags')}")
    attached = sorted(p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=names.role)["AttachedPolicies"])
    if attached != sorted([names.policy, SSM_CORE]):
        problems.append(f"role {names.role}: attached {attached}, expected only {names.policy} and {SSM_CORE}")
    if iam.list_role_policies(RoleName=names.role)["PolicyNames"]:
        problems.append(f"role {names.role}: unexpected inline policies")
    profile = iam.get_instance_profile(InstanceProfileName=names.role)["InstanceProfile"]
    if [r["RoleName"] for r in profile["Roles"]] != [names.role]:
        problems.append(f"instance profile {names.role}: roles {profile['Roles']}")
    pol = iam.get_policy(PolicyArn=names.policy_arn)["Policy"]
    doc = iam.get_policy_version(PolicyArn=names.policy_arn, VersionId=pol["DefaultVersionId"])["PolicyVersion"]
    doc = doc["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    for st in doc["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if any(a.endswith("*") for a in actions):
            problems.append(f"policy {names.policy}: wildcard action in {st['Sid']}")
        for r in resources:
            if r == "*":
                namespace = st.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace")
                if actions != ["cloudwatch:PutMetricData"] or not namespace:
                    problems.append(f"policy {names.policy}: unscoped resource * in {st['Sid']}")
            elif names.bucket not in r and names.log_group not in r:
                problems.append(f"policy {names.policy}: resource {r} is not our bucket or log group")


def check_instance(ec2, label, instance, names, kind, problems):
    """One instance launched as provision.yml promises (the node and every worker alike); KIND: node or worker."""
    if instance["State"]["Name"] != "running":
        problems.append(f"{label}: state {instance['State']['Name']}")
    md = instance.get("MetadataOptions", {})
    if md.get("HttpTokens") != "required" or md.get("HttpEndpoint") != "enabled":
        problems.append(f"{label}: IMDSv2 not enforced {md}")
    if not instance.get("IamInstanceProfile", {}).get("Arn", "").endswith(f"instance-profile/{names.role}"):
        problems.append(f"{label}: instance profile {instance.get('IamInstanceProfile')}")
    tags = _tags(instance.get("Tags"))
    expected = (f"{names.project}-{kind}", {"node": "node", "worker": "dask-worker"}[kind])
    if (tags.get("Name"), tags.get("Role")) != expected:
        problems.append(f"{label}: Name/Role tags {tags}, expected {expected}")
    root = instance["RootDeviceName"]
    vol_ids = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"] if m["DeviceName"] == root]
    if not vol_ids:
        problems.append(f"{label}: no root volume")
    else:
        vol = ec2.describe_volumes(VolumeIds=vol_ids)["Volumes"][0]
        if not vol["Encrypted"] or vol["VolumeType"] != "gp3":
            problems.append(f"{label}: root volume encrypted={vol['Encrypted']} type={vol['VolumeType']}")
    groups = [g["GroupName"] for g in instance["SecurityGroups"]]
    if groups != [names.security_group]:
        problems.append(f"{label}: security groups {groups}")


def check_node(session, names, problems, workers=0, dask_ports=()):
    """The node, WORKERS Dask workers like it, and their security group: inbound only SSH when asked for
    (FRAUD_DEMO_EXPECT_SSH_CIDR) and, with workers, DASK_PORTS ((from, to) pairs) from the group itself."""
    ec2 = session.client("ec2")
    live = ["pending", "running", "stopping", "stopped"]
    filters = [
        {"Name": "tag:Purpose", "Values": [PURPOSE]},
        {"Name": "tag:Project", "Values": [names.project]},
        {"Name": "instance-state-name", "Values": live},
    ]
    instances = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    found = [i for i in instances if _tags(i.get("Tags")).get("Role") == "dask-worker"]
    nodes = [i for i in instances if i not in found]
    if len(nodes) != 1:
        problems.append(f"node: {len(nodes)} instances, expected exactly 1")
        return
    if len(found) != workers:
        problems.append(f"workers: {len(found)} instances, expected {workers}")
    node = nodes[0]
    check_instance(ec2, "node", node, names, "node", problems)
    for worker in found:
        label = f"worker {worker['InstanceId']}"
        check_instance(ec2, label, worker, names, "worker", problems)
    groups = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in node["SecurityGroups"]])["SecurityGroups"]
    ssh_cidr = os.environ.get("FRAUD_DEMO_EXPECT_SSH_CIDR")
    for g in groups:
        ingress = [(p.get("FromPort"), r["CidrIp"]) for p in g["IpPermissions"] for r in p.get("IpRanges", [])]
        expected = [(22, ssh_cidr)] if ssh_cidr else []
        if ingress != expected:
            problems.append(f"security group {g['GroupName']}: inbound {ingress}, expected {expected}")
        from_groups = sorted(
            (p.get("FromPort"), p.get("ToPort"), pair["GroupId"])
            for p in g["IpPermissions"]
            for pair in p.get("UserIdGroupPairs", [])
        )
        expected_groups = sorted((low, high, g["GroupId"]) for low, high in dask_ports) if workers else []
        if from_groups != expected_groups:
            problems.append(
                f"security group {g['GroupName']}: inbound from groups {from_groups}, expected {expected_groups}"
            )


def verify(session, names, tls_only=True, workers=0, dask_ports=()):
    """Problems found with a provisioned lab; tls_only=False for the sandbox's default (no bucket policy).

    WORKERS: the Dask workers expected, with DASK_PORTS ((from, to) port pairs) open from the node's group."""
    problems = []
    s3 = session.client("s3")
    check_bucket(s3, names.bucket, names, versioned=True, problems=problems, tls_only=tls_only)
    check_bucket(s3, names.transfer_bucket, names, versioned=False, problems=problems, tls_only=tls_only)
    groups = session.client("logs").describe_log_groups(logGroupNamePrefix=names.log_group)["logGroups"]
    group = [g for g in groups if g["logGroupName"] == names.log_group]
    if not group:
        problems.append(f"log group {names.log_group}: missing")
    elif not group[0].get("retentionInDays"):
        problems.append(f"log group {names.log_group}: no retention")
    check_iam(session.client("iam"), names, problems)
    check_node(session, names, problems, workers, dask_ports)
    return problems


def leftovers(session, names, include_data_bucket=True):
    """Everything of ours that still exists (terminated instances don't count)."""
    found = []
    s3 = session.client("s3")
    for b in s3.list_buckets().get("Buckets", []):
        try:
            tags = _tags(s3.get_bucket_tagging(Bucket=b["Name"])["TagSet"])
        except ClientError:
            continue
        if _ours(tags, names) and (include_data_bucket or b["Name"] != names.bucket):
            found.append(f"bucket {b['Name']}")
    ec2 = session.client("ec2")
    tag_filters = [{"Name": "tag:Purpose", "Values": [PURPOSE]}, {"Name": "tag:Project", "Values": [names.project]}]
    live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]}
    for r in ec2.describe_instances(Filters=[*tag_filters, live])["Reservations"]:
        found += [f"instance {i['InstanceId']}" for i in r["Instances"]]
    for kind, call, key, id_key in (
        ("security group", ec2.describe_security_groups, "SecurityGroups", "GroupId"),
        ("vpc", ec2.describe_vpcs, "Vpcs", "VpcId"),
        ("subnet", ec2.describe_subnets, "Subnets", "SubnetId"),
        ("internet gateway", ec2.describe_internet_gateways, "InternetGateways", "InternetGatewayId"),
        ("route table", ec2.describe_route_tables, "RouteTables", "RouteTableId"),
    ):
        found += [f"{kind} {item[id_key]}" for item in call(Filters=tag_filters)[key]]
    iam = session.client("iam")
    for name, call in ((names.role, iam.get_role), (names.role, iam.get_instance_profile)):
        try:
            call(**({"RoleName": name} if call == iam.get_role else {"InstanceProfileName": name}))
            found.append(f"iam {call.__name__.removeprefix('get_')} {name}")
        except iam.exceptions.NoSuchEntityException:
            pass
    try:
        iam.get_policy(PolicyArn=names.policy_arn)
        found.append(f"iam policy {names.policy}")
    except iam.exceptions.NoSuchEntityException:
        pass
    groups = session.client("logs").describe_log_groups(logGroupNamePrefix=names.log_group)["logGroups"]
    found += [f"log group {g['logGroupName']}" for g in groups if g["logGroupName"] == names.log_group]
    return found


def report_problems(label, problems):
    """Each problem on a line, then the verdict; the exit status of a check script (shared by the sandbox checks)."""
    for p in problems:
        print(f"{label}: {p}")
    print(f"{label}: {'FAILED' if problems else 'ok'} ({len(problems)} problem(s))")
    return 1 if problems else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["verify", "leftovers"])
    parser.add_argument("--project", default="fraud-demo")
    parser.add_argument("--no-tls-policy", action="store_true", help="expect no bucket policy (sandbox default)")
    args = parser.parse_args(argv)
    session = boto3.session.Session()
    names = Names(session, args.project)
    if args.what == "verify":
        problems = verify(session, names, tls_only=not args.no_tls_policy)
    else:
        problems = leftovers(session, names)
    return report_problems(args.what, problems)


if __name__ == "__main__":
    sys.exit(main())
