"""Run a benchmark child under a memory cap, like ``systemd-run --scope -p MemoryMax=SIZE``, and tell an OOM kill at
the cap from any other failure.

Where systemd is PID 1 the cap is a transient scope (``systemd-run``). Elsewhere (a container without systemd, such
as the reference class) it is a cgroup v1 memory group made under this process's own group: the kernel kills the
child when its memory, page cache that cannot be dropped included, goes over ``memory.limit_in_bytes``. The group
also records the child's own peak (``memory.max_usage_in_bytes``) and whether the OOM killer struck.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass

UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
V1_ROOT = "/sys/fs/cgroup/memory"


def parse_size(text: str) -> int:
    """'7.5G' -> bytes (binary units, as systemd's MemoryMax)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a memory size: {text!r} (e.g. 7.5G)")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def _systemd() -> bool:
    return os.path.isdir("/run/systemd/system") and shutil.which("systemd-run") is not None


@dataclass
class Cap:
    """A memory cap for one child: ``argv(cmd)`` is the command to start, ``preexec`` joins the group (v1)."""

    size: str
    path: str | None = None  # the cgroup v1 directory, when not through systemd

    @classmethod
    def make(cls, size: str) -> Cap:
        limit = parse_size(size)
        if _systemd():
            return cls(size)
        own = next(line.split(":", 2)[2] for line in open("/proc/self/cgroup") if ":memory:" in line)
        path = os.path.join(V1_ROOT + own.rstrip("\n"), f"bench-{uuid.uuid4().hex[:8]}")
        os.mkdir(path)
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))
        return cls(size, path)

    def argv(self, cmd: list[str]) -> list[str]:
        if self.path is None:
            return ["systemd-run", "--scope", "-p", f"MemoryMax={self.size}", "--quiet", *cmd]
        return cmd

    def preexec(self) -> None:
        if self.path is not None:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def report(self) -> dict:
        """The group's peak (bytes, page cache included) and whether the OOM killer struck; then removes it."""
        if self.path is None:
            return {"memory_max": self.size}
        with open(os.path.join(self.path, "memory.max_usage_in_bytes")) as f:
            peak = int(f.read())
        with open(os.path.join(self.path, "memory.oom_control")) as f:
            oom = dict(line.split() for line in f)
        os.rmdir(self.path)
        return {"memory_max": self.size, "cgroup_peak_mib": peak / 2**20, "oom_killed": int(oom.get("oom_kill", 0)) > 0}


def run(cmd: list[str], size: str | None, **popen) -> tuple[subprocess.Popen, Cap | None]:
    """Start ``cmd`` (capped at ``size`` when given); the caller waits and then calls ``cap.report()``."""
    cap = Cap.make(size) if size else None
    if cap is None:
        return subprocess.Popen(cmd, **popen), None
    return subprocess.Popen(cap.argv(cmd), preexec_fn=cap.preexec, **popen), cap
