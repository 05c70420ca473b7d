#!/usr/bin/env python3
"""Benchmark of `fraud-demo-ingest`: its parse + validate + Parquet core against three baselines without
validation, and the job end to end from raw S3 objects to curated S3 objects.

1. Core, on one local file (default: full-scale synthetic train_transaction.csv, 590,540 x 394, ~650 MB), in the
   same run: each measurement is a fresh child process (imports excluded from the timing; peak RSS from the
   child's own rusage via wait4); the four kinds are interleaved, their order rotated each repeat, --repeat
   times; min / median / max are reported, and the core's ratio to each baseline (of the medians, and the
   range of the per-repeat ratios).
   - pandas-c:        ``pandas.read_csv(path)`` (pandas' defaults: C parser, type inference);
   - pandas-pyarrow:  ``pandas.read_csv(path, engine="pyarrow")`` (pyarrow's multi-threaded reader, to pandas);
   - arrow-parquet:   ``pyarrow.csv.read_csv(path)`` then ``pyarrow.parquet.write_table(zstd)``: the bare
                      conversion with no validation, the practical limit of what the core does;
   - core:            ``curate.curate_file(train_transaction)``: stream-parse to the contract's types, pandera
                      validation (structure once, row rules per block), valid rows to zstd Parquet, bad rows to
                      the quarantine CSV.
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

PANDAS_C = """
import json, sys, time
import pandas as pd
t = time.perf_counter()
df = pd.read_csv(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(df), "columns": df.shape[1]}))
"""

PANDAS_PYARROW = """
import json, sys, time
import pandas as pd
import pyarrow  # imported before the clock starts, as pandas' engine needs it
t = time.perf_counter()
df = pd.read_csv(sys.argv[1], engine="pyarrow")
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(df), "columns": df.shape[1]}))
"""

ARROW_PARQUET = """
import json, os, sys, tempfile, time
import pyarrow.csv as pcsv, pyarrow.parquet as pq
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as out:
    t = time.perf_counter()
    table = pcsv.read_csv(sys.argv[1])
    pq.write_table(table, os.path.join(out, "t.parquet"), compression="zstd")
    seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": table.num_rows, "columns": table.num_columns}))
"""

CORE = """
import json, sys, tempfile, time
from fraud_demo_jobs import curate, ieee_schema as S
spec = S.BY_FILE[sys.argv[1].rsplit("/", 1)[-1]]
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as out:
    t = time.perf_counter()
    r = curate.curate_file(spec, sys.argv[1], out, S.KeyState())
    seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "rows": r.rows_in, "valid": r.rows_valid, "quarantined": r.rows_quarantined}))
"""

# name -> (child code, whether it gets the scratch directory, label)
KINDS = {
    "pandas-c": (PANDAS_C, False, "`pandas.read_csv(path)` (C parser)"),
    "pandas-pyarrow": (PANDAS_PYARROW, False, '`pandas.read_csv(path, engine="pyarrow")`'),
    "arrow-parquet": (
        ARROW_PARQUET,
        True,
        "bare `pyarrow.csv.read_csv` -> `parquet.write_table` (zstd), no validation",
    ),
    "core": (CORE, True, "ingest core: parse + validate + Parquet (`curate.curate_file`)"),
}
BASELINES = ["pandas-c", "pandas-pyarrow", "arrow-parquet"]


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


def versions() -> str:
    code = "import sys, pandas, pyarrow, pandera; print(sys.version.split()[0], pandas.__version__, "
    code += "pyarrow.__version__, pandera.__version__)"
    py, pd_v, pa_v, pandera_v = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return f"Python {py}, pandas {pd_v}, pyarrow {pa_v}, pandera {pandera_v}, {os.cpu_count()} CPUs"


def core_bench(path: str, repeat: int, scratch: str) -> dict[str, list[dict]]:
    """Every kind ``repeat`` times, interleaved; the order is rotated each repeat (each kind runs in each
    position, so a slow phase of the machine does not fall on one kind)."""
    with open(path, "rb") as f:  # warm the page cache once, for all
        while f.read(64 << 20):
            pass
    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    names = list(KINDS)
    for i in range(repeat):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            code, scratch_arg, _ = KINDS[name]
            r = child(code, path, *((scratch,) if scratch_arg else ()))
            runs[name].append(r)
            print(
                f"  {i + 1}/{repeat} {name}: {r['seconds']:.2f} s, peak RSS {r['peak_rss'] / 1e9:.2f} GB",
                file=sys.stderr,
            )
    return runs


def _spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"


def core_table(file: str, runs: dict[str, list[dict]]) -> list[str]:
    """The markdown table: time and peak RSS of each kind (median (min..max)), and the core's ratios."""
    core = runs["core"]
    n = len(core)
    lines = [
        f"| {file}: {core[0]['rows']:,} rows, {n} runs each | seconds: median (min..max) "
        "| peak RSS GB: median (min..max) |",
        "|---|---|---|",
    ]
    for name, (_, _, label) in KINDS.items():
        secs = [r["seconds"] for r in runs[name]]
        rss = [r["peak_rss"] / 1e9 for r in runs[name]]
        lines.append(f"| {label} | {_spread(secs, '{:.2f}')} | {_spread(rss, '{:.2f}')} |")
    lines += [
        "",
        "| core vs baseline | time ratio: of medians (per-repeat min..max) | peak RSS ratio: of medians (min..max) |",
    ]
    lines.append("|---|---|---|")
    for base in BASELINES:
        t = [c["seconds"] / b["seconds"] for c, b in zip(core, runs[base], strict=True)]
        m = [c["peak_rss"] / b["peak_rss"] for c, b in zip(core, runs[base], strict=True)]
        tm = statistics.median(r["seconds"] for r in core) / statistics.median(r["seconds"] for r in runs[base])
        mm = statistics.median(r["peak_rss"] for r in core) / statistics.median(r["peak_rss"] for r in runs[base])
        lines.append(
            f"| {base} | **{tm:.2f}x** ({min(t):.2f}..{max(t):.2f}) | **{mm:.2f}x** ({min(m):.2f}..{max(m):.2f}) |"
        )
    lines.append(f"\nrows quarantined by the core: {core[0]['quarantined']}")
    return lines


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
    ap.add_argument("--repeat", type=int, default=3, help="runs of each kind in the core comparison (default 3)")
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
            print(f"{versions()}")
            print(f"core vs baselines on {path} ({os.path.getsize(path) / 1e6:.0f} MB):", file=sys.stderr)
            runs = core_bench(path, args.repeat, scratch)
            print()
            print("\n".join(core_table(args.file, runs)))
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
