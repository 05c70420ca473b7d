#!/usr/bin/env python3
"""Benchmark of `fraud-demo-upload` against `aws s3 cp` on a local moto server: wall seconds, bytes sent.

Starts its own ``moto_server`` on a loopback port (default 5077; refuses a port that is already in use), creates a
versioned bucket, takes ``--file`` or generates a full-scale ``train_transaction.csv`` with ``fraud-demo-generate``
(~20 s, ~650 MB kept, the other generated files are deleted at once), reads it once so that every contender starts
from the page cache, then measures in the same run, per repetition:

1. ``aws s3 cp FILE s3://BUCKET/cmp/...`` (the AWS CLI's defaults: 8 MB parts, 10 concurrent requests);
2. ``fraud-demo-upload`` of the same file to ``raw/ieee-fraud-detection/`` (8 MiB parts, 10 threads);
3. an unchanged re-run of ``fraud-demo-upload`` (goal: <= 2 s, 0 bytes sent).

The order of 1 and 2 alternates between repetitions, and every object written is deleted (all versions) after its
step, so each transfer meets the same server state (the first upload into a fresh moto server is the fastest).
Prints a markdown table; stops the moto server and removes the temporary files at the end (unless --keep).

The AWS CLI is taken from ``python -m awscli`` when this Python can import it, else ``aws`` on PATH, else --aws-cli;
it is not a project dependency. To get one: ``python3 -m venv /tmp/awscli && /tmp/awscli/bin/pip install awscli``
and pass ``--aws-cli /tmp/awscli/bin/aws``.

    .venv/bin/python bench/bench_upload.py [--file PATH] [--rows 590540] [--port 5077] [--repeat 1] [--keep]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from fraud_demo_jobs import layout  # the jobs package, installed in .venv by make setup

BUCKET = "fraud-demo-bench"
FAKE_KEY = "bench"  # moto accepts any credentials
INSTALL_AWS = "python3 -m venv /tmp/awscli && /tmp/awscli/bin/pip install awscli"
PREFIX = layout.raw_prefix(layout.DEFAULT_DATASET)
MIB = 1024 * 1024


def _bin(name: str) -> str | None:
    return shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)


def find_aws_cli(explicit: str | None) -> list[str] | None:
    if explicit:
        return [explicit]
    if importlib.util.find_spec("awscli") is not None:
        return [sys.executable, "-m", "awscli"]
    path = shutil.which("aws")
    if path and "/shims/" in path and shutil.which("pyenv"):  # skip the pyenv shim's own start-up cost
        res = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True, check=False)
        if res.returncode == 0 and res.stdout.strip():
            path = res.stdout.strip()
    return [path] if path else None


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_moto(port: int, log_path: str) -> subprocess.Popen:
    exe = _bin("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 30
    while not port_in_use(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_moto(proc)
            raise SystemExit(f"moto_server did not start on 127.0.0.1:{port}; see {log_path}")
        time.sleep(0.1)
    return proc


def stop_moto(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session/process group only
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-2000:] + res.stderr[-4000:])
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}")
    return wall, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="file to upload (default: generate a full-scale train_transaction.csv)")
    ap.add_argument("--rows", type=int, default=590540, help="train rows when generating (default 590540)")
    ap.add_argument("--port", type=int, default=5077, help="loopback port for our moto_server (default 5077)")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions of the three measurements (default 1)")
    ap.add_argument("--aws-cli", help="path of the aws executable (default: python -m awscli, or aws on PATH)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (generated file, moto log)")
    args = ap.parse_args(argv)

    upload_cmd = _bin("fraud-demo-upload")
    if not upload_cmd:
        raise SystemExit("fraud-demo-upload is not installed (pip install -e files)")
    aws = find_aws_cli(args.aws_cli)
    if port_in_use(args.port):
        raise SystemExit(f"port {args.port} is in use; pick another with --port")

    tmp = tempfile.mkdtemp(prefix="fraud-demo-bench-upload-")
    endpoint = f"http://127.0.0.1:{args.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FRAUD_DEMO_"))}
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_KEY,
        AWS_SECRET_ACCESS_KEY=FAKE_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,  # no personal s3 settings (max_concurrent_requests, ...) skew the CLI
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_ENDPOINT_URL=endpoint,
    )
    moto = None
    try:
        if args.file:
            path = os.path.abspath(args.file)
        else:
            gen = os.path.join(tmp, "gen")
            print(f"generating train_transaction.csv ({args.rows} rows) ...", file=sys.stderr, flush=True)
            wall, _ = timed(
                [_bin("fraud-demo-generate") or "fraud-demo-generate", "--out", gen, "--rows", str(args.rows)], env
            )
            print(f"generated in {wall:.1f} s", file=sys.stderr)
            for name in os.listdir(gen):
                if name != "train_transaction.csv":
                    p = os.path.join(gen, name)
                    os.remove(p) if os.path.isfile(p) else shutil.rmtree(p)
            path = os.path.join(gen, "train_transaction.csv")
        size = os.path.getsize(path)
        source, name = os.path.dirname(path), os.path.basename(path)

        t0 = time.perf_counter()
        with open(path, "rb") as f:
            while f.read(16 * MIB):
                pass
        read_s = time.perf_counter() - t0

        moto = start_moto(args.port, os.path.join(tmp, "moto.log"))
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=FAKE_KEY,
            aws_secret_access_key=FAKE_KEY,
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        aws_version = ""
        if aws:
            aws_version = timed([*aws, "--version"], env)[1].stdout.strip().split(" ")[0]

        def purge(key: str) -> None:  # every transfer should meet the same (empty) server state
            for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", []):
                s3.delete_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])

        key = PREFIX + name
        rows = []
        for rep in range(args.repeat):
            row: dict = {}

            def cp(row=row):
                if aws:
                    row["cp"] = timed([*aws, "s3", "cp", path, f"s3://{BUCKET}/cmp/{name}", "--no-progress"], env)[0]
                    assert s3.head_object(Bucket=BUCKET, Key=f"cmp/{name}")["ContentLength"] == size
                    purge(f"cmp/{name}")

            def job(row=row):
                cmd = [upload_cmd, "--source", source, "--include", name, "--bucket", BUCKET, "--prefix", PREFIX]
                wall, res = timed([*cmd, "--progress", "never"], env)
                row["up"], row["up_summary"] = wall, json.loads(res.stdout.strip().splitlines()[-1])
                wall, res = timed([*cmd, "--progress", "never"], env)  # unchanged re-run
                row["rerun"], row["rerun_summary"] = wall, json.loads(res.stdout.strip().splitlines()[-1])
                head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
                assert head["ContentLength"] == size
                assert head["ChecksumSHA256"].split("-")[0] == row["up_summary"]["files"][0]["checksum_sha256"]
                assert row["rerun_summary"]["files"][0]["action"] == "skipped"
                purge(key)

            for step in (cp, job) if rep % 2 == 0 else (job, cp):
                step()
            rows.append(row)
    finally:
        if moto is not None:
            stop_moto(moto)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    mb = size / MIB
    cpus = os.cpu_count()
    print(f"## fraud-demo-upload vs aws s3 cp: {name}, {size / 1e6:.0f} MB, moto_server on loopback ({cpus} CPUs)\n")
    cli = aws_version or f"not found (install: {INSTALL_AWS})"
    print(f"AWS CLI: {cli}; reading the file from the page cache: {read_s:.2f} s\n")
    print(
        "| run | aws s3 cp s | fraud-demo-upload s (check + upload) | ratio upload/cp | re-run s | re-run bytes sent |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for i, r in enumerate(rows):
        us, rs = r["up_summary"], r["rerun_summary"]
        cp = f"{r['cp']:.2f} ({mb / r['cp']:.0f} MiB/s)" if "cp" in r else "n/a"
        ratio = f"{r['up'] / r['cp']:.2f}" if "cp" in r else "n/a"
        print(
            f"| {i + 1} | {cp} | {r['up']:.2f} ({mb / r['up']:.0f} MiB/s; {us['check_seconds']:.2f} + "
            f"{us['upload_seconds']:.2f}) | {ratio} | {r['rerun']:.2f} | {rs['bytes_sent']} |"
        )
    ups, reruns = [r["up"] for r in rows], [r["rerun"] for r in rows]
    ratios = [r["up"] / r["cp"] for r in rows if "cp" in r]
    print()
    if ratios:
        m = statistics.median(ratios)
        print(
            f"- ratio fraud-demo-upload / aws s3 cp (median): {m:.2f} (goal <= 1.0: {'met' if m <= 1.0 else 'NOT met'})"
        )
    m = statistics.median(reruns)
    sent = max(r["rerun_summary"]["bytes_sent"] for r in rows)
    print(
        f"- unchanged re-run (median): {m:.2f} s (goal <= 2 s: {'met' if m <= 2 else 'NOT met'}), "
        f"bytes sent {sent} (goal 0: {'met' if sent == 0 else 'NOT met'})"
    )
    print(f"- fraud-demo-upload median {statistics.median(ups):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
