"""Upload a directory of dataset files to the data-lake bucket (``fraud-demo-upload``).

Puts every matching file under ``<source>`` to ``s3://<bucket>/<prefix><relative path>`` (the prefix defaults to
``raw/<dataset>/``), skipping files whose content is already there, and prints one JSON summary line last.
How files are sent, checksummed and skipped, and why nothing partial is ever left: see ``transfer``.

Settings come from flags or the environment: FRAUD_DEMO_UPLOAD_SOURCE, FRAUD_DEMO_BUCKET, FRAUD_DEMO_DATASET
(prefix ``raw/<dataset>/``); endpoint, region, CA bundle and credentials come from boto3's own configuration
(AWS_ENDPOINT_URL, AWS_REGION, AWS_CA_BUNDLE, the instance profile, ...) unless --endpoint-url/--region are given.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

from . import layout
from .aws import S3Bucket, make_client
from .cli import EXIT_USAGE, env, fail, run_job
from .errors import JobError, UsageError
from .transfer import CONCURRENCY as DEFAULT_CONCURRENCY
from .transfer import (
    MAX_PART_MB,
    MIB,
    MIN_PART_MB,
    UploadOutcome,
    UploadRequest,
    find_files,
    normalize_prefix,
    upload_files,
)
from .transfer import PART_SIZE as DEFAULT_PART_SIZE

UPLOAD_JOB = "upload"
UPLOAD_PROG = "fraud-demo-upload"


@dataclass
class UploadSettings:
    bucket: str
    request: UploadRequest
    endpoint_url: str | None = None
    region: str | None = None


def run_upload(s: UploadSettings, out: UploadOutcome) -> None:
    """Do the upload; fills ``out`` as it goes (so a failure can still report what was done)."""
    try:
        out.files = find_files(s.request)
    except JobError as e:
        raise UsageError(str(e)) from e  # a problem with --source/--include
    bucket = S3Bucket(make_client("s3", s.endpoint_url, s.region, s.request.concurrency), s.bucket)
    bucket.check(what="")  # fails fast, before reading gigabytes: credentials, endpoint, bucket, permissions
    upload_files(bucket, s.request, out, UPLOAD_PROG)


def upload_summary(s: UploadSettings | None, out: UploadOutcome, seconds: float, msg: str | None = None) -> dict:
    uploaded = out.uploaded
    req = s.request if s else None
    summary = {
        "job": UPLOAD_JOB,
        "changed": bool(uploaded),
        "bucket": s.bucket if s else None,
        "prefix": req.prefix if req else None,
        "files": [lf.report() for lf in out.files if lf.action],
        "files_uploaded": len(uploaded),
        "files_skipped": sum(lf.action == "skipped" for lf in out.files),
        "bytes_sent": sum(lf.size for lf in uploaded),
        "stale_uploads_aborted": out.stale_aborted,
        "part_size_mb": req.part_size // MIB if req else None,
        "check_seconds": round(out.check_seconds, 3),
        "upload_seconds": round(out.upload_seconds, 3),
        "seconds": round(seconds, 3),
    }
    if msg is not None:
        summary["failed"] = True
        summary["msg"] = msg
    return summary


def parse_upload_args(argv: list[str] | None) -> argparse.Namespace:
    dataset = layout.default_dataset()
    parser = argparse.ArgumentParser(
        prog=UPLOAD_PROG,
        description="Upload a directory's files to s3://BUCKET/PREFIX (default raw/<dataset>/) with parallel "
        "multipart transfers, skipping files whose SHA-256 (S3's ChecksumSHA256, full or composite, or the "
        "sha256 metadata of earlier versions) already matches. Never leaves a partial object. "
        "Prints one JSON summary line last.",
    )
    parser.add_argument(
        "--source", default=env("FRAUD_DEMO_UPLOAD_SOURCE"), help="directory to upload (env FRAUD_DEMO_UPLOAD_SOURCE)"
    )
    parser.add_argument("--bucket", default=env("FRAUD_DEMO_BUCKET"), help="target bucket (env FRAUD_DEMO_BUCKET)")
    parser.add_argument(
        "--prefix",
        default=layout.raw_prefix(dataset),
        help=f"key prefix (default {layout.raw_prefix('<dataset>')} = {layout.raw_prefix(dataset)}; dataset from "
        f"env {layout.DATASET_ENV}, default {layout.DEFAULT_DATASET})",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="shell pattern of files to upload, matched on the relative path or the base name; repeatable "
        "(default: every file except dot files)",
    )
    part_mb = DEFAULT_PART_SIZE // MIB
    parser.add_argument(
        "--part-size-mb", type=int, default=part_mb, help=f"multipart threshold and part size in MiB ({part_mb})"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"parallel part/file transfers ({DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress lines on stderr: auto = when stderr is a terminal",
    )
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: boto3's, e.g. from AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="AWS region (default: boto3's, e.g. from AWS_REGION)")
    parser.add_argument(
        "--stale-hours",
        type=float,
        default=1.0,
        help="abort multipart uploads under the prefix initiated more than this many hours ago (1; 0 = never)",
    )
    return parser.parse_args(argv)


def _upload_usage_problem(args: argparse.Namespace) -> str | None:
    if not args.source:
        return "--source DIR (or FRAUD_DEMO_UPLOAD_SOURCE) is required"
    if not args.bucket:
        return "--bucket (or FRAUD_DEMO_BUCKET) is required"
    if not MIN_PART_MB <= args.part_size_mb <= MAX_PART_MB:
        return f"--part-size-mb must be between {MIN_PART_MB} and {MAX_PART_MB} (S3 part limits)"
    if args.concurrency < 1:
        return "--concurrency must be at least 1"
    return None


def upload_main(argv: list[str] | None = None) -> int:
    args = parse_upload_args(argv)
    t0 = time.monotonic()
    out = UploadOutcome()
    problem = _upload_usage_problem(args)
    if problem:
        return fail(UPLOAD_PROG, problem, upload_summary(None, out, time.monotonic() - t0, problem), EXIT_USAGE)
    progress = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    settings = UploadSettings(
        bucket=args.bucket,
        request=UploadRequest(
            source=args.source,
            prefix=normalize_prefix(args.prefix),
            includes=args.include or [],
            part_size=args.part_size_mb * MIB,
            concurrency=args.concurrency,
            progress=progress,
            stale_after=timedelta(hours=args.stale_hours) if args.stale_hours > 0 else None,
        ),
        endpoint_url=args.endpoint_url,
        region=args.region,
    )

    def body() -> None:
        run_upload(settings, out)
        if progress:
            up = out.uploaded
            print(
                f"{UPLOAD_PROG}: {len(up)} uploaded ({sum(lf.size for lf in up) / MIB:.1f} MiB), "
                f"{len(out.files) - len(up)} unchanged, {time.monotonic() - t0:.1f} s",
                file=sys.stderr,
            )

    return run_job(
        UPLOAD_PROG,
        body,
        lambda msg: upload_summary(settings, out, time.monotonic() - t0, msg),
        stopped="in-progress multipart uploads were aborted, nothing partial was left",
    )


if __name__ == "__main__":
    sys.exit(upload_main())
