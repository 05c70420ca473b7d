"""Fixtures for tests that run the playbooks against the sandbox AWS emulator."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The helpers shared with Molecule's verify steps and bench/ (awsstate, curatedstate, sandboxenv).
sys.path.insert(0, str(ROOT / "scripts" / "sandboxlib"))
sys.path.insert(0, str(Path(__file__).parent))
import awsstate
from sandboxenv import read_env_file

ENV_FILE = ROOT / ".sandbox" / "env"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@pytest.fixture(scope="session")
def sandbox_env():
    if not ENV_FILE.exists():
        pytest.fail("The sandbox is not running: run `make sandbox-up` first (or use `make e2e`).")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(read_env_file(ENV_FILE))
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    # Provisioning waits for the node to answer; Molecule's scenarios may have stopped it.
    subprocess.run(["scripts/sandbox-node.sh", "up"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return env


def empty_account(sandbox_env, monkeypatch):
    """Reset the emulator and point this process's boto3 at it; returns a session on the empty account."""
    awsstate.reset_emulator(sandbox_env["AWS_ENDPOINT_URL"])
    for key, value in sandbox_env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.session.Session()


@pytest.fixture
def aws(sandbox_env, monkeypatch):
    """A boto3 session on a freshly reset emulator (every test starts from an empty account)."""
    return empty_account(sandbox_env, monkeypatch)


@pytest.fixture
def names(aws):
    return awsstate.Names(aws)


class Run:
    def __init__(self, proc, seconds):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.seconds = seconds
        self.recap = {
            m[0]: {"ok": int(m[1]), "changed": int(m[2]), "failed": int(m[4])} for m in RECAP.findall(self.output)
        }

    @property
    def changed(self):
        return sum(h["changed"] for h in self.recap.values())

    def __repr__(self):
        messages = [line for line in self.output.splitlines() if "msg:" in line or "fatal:" in line]
        return f"Run(rc={self.rc}, recap={self.recap}, {self.seconds:.1f}s)\n" + "\n".join(messages[-10:])


def playbook_runner(sandbox_env):
    """Run one of the project's playbooks the way a user would: run('provision.yml', '-e', 'x=y')."""

    def run(name, *args, inventory="inventory/sandbox", env=None, unset=()):
        path = name if name.endswith("site.yml") else f"playbooks/{name}"
        full_env = dict(sandbox_env)
        full_env.update(env or {})
        for key in unset:
            full_env.pop(key, None)
        start = time.monotonic()
        proc = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, path, *args],
            cwd=ROOT,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        return Run(proc, time.monotonic() - start)

    return run


@pytest.fixture
def playbook(sandbox_env):
    return playbook_runner(sandbox_env)


def on_node(command):
    """Run a shell command on the node as root; returns stdout."""
    proc = subprocess.run(
        ["scripts/sandbox-node.sh", "ssh", f"sudo sh -c '{command}'"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.stdout.strip()


def one_line(text):
    """Ansible folds long messages over lines; compare messages with whitespace collapsed."""
    return " ".join(text.split())


def wait_for(predicate, timeout, what):
    """Poll predicate() every second until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {timeout} s")
