"""The disposable sandbox node (scripts/sandbox-node.sh): up, reach it, stop it, leave nothing behind.

Needs root and systemd-nspawn (scripts/setup.sh apt); skipped otherwise. The first run builds the node image
(debootstrap, a minute or two); later runs restore the cached image. The test stops the node when it ends.
"""

from __future__ import annotations

import os
import shutil
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


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def node(cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell command on the node as the ubuntu user."""
    return run("ssh", cmd, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def nspawn_pids() -> list[int]:
    """systemd-nspawn processes (not zombies) whose command line names our rootfs."""
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
        if state != "Z" and any(str(ROOTFS).encode() in a for a in args):
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
