#!/usr/bin/env python3
"""Benchmark of `fraud-demo-ingest`: its parse + validate + Parquet core against a bare `pandas.read_csv`, and
the job end to end from raw S3 objects to curated S3 objects.

1. Core, on one local file (default: full-scale synthetic train_transaction.csv, 590,540 x 394, ~650 MB), in the
   same run: each measurement is a fresh child process (imports excluded from the timing; peak RSS from the
   child's own rusage via wait4), alternating bare read / job core, --repeat times; medians are reported.
   - bare:  ``pandas.read_csv(path)`` (pandas' defaults: C parser, type inference);
   - core:  ``ingest.curate_file(train_transaction)``: stream-parse to the contract's types, pandera validation
            (structure once, row rules per block), valid rows to zstd Parquet, bad rows to the quarantine CSV.
2. End to end, all five full-scale files: upload them to raw/ on an S3 endpoint (a private moto server on a free
   loopback port, or --endpoint-url, e.g. the sandbox's), then time ``fraud-demo-ingest`` (download, validate,
   publish Parquet + manifest + latest), and its unchanged re-run.

    .venv/bin/python bench/bench_ingest.py [--data DIR] [--repeat 3] [--rows 590540] [--skip-core | --skip-e2e]

Needs the jobs package installed in this interpreter (make setup does that: pip install -e files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BARE = """
import json, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(df), "columns": df.shape[1]}))
"""

CORE = """
import json, sys, tempfile, time
from fraud_demo_jobs import ieee_schema as S, ingest
spec = S.BY_FILE[sys.argv[1].rsplit("/", 1)[-1]]
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as out:
    t = time.perf_counter()
    r = ingest.curate_file(spec, sys.argv[1], out, S.KeyState())
    seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": r.rows_in, "valid": r.rows_valid, "quarantined": r.rows_quarantined}))
"""


def child(code: str, *args: str) -> dict:
    """Run a Python child; returns its JSON line plus its peak RSS (bytes) from wait4's rusage."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {out}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss"] = usage.ru_maxrss * 1024
    return res


def gen(rows: int, out: str) -> None:
    cmd = [sys.executable, "-m", "fraud_demo_jobs.synthetic", "--out", out, "--rows", str(rows), "--seed", "42"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def core_bench(path: str, repeat: int, scratch: str) -> dict:
    with open(path, "rb") as f:  # warm the page cache once, for both
        while f.read(64 << 20):
            pass
    bare, core = [], []
    for i in range(repeat):
        order = [("bare", BARE, ()), ("core", CORE, (scratch,))]
        if i % 2:
            order.reverse()
        for name, code, extra in order:
            r = child(code, path, *extra)
            (bare if name == "bare" else core).append(r)
            print(f"  {name}: {r['seconds']:.2f} s, peak RSS {r['peak_rss'] / 1e9:.2f} GB", file=sys.stderr)
    med = {
        "bare_seconds": statistics.median(r["seconds"] for r in bare),
        "core_seconds": statistics.median(r["seconds"] for r in core),
        "bare_peak_rss": statistics.median(r["peak_rss"] for r in bare),
        "core_peak_rss": statistics.median(r["peak_rss"] for r in core),
        "rows": core[0]["rows"],
        "quarantined": core[0]["quarantined"],
        "runs": repeat,
    }
    med["time_ratio"] = med["core_seconds"] / med["bare_seconds"]
    med["memory_ratio"] = med["core_peak_rss"] / med["bare_peak_rss"]
    return med


def e2e_bench(data: str, endpoint: str | None, scratch: str) -> dict:
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's request log
    server = None
    if not endpoint:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for k, v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
            os.environ.setdefault(k, v)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"fraud-demo-bench-{os.getpid()}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        logs = boto3.client("logs", endpoint_url=endpoint)
        try:
            logs.create_log_group(logGroupName="fraud-demo-logs")
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        up = [sys.executable, "-m", "fraud_demo_jobs.upload", "--source", data, "--bucket", bucket]
        up += ["--include", "*.csv", "--progress", "never", "--endpoint-url", endpoint]
        subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
        cmd = [sys.executable, "-m", "fraud_demo_jobs.ingest", "--bucket", bucket, "--endpoint-url", endpoint]
        cmd += ["--work-dir", os.path.join(scratch, "work")]
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
            if res.returncode != 0:
                raise SystemExit(f"ingest failed: {res.stderr[-2000:]}")
            summary = json.loads(res.stdout.strip().splitlines()[-1])
            summary["wall"] = wall
            runs.append(summary)
        first, again = runs
        raw_bytes = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.endswith(".csv"))
        return {
            "endpoint": "private moto server" if server else endpoint,
            "raw_bytes": raw_bytes,
            "rows": first["rows"],
            "first_wall": first["wall"],
            "phases": first["phase_seconds"],
            "curated_bytes": first["bytes_uploaded"],
            "rerun_wall": again["wall"],
            "rerun_action": again["action"],
        }
    finally:
        if server:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="directory with the five CSVs (default: generate them into a temporary one)")
    ap.add_argument("--rows", type=int, default=590540, help="train rows to generate (default: full scale)")
    ap.add_argument("--repeat", type=int, default=3, help="core runs of each kind (default 3)")
    ap.add_argument("--file", default="train_transaction.csv", help="file of the core comparison")
    ap.add_argument("--endpoint-url", help="S3/CloudWatch endpoint for the end-to-end run (default: private moto)")
    ap.add_argument("--skip-e2e", action="store_true", help="only the core comparison")
    ap.add_argument("--skip-core", action="store_true", help="only the end-to-end run")
    args = ap.parse_args(argv)

    scratch = tempfile.mkdtemp(prefix="fraud-demo-bench-ingest-")
    try:
        data = args.data
        if not data:
            data = os.path.join(scratch, "data")
            print(f"generating {args.rows} rows into {data} ...", file=sys.stderr)
            gen(args.rows, data)
        if not args.skip_core:
            path = os.path.join(data, args.file)
            print(f"core vs bare pandas.read_csv on {path} ({os.path.getsize(path) / 1e6:.0f} MB):", file=sys.stderr)
            core = core_bench(path, args.repeat, scratch)
            print()
            print(f"| {args.file}: {core['rows']:,} rows, median of {core['runs']} | seconds | peak RSS |")
            print("|---|---|---|")
            print(f"| bare `pandas.read_csv` | {core['bare_seconds']:.2f} | {core['bare_peak_rss'] / 1e9:.2f} GB |")
            print(
                f"| ingest core (parse + validate + Parquet) | {core['core_seconds']:.2f} "
                f"({core['time_ratio']:.2f}x) | {core['core_peak_rss'] / 1e9:.2f} GB ({core['memory_ratio']:.2f}x) |"
            )
            ok = core["time_ratio"] <= 2.0 and core["memory_ratio"] <= 1.0
            print(f"\ngoal (core <= 2.0x bare time, peak memory <= bare): {'met' if ok else 'NOT met'}")
        if not args.skip_e2e:
            e2e = e2e_bench(data, args.endpoint_url, scratch)
            ph = e2e["phases"]
            print()
            print(
                f"| end to end ({e2e['endpoint']}), {e2e['raw_bytes'] / 1e6:,.0f} MB raw, "
                f"{e2e['rows']['in']:,} rows | seconds |"
            )
            print("|---|---|")
            print(f"| first run (version created) | {e2e['first_wall']:.1f} |")
            print(f"| - download raw objects (pinned VersionIds) | {ph.get('download', 0):.1f} |")
            print(f"| - validate + write Parquet/quarantine (5 files) | {ph.get('validate', 0):.1f} |")
            print(
                f"| - publish {e2e['curated_bytes'] / 1e6:,.0f} MB + manifest + latest | {ph.get('publish', 0):.1f} |"
            )
            print(f"| re-run ({e2e['rerun_action']}) | {e2e['rerun_wall']:.1f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
