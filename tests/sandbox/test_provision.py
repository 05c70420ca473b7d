"""End-to-end tests of provision.yml and teardown.yml on the sandbox AWS emulator (`make e2e`)."""

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from awsstate import Names, leftovers, verify
from conftest import ROOT, empty_account, one_line, playbook_runner

pytestmark = pytest.mark.sandbox

FOREIGN = "somebody-elses-bucket"


def make_foreign_bucket(aws):
    """A bucket we did not create: no tags, one object. It must come out of every run untouched."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=FOREIGN)
    s3.put_object(Bucket=FOREIGN, Key="precious.csv", Body=b"id,value\n1,2\n")


def assert_foreign_untouched(aws):
    s3 = aws.client("s3")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=FOREIGN)["Contents"]] == ["precious.csv"]
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_bucket_tagging(Bucket=FOREIGN)
    with pytest.raises(s3.exceptions.ClientError):
        s3.get_bucket_policy(Bucket=FOREIGN)


SSH = ["-e", "fraud_demo_ssh_enabled=true", "-e", "fraud_demo_ssh_key_name=mine"]
BAD_INPUTS = {
    "uppercase bucket name": (
        ["-e", "fraud_demo_bucket_name=Fraud-Demo-Data"],
        {},
        'Bucket name "Fraud-Demo-Data" is not valid',
    ),
    "too short bucket name": (["-e", "fraud_demo_bucket_name=ab"], {}, 'Bucket name "ab" is not valid'),
    "too long bucket name": (["-e", "fraud_demo_bucket_name=" + "a" * 64], {}, "is not valid: use 3-63"),
    "IP-like bucket name": (["-e", "fraud_demo_bucket_name=192.168.10.5"], {}, "no IP-address form"),
    "bucket with dots": (["-e", "fraud_demo_bucket_name=my.data.bucket"], {}, "no dots"),
    "unknown instance type": (
        ["-e", "fraud_demo_instance_type=t3.hugeee"],
        {},
        'Instance type "t3.hugeee" is not offered',
    ),
    "SSH without a CIDR": (SSH, {}, "fraud_demo_ssh_cidr is empty"),
    "SSH open to the world": (
        [*SSH, "-e", "fraud_demo_ssh_cidr=0.0.0.0/0"],
        {},
        "fraud_demo_ssh_allow_any_source=true",
    ),
    "SSH CIDR that is no CIDR": ([*SSH, "-e", "fraud_demo_ssh_cidr=me"], {}, "is not an IPv4 CIDR"),
    "SSH without a key pair": (
        ["-e", "fraud_demo_ssh_enabled=true", "-e", "fraud_demo_ssh_cidr=203.0.113.7/32"],
        {},
        "no key pair is named",
    ),
    "SSH with a key pair that does not exist": (
        [
            "-e",
            "fraud_demo_ssh_enabled=true",
            "-e",
            "fraud_demo_ssh_cidr=203.0.113.7/32",
            "-e",
            "fraud_demo_ssh_key_name=nope",
        ],
        {},
        'EC2 key pair "nope" does not exist',
    ),
    "wrong log retention": (["-e", "fraud_demo_log_retention_days=10"], {}, "is not a CloudWatch retention"),
    "unknown VPC mode": (["-e", "fraud_demo_vpc_mode=shared"], {}, "fraud_demo_vpc_mode must be default or dedicated"),
    "unknown AMI id": (["-e", "fraud_demo_ami_id=ami-00000000"], {}, "Image ami-00000000 does not exist"),
    "region that is no region": (["-e", "fraud_demo_region=Ireland"], {}, "is not a region name"),
    "negative worker count": (
        ["-e", "fraud_demo_worker_count=-1"],
        {},
        "fraud_demo_worker_count must be the number of Dask worker instances, 0 (none) or more (got -1)",
    ),
    "unknown worker instance type": (
        ["-e", "fraud_demo_worker_count=1", "-e", "fraud_demo_worker_instance_type=r6i.hugeee"],
        {},
        'Instance type "r6i.hugeee" of the workers is not offered',
    ),
    "worker type of another architecture": (
        ["-e", "fraud_demo_worker_count=1", "-e", "fraud_demo_worker_instance_type=t4g.large"],
        {},
        "The workers run the node's image (x86_64), but t4g.large is arm64",
    ),
    # The sandbox runs one node (conftest): a worker needs a booted worker node.
    "workers the sandbox has not booted": (
        ["-e", "fraud_demo_worker_count=1"],
        {},
        "fraud_demo_worker_count is 1, but the sandbox has 0 worker nodes: boot them with FRAUD_DEMO_NODES=2 make"
        " sandbox-up",
    ),
}


# Runs the provision playbook must refuse, each with its own message. (args, playbook keywords, message)
REFUSED = {
    **{case: (args, {"env": env}, message) for case, (args, env, message) in BAD_INPUTS.items()},
    "missing region": ([], {"unset": ("AWS_REGION", "AWS_DEFAULT_REGION")}, "No AWS region: set AWS_REGION"),
    "foreign bucket named as ours": (
        ["-e", f"fraud_demo_bucket_name={FOREIGN}"],
        {},
        f"Bucket {FOREIGN} already exists in this account without our tags",
    ),
    "sandbox without the emulator endpoint": (
        [],
        {"unset": ("AWS_ENDPOINT_URL",)},
        "The sandbox target needs AWS_ENDPOINT_URL",
    ),
    "AWS target with the sandbox credentials": (
        [],
        {"inventory": "inventory/aws"},
        "The AWS target is configured for the sandbox",
    ),
}
# The refused runs only read the account, so they share one and run side by side (CPU-bound: 2 by default).
REFUSAL_WORKERS = int(os.environ.get("FRAUD_DEMO_E2E_WORKERS", "2"))


@pytest.fixture(scope="module")
def refused_runs(sandbox_env):
    """Every refused run against one account holding a key pair the user does have and a foreign bucket.

    Returns the runs by case and what the account holds after all of them: anything created by any run shows,
    and the foreign bucket is checked untouched (an error on every case otherwise).
    """
    with pytest.MonkeyPatch.context() as mp:
        aws = empty_account(sandbox_env, mp)
        names = Names(aws)
        aws.client("ec2").create_key_pair(KeyName="mine")
        make_foreign_bucket(aws)
        playbook = playbook_runner(sandbox_env)

        def run(case):
            args, keywords, _ = REFUSED[case]
            return playbook("provision.yml", *args, **keywords)

        with ThreadPoolExecutor(max_workers=REFUSAL_WORKERS) as pool:
            runs = dict(zip(REFUSED, pool.map(run, REFUSED), strict=True))
        buckets = [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]
        assert_foreign_untouched(aws)  # now: later tests reset the emulator
        return runs, leftovers(aws, names), buckets


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_bad_input_stops_before_anything_is_created(case, refused_runs):
    runs, left, buckets = refused_runs
    run = runs[case]
    assert run.rc != 0, run
    assert REFUSED[case][2] in one_line(run.output), run
    assert run.changed == 0, run
    assert left == []
    assert buckets == [FOREIGN]  # the foreign bucket only, untouched (checked by the fixture)


def test_existing_foreign_bucket_refusal_names_the_fix(refused_runs):
    run = refused_runs[0]["foreign bucket named as ours"]
    assert "-e fraud_demo_bucket_name=<new-name>" in one_line(run.output), run


def sandbox_nodes(count):
    """The sandbox's local nodes: the node plus COUNT-1 worker nodes (scripts/sandbox-node.sh)."""
    env = {**os.environ, "FRAUD_DEMO_NODES": str(count)}
    for verb in ("down", "up"):
        subprocess.run(
            ["scripts/sandbox-node.sh", verb], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300
        )


def aws_inventory(sandbox_env):
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-inventory"), "-i", "inventory/aws", "--list"],
        cwd=ROOT,
        env=sandbox_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_provision_converges_reruns_clean_and_tears_down(aws, names, playbook, sandbox_env, capsys):
    """One provisioned account for everything that needs one: a fresh provision per property costs ~20 s each."""
    first = playbook("provision.yml")
    assert first.rc == 0, first
    assert first.changed > 0, first
    assert verify(aws, names, tls_only=False) == []

    # The AWS inventory finds the node and its SSM transfer bucket.
    inv = aws_inventory(sandbox_env)
    hosts = inv["fraud_demo_nodes"]["hosts"]
    assert len(hosts) == 1 and hosts[0].startswith("i-")
    hostvars = inv["_meta"]["hostvars"][hosts[0]]
    assert hostvars["fraud_demo_node_connection"] == "amazon.aws.aws_ssm"
    assert hostvars["ansible_connection"] == "{{ fraud_demo_node_connection }}"
    bucket = hostvars["ansible_aws_ssm_bucket_name"]
    # ansible-inventory marks composed values as unsafe (not to be templated again) in its JSON.
    assert bucket.get("__ansible_unsafe", bucket) == names.transfer_bucket

    again = playbook("provision.yml")
    assert again.rc == 0, again
    assert again.changed == 0, again

    check = playbook("provision.yml", "--check", "--diff")
    assert check.rc == 0, check
    assert check.changed == 0, check

    with capsys.disabled():
        print(f"\nprovision.yml on the sandbox: first run {first.seconds:.1f}s, re-run {again.seconds:.1f}s")

    # The TLS-only bucket policy (mandatory on AWS, off by default in the sandbox: inventory/sandbox/group_vars)
    # is applied on request and removed again. Molecule's provision scenario applies it from an empty account.
    tls = playbook("provision.yml", "-e", "fraud_demo_bucket_tls_only=true")
    assert tls.rc == 0, tls
    assert verify(aws, names, tls_only=True) == []
    back = playbook("provision.yml")
    assert back.rc == 0, back
    assert back.changed == 1, back  # the bucket task (both policies), nothing else
    assert verify(aws, names, tls_only=False) == []

    # A foreign bucket named as the data bucket stops teardown before it deletes anything.
    make_foreign_bucket(aws)
    refused = playbook("teardown.yml", "-e", f"fraud_demo_bucket_name={FOREIGN}", "-e", "fraud_demo_delete_data=true")
    assert refused.rc != 0, refused
    assert f"Bucket {FOREIGN} already exists" in one_line(refused.output), refused
    assert verify(aws, names, tls_only=False) == []
    assert_foreign_untouched(aws)

    # Teardown keeps the data bucket, with every object version, unless confirmed, says so, and is idempotent.
    s3 = aws.client("s3")
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket=names.bucket, Key="raw/ieee-fraud-detection/train.csv", Body=body)
    down = playbook("teardown.yml")
    assert down.rc == 0, down
    assert f"Kept the data bucket s3://{names.bucket}" in one_line(down.output), down
    assert leftovers(aws, names) == [f"bucket {names.bucket}"]
    assert len(s3.list_object_versions(Bucket=names.bucket)["Versions"]) == 2
    assert playbook("teardown.yml").changed == 0

    # Confirmed, it deletes the data bucket with its object versions.
    gone = playbook("teardown.yml", "-e", "fraud_demo_delete_data=true")
    assert gone.rc == 0, gone
    assert leftovers(aws, names) == []
    assert playbook("teardown.yml", "-e", "fraud_demo_delete_data=true").changed == 0


def test_opt_ins_ssh_dedicated_vpc_and_broad_iam(aws, names, playbook, monkeypatch):
    aws.client("ec2").create_key_pair(KeyName="mine")
    opts = [
        "-e", "fraud_demo_ssh_enabled=true", "-e", "fraud_demo_ssh_cidr=203.0.113.7/32",
        "-e", "fraud_demo_ssh_key_name=mine", "-e", "fraud_demo_vpc_mode=dedicated",
        "-e", "fraud_demo_iam_broad_access=true",
    ]  # fmt: skip
    run = playbook("provision.yml", *opts)
    assert run.rc == 0, run
    assert playbook("provision.yml", *opts).changed == 0

    monkeypatch.setenv("FRAUD_DEMO_EXPECT_SSH_CIDR", "203.0.113.7/32")
    problems = verify(aws, names, tls_only=False)
    # Broad access is the only expected deviation from least privilege.
    assert problems == [
        f"role {names.role}: attached {sorted([names.policy, 'AmazonSSMManagedInstanceCore', 'AmazonS3FullAccess', 'AmazonSageMakerFullAccess', 'CloudWatchFullAccess'])}, expected only {names.policy} and AmazonSSMManagedInstanceCore"  # noqa: E501
    ]
    ec2 = aws.client("ec2")
    node = ec2.describe_instances(Filters=[{"Name": "tag:Purpose", "Values": ["fraud-demo"]}])["Reservations"][0]
    node = node["Instances"][0]
    assert node["KeyName"] == "mine"
    vpc = ec2.describe_vpcs(VpcIds=[node["VpcId"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.42.0.0/16" and not vpc.get("IsDefault")

    # Turning the opt-ins off again converges back to least privilege and no inbound rule.
    back = playbook("provision.yml", "-e", "fraud_demo_vpc_mode=dedicated")
    assert back.rc == 0, back
    monkeypatch.delenv("FRAUD_DEMO_EXPECT_SSH_CIDR")
    assert verify(aws, names, tls_only=False) == []

    gone = playbook("teardown.yml", "-e", "fraud_demo_delete_data=true")
    assert gone.rc == 0, gone
    assert leftovers(aws, names) == []


# What the node's security group admits from itself when there are workers: the Dask scheduler (8786), worker and
# nanny (8788-8789), and LightGBM's port (12400 on AWS; the sandbox's 0 means no rule): the plan's defaults.
DASK_PORTS = [(8786, 8786), (8788, 8789)]
LIGHTGBM_PORT = (12400, 12400)


def test_workers_like_the_node_then_none_then_teardown(aws, names, playbook, sandbox_env, capsys):
    try:
        # Two booted worker nodes: the sandbox inventory's fraud_demo_worker_count is 2.
        sandbox_nodes(3)
        first = playbook("provision.yml")
        assert first.rc == 0, first
        assert verify(aws, names, tls_only=False, workers=2, dask_ports=DASK_PORTS) == []
        assert "ok: [sandbox-worker-2]" in first.output, first  # the wait play reached the workers

        # The AWS inventory: the node in fraud_demo_nodes, the workers in fraud_demo_workers, each with its
        # private address as fraud_demo_cluster_address.
        ec2 = aws.client("ec2")
        private = {
            i["InstanceId"]: (i["PrivateIpAddress"], {t["Key"]: t["Value"] for t in i["Tags"]}["Role"])
            for r in ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])[
                "Reservations"
            ]
            for i in r["Instances"]
        }
        inv = aws_inventory(sandbox_env)
        assert [private[h][1] for h in inv["fraud_demo_nodes"]["hosts"]] == ["node"]
        assert sorted(private[h][1] for h in inv["fraud_demo_workers"]["hosts"]) == ["dask-worker", "dask-worker"]
        for host in inv["fraud_demo_nodes"]["hosts"] + inv["fraud_demo_workers"]["hosts"]:
            hostvars = inv["_meta"]["hostvars"][host]
            address = hostvars["fraud_demo_cluster_address"]
            assert address.get("__ansible_unsafe", address) == private[host][0]
            assert hostvars["ansible_connection"] == "{{ fraud_demo_node_connection }}"

        again = playbook("provision.yml")
        assert again.rc == 0 and again.changed == 0, again
        check = playbook("provision.yml", "--check", "--diff")
        assert check.rc == 0 and check.changed == 0, check

        # LightGBM's fixed port (AWS) is one more rule from the group itself.
        lightgbm = playbook("provision.yml", "-e", "fraud_demo_dask_lightgbm_port=12400")
        assert lightgbm.rc == 0 and lightgbm.changed == 1, lightgbm
        assert verify(aws, names, tls_only=False, workers=2, dask_ports=[*DASK_PORTS, LIGHTGBM_PORT]) == []

        # Back to the node alone: no workers, no Dask rule; check mode first changes nothing.
        sandbox_nodes(1)
        assert playbook("provision.yml", "--check").changed > 0
        assert verify(aws, names, tls_only=False, workers=2, dask_ports=[*DASK_PORTS, LIGHTGBM_PORT]) == []
        none = playbook("provision.yml")
        assert none.rc == 0, none
        assert verify(aws, names, tls_only=False) == []

        # Teardown removes the workers with everything else.
        sandbox_nodes(3)
        assert playbook("provision.yml").rc == 0
        assert verify(aws, names, tls_only=False, workers=2, dask_ports=DASK_PORTS) == []
        gone = playbook("teardown.yml", "-e", "fraud_demo_delete_data=true")
        assert gone.rc == 0, gone
        assert leftovers(aws, names) == []
        with capsys.disabled():
            print(f"\nprovision.yml with 2 workers: first run {first.seconds:.1f}s, re-run {again.seconds:.1f}s")
    finally:
        sandbox_nodes(1)
