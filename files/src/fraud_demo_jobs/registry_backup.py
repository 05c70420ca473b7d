"""Back up and restore the MLflow registry's SQLite database (``fraud-demo-registry backup|restore``).

The tracking server keeps runs, registered models, versions and aliases in one SQLite file on the node's disk.
So that the registry survives a replaced node, it is copied to ``s3://<bucket>/registry/mlflow.db``:

backup
    A consistent copy with SQLite's online backup API (safe while the server writes) into a temporary file; its
    SHA-256 is compared with the one stored in the object's metadata (``x-amz-meta-sha256``) and the copy is
    uploaded only when they differ, so an unchanged registry costs one HeadObject and makes no new object version.
    The training job calls ``backup_registry`` after it registers a version or moves an alias; a timer on the node
    runs the command for changes made elsewhere (the UI).
restore
    Only when the local database does not exist (a fresh node, before the server's first start): download the
    backup into a temporary file next to the database, check its SHA-256 and ``PRAGMA integrity_check``, then
    link it into place atomically. An existing database is never overwritten; a damaged backup is refused and
    nothing is left behind.

The last line on stdout is one JSON summary (``changed``, ``action``, ``key``, ``sha256``, ``bytes``,
``version_id``, and ``artifacts_destination``: the S3 location of MLflow's artifacts, so that the role starting
the server does not spell the prefix); ``--check`` only reads and reports what a run would do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
import time

from . import layout
from .aws import AWS_ERRORS, S3Bucket, make_client
from .checksums import file_sha256
from .cli import EXIT_USAGE, env, fail, run_job
from .errors import JobError

REGISTRY_JOB = "registry"
REGISTRY_PROG = "fraud-demo-registry"
REGISTRY_DB_ENV = "FRAUD_DEMO_MLFLOW_DB"
BACKUP_NAME = "mlflow.db"
# User metadata of the backup object: the SHA-256 (hex) of the database file it holds.
SHA256_META = "sha256"
_READ_CHUNK = 1024 * 1024


def registry_backup_key() -> str:
    return layout.registry_key(BACKUP_NAME)


def artifacts_destination(bucket_name: str) -> str:
    """Where the tracking server proxies MLflow's artifacts: s3://<bucket>/models."""
    return f"s3://{bucket_name}/{layout.MODELS.rstrip('/')}"


def snapshot_database(db_path: str, dest: str) -> None:
    """A consistent copy of ``db_path`` into ``dest`` with SQLite's backup API (read-only on the source)."""
    if not os.path.isfile(db_path):
        raise JobError(f"no registry database at {db_path}: nothing to back up (the tracking server creates it)")
    try:
        src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(dest)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as e:
        raise JobError(f"cannot copy the registry database {db_path}: {e}") from e


def _stored_sha256(head: dict | None) -> str | None:
    return ((head or {}).get("Metadata") or {}).get(SHA256_META)


def _version_id(obj: dict | None) -> str | None:
    vid = (obj or {}).get("VersionId")
    return None if vid in (None, "null") else vid


def backup_registry(db_path: str, bucket: S3Bucket, check: bool = False) -> dict:
    """Upload a consistent copy of the registry database when it differs from the stored backup.

    Returns ``{"changed", "action" ("uploaded"|"unchanged"|"would_upload"), "key", "sha256", "bytes",
    "version_id"}`` (``version_id`` of the object now holding this content; None without bucket versioning)."""
    key = registry_backup_key()
    with tempfile.TemporaryDirectory(prefix="fraud-demo-registry-") as tmp:
        copy = os.path.join(tmp, BACKUP_NAME)
        snapshot_database(db_path, copy)
        sha256 = file_sha256(copy).hex()
        size = os.path.getsize(copy)
        head = bucket.head(key)
        out = {"changed": False, "action": "unchanged", "key": key, "sha256": sha256, "bytes": size}
        if _stored_sha256(head) == sha256:
            return {**out, "version_id": _version_id(head)}
        if check:
            return {**out, "changed": True, "action": "would_upload", "version_id": None}
        with open(copy, "rb") as body:
            put = bucket.call(
                f"PutObject {key}",
                bucket.client.put_object,
                Key=key,
                Body=body,
                Metadata={SHA256_META: sha256},
                ContentType="application/vnd.sqlite3",
                ChecksumAlgorithm="SHA256",
            )
    return {**out, "changed": True, "action": "uploaded", "version_id": _version_id(put)}


def _download(bucket: S3Bucket, key: str, version_id: str | None, dest_fd: int) -> None:
    what = f"GetObject {key}"
    extra = {"VersionId": version_id} if version_id else {}
    obj = bucket.call(what, bucket.client.get_object, Key=key, **extra)
    try:
        with os.fdopen(dest_fd, "wb", closefd=False) as f:
            for chunk in obj["Body"].iter_chunks(_READ_CHUNK):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except AWS_ERRORS as e:  # the body streams after the response: a cut connection surfaces here
        raise bucket.error(e, what) from e


def integrity_problem(path: str) -> str | None:
    """Why ``path`` is not a sound SQLite database (``PRAGMA integrity_check``), or None when it is."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as e:
        return str(e)
    return None if rows == ["ok"] else "; ".join(str(r) for r in rows[:5])


def restore_registry(db_path: str, bucket: S3Bucket, check: bool = False) -> dict:
    """Restore the registry database from its backup, only when ``db_path`` does not exist.

    Returns ``{"changed", "action" ("restored"|"present"|"no_backup"|"would_restore"), "key", "sha256", "bytes",
    "version_id"}``. Never overwrites an existing database (the final step is a link, which fails when the
    file appeared meanwhile); a backup that fails its checks raises ``JobError`` and leaves nothing behind."""
    key = registry_backup_key()
    out = {"changed": False, "key": key, "sha256": None, "bytes": None, "version_id": None}
    if os.path.lexists(db_path):
        return {**out, "action": "present"}
    head = bucket.head(key)
    if head is None:
        return {**out, "action": "no_backup"}
    out.update(sha256=_stored_sha256(head), bytes=head.get("ContentLength"), version_id=_version_id(head))
    if check:
        return {**out, "changed": True, "action": "would_restore"}
    source = f"s3://{bucket.name}/{key}" + (f" (version {out['version_id']})" if out["version_id"] else "")
    parent = os.path.dirname(os.path.abspath(db_path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{BACKUP_NAME}.restore-", dir=parent)  # same filesystem: atomic link
    try:
        try:
            _download(bucket, key, out["version_id"], fd)
        finally:
            os.close(fd)
        got = file_sha256(tmp).hex()
        if out["sha256"] and got != out["sha256"]:
            raise JobError(
                f"the registry backup {source} does not match its recorded sha256 ({got} != {out['sha256']}): "
                f"nothing restored; {db_path} is still missing"
            )
        problem = integrity_problem(tmp)
        if problem:
            raise JobError(
                f"the registry backup {source} is not a sound SQLite database ({problem}): nothing restored; "
                f"{db_path} is still missing (remove or replace the backup object, or start with an empty registry "
                f"by running the server once)"
            )
        try:
            os.link(tmp, db_path)
        except FileExistsError:
            return {**out, "action": "present"}
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return {**out, "changed": True, "action": "restored", "sha256": got, "bytes": os.path.getsize(db_path)}


# ---------------------------------------------------------------------------------------------------- CLI


def parse_registry_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        prog=REGISTRY_PROG,
        description=doc.split("\n\n", 1)[0],
        epilog="See python -m pydoc fraud_demo_jobs.registry_backup for what each command checks.",
    )
    parser.add_argument(
        "command",
        choices=["backup", "restore"],
        help="backup: upload the database when it changed; restore: fetch it when the local one is missing",
    )
    parser.add_argument("--bucket", default=env("FRAUD_DEMO_BUCKET"), help="data-lake bucket (env FRAUD_DEMO_BUCKET)")
    parser.add_argument(
        "--db",
        default=env(REGISTRY_DB_ENV),
        help=f"absolute path of the tracking server's SQLite database (env {REGISTRY_DB_ENV})",
    )
    parser.add_argument("--check", action="store_true", help="only read: report what a run would do")
    parser.add_argument("--endpoint-url", help="AWS endpoint (default: boto3's, e.g. from AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="AWS region (default: boto3's, e.g. from AWS_REGION)")
    return parser.parse_args(argv)


def _registry_usage_problem(args: argparse.Namespace) -> str | None:
    if not args.bucket:
        return "--bucket (or FRAUD_DEMO_BUCKET) is required"
    if not args.db or not os.path.isabs(args.db):
        return f"--db (or {REGISTRY_DB_ENV}) must be the absolute path of the registry database (got {args.db!r})"
    return None


def registry_main(argv: list[str] | None = None) -> int:
    args = parse_registry_args(argv)
    t0 = time.monotonic()
    result: dict = {}
    base = {"job": REGISTRY_JOB, "command": args.command, "db": args.db, "bucket": args.bucket}
    if args.bucket:
        base["artifacts_destination"] = artifacts_destination(args.bucket)

    def summary(msg: str | None) -> dict:
        out = {**base, "changed": False, "action": None, **result, "seconds": round(time.monotonic() - t0, 3)}
        if msg is not None:
            out.update(failed=True, msg=msg)
        return out

    problem = _registry_usage_problem(args)
    if problem:
        return fail(REGISTRY_PROG, problem, summary(problem), EXIT_USAGE)

    def body() -> None:
        bucket = S3Bucket(make_client("s3", args.endpoint_url, args.region), args.bucket)
        bucket.check()  # a missing bucket must not read as "no backup yet"
        run = backup_registry if args.command == "backup" else restore_registry
        try:
            result.update(run(args.db, bucket, check=args.check))
        except OSError as e:
            raise JobError(f"local file error: {e}") from e

    return run_job(REGISTRY_PROG, body, summary, stopped="the registry database and its backup are as they were")


if __name__ == "__main__":
    sys.exit(registry_main())
