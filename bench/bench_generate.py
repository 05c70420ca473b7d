#!/usr/bin/env python3
"""Benchmark of `fraud-demo-generate` at full scale (or --rows N): wall seconds, peak RSS, file sizes.

Runs the generator as a child process (``python -m fraud_demo_jobs.synthetic``, so the venv running this script
must have the package installed) into a fresh temporary directory (or --out, which is then forced), measures the
child's wall time and peak RSS via ``resource.getrusage(RUSAGE_CHILDREN)``, and prints a markdown table.

    .venv/bin/python bench/bench_generate.py [--rows 590540] [--seed 42] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=590540, help="train rows (default: full scale, 590540)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", help="output directory (default: a temporary directory, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary output directory")
    args = ap.parse_args(argv)

    out = args.out or tempfile.mkdtemp(prefix="fraud-demo-bench-")
    cmd = [sys.executable, "-m", "fraud_demo_jobs.synthetic", "--out", out, "--rows", str(args.rows)]
    cmd += ["--seed", str(args.seed), "--force"]
    try:
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            print(f"generator failed with exit code {res.returncode}", file=sys.stderr)
            return 1
        summary = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    total = sum(f["bytes"] for f in summary["files"])
    print(f"## fraud-demo-generate --rows {args.rows} --seed {args.seed} ({os.cpu_count()} CPUs)\n")
    print("| metric | value |\n|---|---|")
    print(f"| wall seconds | {wall:.1f} |")
    print(f"| generator-reported seconds | {summary['seconds']:.1f} |")
    print(f"| CPU seconds (user+sys) | {usage.ru_utime + usage.ru_stime:.1f} |")
    print(f"| peak RSS | {usage.ru_maxrss / 1024:.0f} MiB |")
    print(f"| total size | {total / 1e6:.1f} MB |")
    print(f"| throughput | {total / 1e6 / wall:.0f} MB/s |")
    print(f"| fraud rate (train) | {summary['fraud_rate']:.4f} |")
    print(f"| oracle AUC (train / last 20 %) | {summary['oracle_auc']:.4f} / {summary['oracle_auc_last20pct']:.4f} |")
    print("\n| file | rows | bytes |\n|---|---:|---:|")
    for f in summary["files"]:
        print(f"| {f['name']} | {f['rows']:,} | {f['bytes']:,} |")
    if args.out or args.keep:
        print(f"\noutput kept in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
