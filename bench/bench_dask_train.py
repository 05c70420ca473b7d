#!/usr/bin/env python3
"""Benchmark of the train job's backends on the sandbox: the local backend on the node against the Dask backend on
the node's scheduler and the worker nodes, the same curated version, in the same run (issue 13, "Measure").

Needs a multi-node sandbox with the pipeline converged and the Dask cluster deployed by the playbooks:

    export FRAUD_DEMO_NODES=3   # the node + 2 workers (and the sandbox's own ports/addresses, if any)
    make sandbox-up
    . .sandbox/env && .venv/bin/ansible-playbook -i inventory/sandbox site.yml -e fraud_demo_train_backend=dask

For each ``--scale K`` the bench then

1. lands K times the full-scale synthetic data (``playbooks/dataset.yml`` + ``playbooks/ingest.yml`` with
   ``fraud_demo_synthetic_rows=--rows`` and ``fraud_demo_synthetic_scale=K``) unless ``--skip-data``: a new curated
   version, which both backends then train on (``--version``);
2. takes the job's command line from the train role itself (``roles/train/tasks/argv.yml``, with
   ``fraud_demo_train_backend=local`` and ``=dask``), so the runs are the stage's, with a model name of their own
   (``bench-<backend>-x<K>-<stamp>``: a first version, no champion to re-score, nothing of the pipeline's touched);
3. runs it on the node over SSH, under a small wrapper that reports the wall time and the job process's peak RSS
   (its rusage); before a Dask run it restarts the scheduler and worker services, so that each service process's
   ``VmHWM`` afterwards is that run's peak (read on every node, next to the job's own per-worker figures).

The backends in ``--backends`` (default ``local,dask``) run one after the other per scale. One JSON line per run goes
to ``--json``; a table is printed at the end.

    .venv/bin/python bench/bench_dask_train.py [--scale 1 [2 4]] [--rows 590540] [--backends local,dask]
        [--skip-data] [--max-rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
KEY = os.path.join(ROOT, ".cache", "node", "ssh", "id_ed25519")
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
UNITS = {"scheduler": "fraud-demo-dask-scheduler", "worker": "fraud-demo-dask-worker"}

# Runs on the node as the job user, the job's argv after it: wall time, exit code, the job process's peak RSS (the
# rusage of its children: the job is its only child) and the job's last stdout line (its JSON summary).
WRAPPER = """
import json, resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
lines = p.stdout.strip().splitlines()
print(json.dumps({"rc": p.returncode, "wall_seconds": time.monotonic() - t,
                  "job_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "summary": lines[-1] if lines else None, "stderr_tail": p.stderr[-3000:]}))
"""

# The peak RSS (VmHWM, MiB) of each process of a Dask unit on this host (the unit's main process and its children:
# the nanny and its worker process); nothing when the unit is not there.
PEAKS = r"""
for u in %s; do
  main=$(systemctl show -p MainPID --value "$u" 2>/dev/null || echo 0)
  [ "${main:-0}" -gt 0 ] || continue
  for p in $main $(pgrep -P "$main"); do
    awk -v u="$u" -v p="$p" '/^VmHWM/ {printf "%%s %%s %%.0f\n", u, p, $2 / 1024}' /proc/$p/status 2>/dev/null
  done
done
"""

ARGV_PLAYBOOK = """
- name: Shared preflight on the controller
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Shared defaults and preflight
      ansible.builtin.import_role:
        name: fraud_demo
        tasks_from: preflight

- name: The train job's command line and environment, as the train role runs it
  hosts: fraud_demo_nodes
  gather_facts: false
  vars:
    _fraud_demo_account_id: "{{ hostvars['localhost']['_fraud_demo_account_id'] }}"
  tasks:
    - name: Command line
      ansible.builtin.include_role:
        name: train
        tasks_from: argv
    - name: Write it down
      ansible.builtin.copy:
        content: "{{ {'argv': train_job_argv, 'env': fraud_demo_node_aws_env, 'user': fraud_demo_node_user,
                      'host': ansible_host, 'port': ansible_port | int, 'ssh_user': ansible_user,
                      'workers': groups['fraud_demo_workers'] | default([])
                                 | map('extract', hostvars, 'ansible_host') | list} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      delegate_to: localhost
"""


def sandbox_env() -> dict:
    """The process environment plus .sandbox/env (the emulator's endpoint and dummy credentials)."""
    env = dict(os.environ)
    with open(os.path.join(ROOT, ".sandbox", "env")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.removeprefix("export ").split("=", 1)
                env[k] = v.strip("'\"")
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return env


def playbook(env: dict, path: str, *extra: str) -> float:
    """ansible-playbook on the sandbox inventory; returns its seconds, fails with its output."""
    t = time.monotonic()
    cmd = [os.path.join(BIN, "ansible-playbook"), "-i", "inventory/sandbox", path, *extra]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
    return time.monotonic() - t


def job_line(env: dict, extra: list[str]) -> dict:
    """The train role's argv + environment for these extra vars (the role's own tasks/argv.yml)."""
    with tempfile.TemporaryDirectory() as d:
        book, out = os.path.join(d, "argv.yml"), os.path.join(d, "argv.json")
        with open(book, "w") as f:
            f.write(ARGV_PLAYBOOK)
        playbook(env, book, "-e", f"out={out}", *extra)
        with open(out) as f:
            return json.load(f)


def ssh(line: dict, host: str, command: list[str], stdin: str | None = None) -> str:
    cmd = ["ssh", "-i", KEY, "-p", str(line["port"]), *SSH_OPTS, f"{line['ssh_user']}@{host}", *command]
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=7200)
    if res.returncode != 0:
        raise SystemExit(f"ssh {host} {' '.join(command)[:200]} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def unit_peaks(line: dict) -> dict[str, list[dict]]:
    """host -> [{unit, pid, vmhwm_mib}] for the Dask units on the node and every worker."""
    out = {}
    for host in [line["host"], *line["workers"]]:
        text = ssh(line, host, ["sudo", "sh", "-c", PEAKS % " ".join(UNITS.values())])
        out[host] = [
            {"unit": u, "pid": int(p), "vmhwm_mib": int(m)} for u, p, m in (s.split() for s in text.split("\n") if s)
        ]
    return out


def restart_cluster(line: dict) -> None:
    """Fresh scheduler and worker processes, so each one's VmHWM is the next run's peak."""
    ssh(line, line["host"], ["sudo", "systemctl", "restart", UNITS["scheduler"]])
    for host in line["workers"]:
        ssh(line, host, ["sudo", "systemctl", "restart", UNITS["worker"]])


def run_job(line: dict, argv: list[str]) -> dict:
    python = os.path.join(os.path.dirname(argv[0]), "python")
    envs = [f"{k}={v}" for k, v in line["env"].items()]
    out = ssh(line, line["host"], ["sudo", "-u", line["user"], "env", *envs, python, "-", *argv], stdin=WRAPPER)
    res = json.loads(out.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise SystemExit(f"the train job failed (exit {res['rc']}): {res['summary']}\n{res['stderr_tail']}")
    res["summary"] = json.loads(res["summary"])
    return res


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with --flag=value (replacing the role's own, if any)."""
    return [a for a in argv if not a.startswith(flag + "=")] + [f"{flag}={value}"]


def curated_version(env: dict, line: dict) -> str:
    """What curated/<dataset>/latest names (the version the data step just made)."""
    argv = line["argv"]
    bucket = next(a.split("=", 1)[1] for a in argv if a.startswith("--bucket="))
    dataset = next(a.split("=", 1)[1] for a in argv if a.startswith("--dataset="))
    code = (
        "import sys; from fraud_demo_jobs import aws, layout;"
        "b = aws.S3Bucket(aws.make_client('s3', sys.argv[3], sys.argv[4]), sys.argv[1]);"
        "print(layout.pointer_version(b.get_json(layout.latest_key(sys.argv[2])), sys.argv[2]))"
    )
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
    res = subprocess.run(
        [sys.executable, "-c", code, bucket, dataset, env["AWS_ENDPOINT_URL"], region],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0])
    ap.add_argument("--rows", type=int, default=590540)
    ap.add_argument("--backends", default="local,dask")
    ap.add_argument("--skip-data", action="store_true", help="train on what latest names now")
    ap.add_argument(
        "--max-rounds",
        type=int,
        help="--max-rounds for both backends (the Dask backend always trains that many, then cuts at the best "
        "round; a cap above the local run's best round + --early-stopping-rounds leaves the local model as it is)",
    )
    ap.add_argument("--json", help="append one JSON line per run to this file")
    args = ap.parse_args()
    env = sandbox_env()
    results = []
    stamp = time.strftime("%H%M%S")
    for scale in args.scale:
        k = f"{scale:g}"
        data_vars = ["-e", f"fraud_demo_synthetic_rows={args.rows}", "-e", f"fraud_demo_synthetic_scale={k}"]
        data_seconds = None
        if not args.skip_data:
            data_seconds = playbook(env, "playbooks/dataset.yml", *data_vars) + playbook(
                env, "playbooks/ingest.yml", *data_vars
            )
        for backend in args.backends.split(","):
            line = job_line(env, ["-e", f"fraud_demo_train_backend={backend}"])
            version = curated_version(env, line)
            argv = with_flag(
                with_flag(line["argv"], "--model-name", f"bench-{backend}-x{k}-{stamp}"), "--version", version
            )
            if args.max_rounds:
                argv = with_flag(argv, "--max-rounds", str(args.max_rounds))
            if backend == "dask":
                restart_cluster(line)
            load = os.getloadavg()[0]
            res = run_job(line, argv)
            s = res["summary"]
            row = {
                "backend": backend,
                "scale": scale,
                "rows": args.rows,
                "dataset_version": version,
                "data_seconds": data_seconds,
                "wall_seconds": res["wall_seconds"],
                "job_seconds": s.get("seconds"),
                "phase_seconds": s.get("phase_seconds"),
                "job_peak_rss_mib": res["job_peak_rss_mib"],
                "roc_auc": s["metrics"].get("roc_auc"),
                "holdout_rows": s["metrics"].get("rows"),
                "dask": s.get("dask"),
                "unit_peaks": unit_peaks(line) if backend == "dask" else None,
                "load_before": load,
                "load_after": os.getloadavg()[0],
                "model": f"{s.get('model_name')} v{s.get('model_version')}",
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print()
    print("| scale | backend | wall s | job peak RSS MiB | per-worker peak RSS MiB | holdout ROC-AUC | load |")
    print("|---:|---|---:|---:|---|---:|---|")
    for r in results:
        workers = ", ".join(f"{w['name']} {w['peak_rss_mb']:.0f}" for w in (r["dask"] or {}).get("workers", []))
        print(
            f"| {r['scale']:g} | {r['backend']} | {r['wall_seconds']:.0f} | {r['job_peak_rss_mib']:.0f} | "
            f"{workers or '-'} | {r['roc_auc']:.4f} | {r['load_before']:.1f}→{r['load_after']:.1f} |"
        )
    by = {(r["scale"], r["backend"]): r for r in results}
    for scale in args.scale:
        if (scale, "local") in by and (scale, "dask") in by:
            diff = by[(scale, "dask")]["roc_auc"] - by[(scale, "local")]["roc_auc"]
            print(f"scale {scale:g}: Dask - local holdout AUC {diff:+.4f} (goal: |diff| <= 0.005)")


if __name__ == "__main__":
    main()
