"""The disposable sandbox node (scripts/sandbox-node.sh): up, reach it, stop it, leave nothing behind.

Needs root and systemd-nspawn (scripts/setup.sh apt); skipped otherwise. The first run builds the node image
(debootstrap, a minute or two); later runs restore the cached image. The test stops the node when it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sandbox-node.sh"
STATE = REPO / ".sandbox" / "node"
ROOTFS = STATE / "rootfs"
CACHE = REPO / ".cache" / "node"

pytestmark = [
    pytest.mark.sandbox_node,
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="the sandbox node needs root (debootstrap, systemd-nspawn)",
    ),
    pytest.mark.skipif(
        shutil.which("systemd-nspawn") is None,
        reason="systemd-nspawn not installed; run scripts/setup.sh apt",
    ),
]


def run(*args: str, timeout: float = 120, nodes: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("FRAUD_DEMO_NODES", None)
    if nodes is not None:
        env["FRAUD_DEMO_NODES"] = str(nodes)
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def node(cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command on the node as the ubuntu user."""
    return run("ssh", cmd, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def nspawn_pids(rootfs: Path = ROOTFS) -> list[int]:
    """systemd-nspawn processes (not zombies) whose command line names the rootfs."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "systemd-nspawn":
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if state != "Z" and any(str(rootfs).encode() in a for a in args):
            pids.append(int(proc.name))
    return pids


def pids_in_namespace(ns: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "ns" / "pid") == ns:
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


@pytest.fixture(scope="module")
def node_up():
    # First up may build the image from nothing (debootstrap): allow for a slow mirror.
    result = ok(run("up", timeout=900))
    yield result
    run("down", timeout=120)


def test_node_lifecycle(node_up):
    # Reachable as ubuntu with the generated key, through the helper and the files `up` writes.
    assert node("id -un").stdout.strip() == "ubuntu"
    assert node("id -u").stdout.strip() == "1000"
    env = dict(line.split("=", 1) for line in (STATE / "env").read_text().splitlines() if "=" in line)
    assert env["FRAUD_DEMO_NODE_ADDR"] == os.environ.get("FRAUD_DEMO_NODE_ADDR", "127.0.0.2")
    assert env["FRAUD_DEMO_NODE_PORT"] == os.environ.get("FRAUD_DEMO_NODE_PORT", "2222")
    assert Path(env["FRAUD_DEMO_NODE_KEY"]).is_file()
    direct = subprocess.run(
        ["ssh", "-F", str(STATE / "ssh_config"), "fraud-demo-node", "hostname"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert ok(direct).stdout.strip() == "fraud-demo-node"

    # Passwordless sudo, Python for Ansible, systemd as PID 1 and a booted system.
    ok(node("sudo -n true"))
    assert ok(node("python3 --version")).stdout.startswith("Python 3.")
    assert ok(node("ps -p 1 -o comm=")).stdout.strip() == "systemd"
    state = node("systemctl is-system-running --wait", timeout=90).stdout.strip()
    assert state in {"running", "degraded"}, node("systemctl --failed --no-legend").stdout

    # sshd: keys only, no root, listening on the one address it was given.
    sshd = ok(node("sudo -n sshd -T")).stdout.lower().splitlines()
    assert "passwordauthentication no" in sshd
    assert "permitrootlogin no" in sshd
    assert [line for line in sshd if line.startswith("listenaddress")] == [
        f"listenaddress {env['FRAUD_DEMO_NODE_ADDR']}:{env['FRAUD_DEMO_NODE_PORT']}"
    ]

    # A second `up` is a fast no-op on the same node.
    pids_before = nspawn_pids()
    assert len(pids_before) == 1
    started = time.monotonic()
    again = ok(run("up"))
    assert time.monotonic() - started < 10
    assert "node already running" in again.stdout
    assert nspawn_pids() == pids_before
    assert ok(run("status")).stdout.startswith("running")

    # down stops every process of the node, unmounts and removes its tree; the image and key stay.
    init_pid = int((STATE / "init").read_text().split()[0])  # the node's PID 1, as seen from the host
    namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
    assert namespace != os.readlink("/proc/self/ns/pid")
    assert len(pids_in_namespace(namespace)) > 1
    ok(run("down"))
    assert nspawn_pids() == []
    assert pids_in_namespace(namespace) == []
    assert mounts_under(ROOTFS) == []
    assert not ROOTFS.exists()
    assert not (STATE / "pid").exists()
    assert list(CACHE.glob("image-*.tar.zst")), "down must keep the cached image"
    assert (CACHE / "ssh" / "id_ed25519").is_file(), "down must keep the SSH key"

    status = run("status")
    assert status.returncode == 3 and status.stdout.strip() == "stopped"
    # And again, with nothing running.
    ok(run("down"))
    assert run("ssh", "true").returncode != 0


NODE_ADDR = os.environ.get("FRAUD_DEMO_NODE_ADDR", "127.0.0.2")
NODE_PORT = os.environ.get("FRAUD_DEMO_NODE_PORT", "2222")
# Worker i of the node at 127.0.0.X listens on 127.0.X.i (the plan's addressing, written out here).
WORKER_1_ADDR = f"127.0.{NODE_ADDR.rsplit('.', 1)[1]}.1"
WORKER_1 = REPO / ".sandbox" / "worker-1"


def ssh_hostname(address: str) -> str:
    """The hostname of whatever answers SSH on ADDRESS:the node port, with the sandbox key."""
    result = subprocess.run(
        [
            "ssh",
            "-i",
            str(CACHE / "ssh" / "id_ed25519"),
            "-p",
            NODE_PORT,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            f"ubuntu@{address}",
            "hostname",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return ok(result).stdout.strip()


def test_two_nodes():
    try:
        ok(run("up", nodes=2, timeout=900))
        # Each on its own address, same port and key, each with its own name.
        assert ssh_hostname(NODE_ADDR) == "fraud-demo-node"
        assert ssh_hostname(WORKER_1_ADDR) == "fraud-demo-worker-1"
        assert ok(run("ssh", "--worker", "1", "hostname")).stdout.strip() == "fraud-demo-worker-1"
        assert len(nspawn_pids()) == 1 and len(nspawn_pids(WORKER_1 / "rootfs")) == 1
        status = ok(run("status")).stdout.splitlines()
        assert status[0].startswith("running") and status[1].startswith("worker-1: running (pid ")
        assert f"ubuntu@{WORKER_1_ADDR} -p {NODE_PORT}" in status[1]

        # The sandbox inventory finds the worker, reached like the node.
        listing = subprocess.run(
            [str(REPO / ".venv" / "bin" / "ansible-inventory"), "-i", "inventory/sandbox", "--list"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        inventory = json.loads(ok(listing).stdout)
        assert inventory["fraud_demo_workers"]["hosts"] == ["sandbox-worker-1"]
        worker = inventory["_meta"]["hostvars"]["sandbox-worker-1"]
        assert (worker["ansible_host"], str(worker["ansible_port"])) == (WORKER_1_ADDR, NODE_PORT)
        assert worker["ansible_user"] == "ubuntu" and worker["ansible_become"] is True

        # Without FRAUD_DEMO_NODES, down stops the worker too.
        ok(run("down"))
        assert nspawn_pids() == [] and nspawn_pids(WORKER_1 / "rootfs") == []
        assert not ROOTFS.exists() and not (WORKER_1 / "rootfs").exists()
        assert not (WORKER_1 / "env").exists()
        assert run("status").stdout.strip() == "stopped"
    finally:
        run("down", timeout=120)


def test_worker_address_taken_boots_nothing():
    # Something already on worker 1's address: up refuses before booting anything, naming the worker.
    with socket.socket() as taken:
        taken.bind((WORKER_1_ADDR, int(NODE_PORT)))
        taken.listen()
        try:
            refused = run("up", nodes=2, timeout=900)
        finally:
            run("down", timeout=120)
    assert refused.returncode == 1
    assert f"something else already listens on {WORKER_1_ADDR}:{NODE_PORT} (worker-1)" in refused.stderr
    assert "booting" not in refused.stderr
