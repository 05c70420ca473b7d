"""End-to-end tests of configure.yml on the sandbox's disposable node (`make e2e`).

The node is the real thing (systemd, sshd, apt, pip); these tests converge it once and then probe the
failure paths a user can cause. Kaggle credentials are fake values that must never reach any output.
"""

import os
import secrets

import pytest
from conftest import on_node, one_line

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

KEY = "kgkey-" + secrets.token_hex(12)
USER = "fraud-demo-tester"


@pytest.fixture
def controller_home(tmp_path):
    """An empty controller HOME so that no real ~/.kaggle is ever read."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle")}


def test_no_credentials_with_kaggle_source_stops_before_writing(playbook, controller_home):
    on_node("rm -rf /home/ubuntu/.kaggle")
    run = playbook("configure.yml", "-e", "fraud_demo_dataset_source=kaggle", env=controller_home)
    assert run.rc != 0, run
    assert "No Kaggle API credentials found" in one_line(run.output), run
    assert run.changed == 0, run
    assert on_node("test -e /home/ubuntu/.kaggle && echo present || echo absent") == "absent"


def test_unsupported_os_is_refused(playbook, controller_home):
    only_ubuntu = '{"node_base_supported_os": [{"distribution": "Ubuntu", "version": "22.04"}]}'
    run = playbook("configure.yml", "-e", only_ubuntu, env=controller_home)
    assert run.rc != 0, run
    assert "runs Debian 12" in one_line(run.output) and "supports Ubuntu 22.04" in one_line(run.output), run


def test_unreachable_node_names_inventory_and_connection(playbook, controller_home):
    run = playbook("configure.yml", "-e", "ansible_port=2299", env=controller_home)
    assert run.rc != 0, run
    text = one_line(run.output)
    assert "Cannot reach sandbox-node (inventory" in text and "inventory/sandbox" in text, run
    # The inventory's address: FRAUD_DEMO_NODE_ADDR when the sandbox runs on another loopback address.
    addr = os.environ.get("FRAUD_DEMO_NODE_ADDR") or "127.0.0.2"
    assert f"connection ssh, ubuntu@{addr}:2299" in text and "make sandbox-up" in text, run


def test_configure_converges_without_leaking_the_token(playbook, controller_home):
    env = {**controller_home, "KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY}
    first = playbook("configure.yml", "-v", "-e", "fraud_demo_dataset_source=kaggle", env=env)
    assert first.rc == 0, first
    assert KEY not in first.output

    again = playbook("configure.yml", "-v", "-e", "fraud_demo_dataset_source=kaggle", env=env)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert KEY not in again.output

    check = playbook("configure.yml", "--check", "--diff", "-vvv", "-e", "fraud_demo_dataset_source=kaggle", env=env)
    assert check.rc == 0, check
    assert check.changed == 0, check
    assert KEY not in check.output

    assert on_node("stat -c %a:%U:%G /home/ubuntu/.kaggle/kaggle.json") == "600:ubuntu:ubuntu"
    assert on_node("stat -c %a:%U /home/ubuntu/.kaggle") == "700:ubuntu"
    assert USER in on_node("cat /home/ubuntu/.kaggle/kaggle.json")
