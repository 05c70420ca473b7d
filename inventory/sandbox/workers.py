#!/usr/bin/env python3
"""Sandbox inventory script: the worker nodes scripts/sandbox-node.sh has booted (FRAUD_DEMO_NODES=N).

Group fraud_demo_workers gets sandbox-worker-i for every .sandbox/worker-i/env that `up` wrote (it is removed
when the worker stops), with the address and port from that file. The connection settings they share with
sandbox-node are in hosts.yml (group fraud_demo_cluster).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SANDBOX = Path(__file__).resolve().parents[2] / ".sandbox"
GROUP = "fraud_demo_workers"


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def booted_workers(sandbox: Path) -> dict[str, dict[str, str]]:
    """sandbox-worker-i -> its connection variables, in worker order."""
    found = []
    for env_file in sandbox.glob("worker-*/env"):
        match = re.fullmatch(r"worker-([1-9][0-9]*)", env_file.parent.name)
        if match:
            found.append((int(match.group(1)), read_env(env_file)))
    return {
        f"sandbox-worker-{index}": {
            "ansible_host": env["FRAUD_DEMO_NODE_ADDR"],
            "ansible_port": int(env["FRAUD_DEMO_NODE_PORT"]),
        }
        for index, env in sorted(found)
    }


def inventory(sandbox: Path) -> dict[str, object]:
    hosts = booted_workers(sandbox)
    return {GROUP: {"hosts": list(hosts)}, "_meta": {"hostvars": hosts}}


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--host"]:
        print(json.dumps(booted_workers(SANDBOX).get(argv[2], {}) if len(argv) > 2 else {}))
    else:
        print(json.dumps(inventory(SANDBOX)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
