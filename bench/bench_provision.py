#!/usr/bin/env python3
"""Wall time of provision.yml on the sandbox: a first run on an empty account, then re-runs.

    make sandbox-up && .venv/bin/python bench/bench_provision.py [--reruns 3]

Resets the emulator first (everything in it is lost), prints a markdown table, and tears down afterwards.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "sandboxlib"))
from awsstate import reset_emulator  # noqa: E402
from sandboxenv import read_env_file  # noqa: E402

RECAP = re.compile(r"changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)")


def run(env, playbook, *args):
    start = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventory/sandbox", f"playbooks/{playbook}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - start
    m = RECAP.search(proc.stdout)
    if proc.returncode or not m:
        sys.exit(f"{playbook} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, int(m[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=3)
    args = parser.parse_args()
    env_file = ROOT / ".sandbox/env"
    if not env_file.exists():
        sys.exit("the sandbox is not running: make sandbox-up")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(read_env_file(env_file))
    reset_emulator(env["AWS_ENDPOINT_URL"])

    first, changed_first = run(env, "provision.yml")
    reruns = [run(env, "provision.yml") for _ in range(args.reruns)]
    check = run(env, "provision.yml", "--check", "--diff")
    run(env, "teardown.yml", "-e", "fraud_demo_delete_data=true")

    print("| run | wall time | changed |")
    print("|---|---|---|")
    print(f"| first run (empty account) | {first:.1f} s | {changed_first} |")
    for i, (s, c) in enumerate(reruns, 1):
        print(f"| re-run {i} | {s:.1f} s | {c} |")
    print(f"| re-run median | {statistics.median(s for s, _ in reruns):.1f} s | |")
    print(f"| --check --diff | {check[0]:.1f} s | {check[1]} |")
    return 0 if all(c == 0 for _, c in reruns) and check[1] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
