"""Moving files between a local directory and the bucket, for every job: parallel multipart uploads that skip
files whose content is already there, and parallel ranged downloads of pinned object versions.

Transfer
    The caller's S3 client (``max_pool_connections >= --concurrency``) and one s3transfer ``TransferManager``
    (``multipart_threshold = multipart_chunksize = --part-size-mb``, ``max_concurrency = --concurrency``); all
    files are submitted at once, so small files go up while a big one's parts do.

Checksums and skipping (by content, never by time)
    HeadObject (``ChecksumMode=ENABLED``) first. A file whose object is missing or has another size is uploaded
    right away, without reading it beforehand: uploads use ``ChecksumAlgorithm=SHA256`` and botocore computes each
    PutObject body's / UploadPart part's SHA-256 as it sends it (a header over HTTP, an aws-chunked trailer over
    HTTPS), which S3 verifies against the bytes received; S3 then stores the object's ``ChecksumSHA256``: the
    base64 SHA-256 of the file for a single PutObject, the *composite*
    ``base64(sha256(sha256(part1) || sha256(part2) || ...))-<nparts>`` for a multipart upload. The composite S3
    returns on completion is checked against the one of the part checksums S3 acknowledged.
    A file whose object has the same size is hashed the way the object was: for a multipart object the part count
    comes from the ``-<nparts>`` suffix of its checksum or ETag (moto 5.2.5 returns the composite without the suffix,
    but the ETag has it), the part size from ``HeadObject(PartNumber=1)``'s ContentLength, and the local composite
    is computed with the parts hashed in parallel (``os.preadv`` into reused 8 MiB buffers; hashlib releases the
    GIL); a single-part object's checksum is compared with the file's plain SHA-256. The file is skipped when they
    are equal. Objects without an S3 checksum but with the ``x-amz-meta-sha256`` metadata that earlier versions of
    this job wrote are compared by the file's plain SHA-256.
    SigV4 payload hashing is switched off (``payload_signing_enabled`` False): every body carries its signed,
    server-verified checksum header, so a second hash of it adds no protection (botocore does the same by itself
    over HTTPS when a checksum is present).
    (CRC64NVME full-object checksums would be part-size independent, but botocore needs the awscrt extension for
    them and the node has boto3 only. moto 5.2.5 stores and returns the checksums but does not verify them.)

No partial objects
    A multipart upload becomes visible only on CompleteMultipartUpload; s3transfer aborts it when a part fails,
    and Ctrl-C or SIGTERM (turned into an exception by the job's CLI) cancel the transfers, which aborts them
    too. A failed single PutObject never creates an object. At start, multipart uploads under the prefix that
    were initiated more than ``stale_after`` ago (left by a killed run; upload's --stale-hours) are aborted.

Downloads
    Ranged GETs of ``DOWNLOAD_PART_SIZE`` (64 MiB), ``CONCURRENCY`` at a time, of the object versions a job has
    pinned (VersionId); s3transfer writes to a temporary name and renames it when complete.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fnmatch
import math
import mimetypes
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from .aws import AWS_ERRORS, S3Bucket, error_code
from .checksums import MIB, b64, composite_checksum, composite_of, file_sha256, remote_parts, strip_parts
from .errors import JobError
from .telemetry import warn

PART_SIZE = 8 * MIB  # multipart threshold and part size of uploads (fraud-demo-upload --part-size-mb)
MIN_PART_MB = 5  # S3's minimum part size (all parts but the last)
MAX_PART_MB = 5 * 1024
CONCURRENCY = 10  # parallel part/file transfers of a job
# Downloads: ranged GETs of 64 MiB, 10 at a time (a 650 MB file is still fetched over ~10 connections). 8 MiB
# ranges measured 6x slower against moto, which copies the whole object for every ranged GET.
DOWNLOAD_PART_SIZE = 64 * MIB
CHECK_THREADS = 4  # files checked (HEAD + hash) at once before uploading
PROGRESS_SECONDS = 5.0
META_KEY = "sha256"


@dataclass
class LocalFile:
    name: str  # path relative to the source directory, with "/" separators
    path: str
    key: str
    size: int
    mtime_ns: int
    part_size: int = 0  # 0: single PutObject
    sha256: str = ""  # hex of the whole file, when it was computed (skip check, or a single PutObject)
    s3_checksum: str = ""  # the local ChecksumSHA256 (without the "-<nparts>" suffix), when computed
    part_checksums: dict[int, str] = field(default_factory=dict)  # part number -> base64, as S3 acknowledged
    action: str = ""
    version_id: str | None = None
    remote_checksum: str | None = None

    @property
    def multipart(self) -> bool:
        return self.part_size > 0

    def report(self) -> dict:
        return {
            "name": self.name,
            "key": self.key,
            "bytes": self.size,
            "sha256": self.sha256 or None,
            "action": self.action,
            "version_id": self.version_id,
            "checksum_sha256": self.remote_checksum or self.s3_checksum,
        }


# ---------------------------------------------------------------------------------------------- local side


def normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip().lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def discover(source: str, includes: list[str] | None, prefix: str) -> list[LocalFile]:
    """Regular files under ``source`` (recursively; dot files and dot directories left out) matching any of
    ``includes`` (shell patterns, tried on the relative path and on the base name), sorted by name."""
    if not os.path.exists(source):
        raise JobError(f"source directory {source} does not exist")
    if not os.path.isdir(source):
        raise JobError(f"source {source} is not a directory")
    found: list[LocalFile] = []
    for root, dirs, files in os.walk(source, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for base in sorted(files):
            if base.startswith("."):
                continue
            path = os.path.join(root, base)
            rel = os.path.relpath(path, source).replace(os.sep, "/")
            if includes and not any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(base, p) for p in includes):
                continue
            try:
                st = os.stat(path)
            except OSError as e:
                raise JobError(f"cannot read {path}: {e.strerror}") from e
            if not os.path.isfile(path):
                continue
            found.append(LocalFile(name=rel, path=path, key=prefix + rel, size=st.st_size, mtime_ns=st.st_mtime_ns))
    if not found:
        what = f"matching {' '.join(includes)}" if includes else "(dot files are ignored)"
        raise JobError(f"no files to upload in {source} {what}")
    return found


def part_size_for(size: int, chunk_size: int) -> int:
    """The part size s3transfer will use for a file of ``size`` bytes (0 when it uses a single PutObject, i.e.
    below the multipart threshold, which is the chunk size here)."""
    if size < chunk_size:
        return 0
    return ChunksizeAdjuster().adjust_chunksize(chunk_size, size)


def hash_file(lf: LocalFile) -> None:
    """Fill in ``lf.sha256`` (hex) and ``lf.s3_checksum`` (its base64) in one streaming read of the whole file."""
    digest = file_sha256(lf.path, lf.size)
    lf.sha256 = digest.hex()
    lf.s3_checksum = b64(digest)


# ---------------------------------------------------------------------------------------------- S3 side


def decide(lf: LocalFile, remote: dict | None, first_part_size=None) -> None:
    """Set ``lf.action`` to "skipped" or "pending" (upload), reading the file only when the object has its size.

    ``first_part_size()`` returns the ContentLength of the object's part 1 (HeadObject PartNumber=1), or None."""
    lf.action = "pending"
    if remote is None or remote.get("ContentLength") != lf.size:
        return  # new or resized: upload at once, the checksums are computed while sending
    remote_cks = strip_parts(remote.get("ChecksumSHA256"))
    remote_sha = (remote.get("Metadata") or {}).get(META_KEY)
    if remote_cks:
        nparts = remote_parts(remote)
        if nparts:
            part_size = first_part_size() if first_part_size else None
            candidates = [ps for ps in (part_size, lf.part_size) if ps and math.ceil(lf.size / ps) == nparts]
            if not candidates:
                return  # parts of uneven sizes (another tool): cannot recompute its composite
            lf.s3_checksum = composite_checksum(lf.path, lf.size, candidates[0])
        else:
            hash_file(lf)
        equal = lf.s3_checksum == remote_cks
    elif remote_sha:  # written by an earlier version of this job without an S3 checksum: plain SHA-256 metadata
        hash_file(lf)
        equal = lf.sha256 == remote_sha
    else:
        return  # nothing to compare with: upload (now with a checksum)
    if equal:
        lf.action = "skipped"
        lf.version_id = remote.get("VersionId") if remote.get("VersionId") != "null" else None
        lf.remote_checksum = remote_cks or lf.s3_checksum


class ChecksumHooks:
    """botocore event handlers on the run's client: capture the part checksums S3 acknowledges (UploadPart) and
    VersionId/ChecksumSHA256 of the PutObject/CompleteMultipartUpload responses, per key. The checksums themselves
    are computed by botocore while sending (ChecksumAlgorithm=SHA256)."""

    OPERATIONS = ("PutObject", "UploadPart", "CompleteMultipartUpload")

    def __init__(self, client, files: dict[str, LocalFile]):
        self.files = files
        self.results: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._events = client.meta.events
        for op in self.OPERATIONS:
            self._events.register(f"before-parameter-build.s3.{op}", self.before)
            self._events.register(f"after-call.s3.{op}", self.after)

    def close(self) -> None:
        """Unregister (the client is the caller's and outlives this transfer)."""
        for op in self.OPERATIONS:
            self._events.unregister(f"before-parameter-build.s3.{op}", self.before)
            self._events.unregister(f"after-call.s3.{op}", self.after)

    def before(self, params, context, model, **_):
        lf = self.files.get(params.get("Key", ""))
        if lf is None:
            return
        context["fraud_demo_key"] = lf.key
        if model.name == "UploadPart":
            context["fraud_demo_part"] = int(params.get("PartNumber", 0))

    def after(self, parsed, context, model, **_):
        key = context.get("fraud_demo_key")
        if not key or not isinstance(parsed, dict) or "Error" in parsed:
            return
        with self._lock:
            if model.name == "UploadPart":
                if parsed.get("ChecksumSHA256"):
                    self.files[key].part_checksums[context["fraud_demo_part"]] = parsed["ChecksumSHA256"]
            else:
                self.results[key] = {
                    "VersionId": parsed.get("VersionId"),
                    "ChecksumSHA256": parsed.get("ChecksumSHA256"),
                }


class Progress(BaseSubscriber):
    """Progress lines on stderr: per file, at most every PROGRESS_SECONDS or every 10 %."""

    def __init__(self, prog: str, lf: LocalFile, enabled: bool):
        self.prog, self.lf, self.enabled = prog, lf, enabled
        self.done = 0
        self.start = time.monotonic()
        self.last_time = self.start
        self.last_decile = 0
        self._lock = threading.Lock()

    def on_progress(self, future, bytes_transferred, **kwargs):
        if not self.enabled:
            return
        with self._lock:
            self.done += bytes_transferred
            now = time.monotonic()
            decile = int(10 * self.done / self.lf.size) if self.lf.size else 10
            if decile > self.last_decile or now - self.last_time >= PROGRESS_SECONDS:
                self.last_decile, self.last_time = max(decile, self.last_decile), now
                rate = self.done / MIB / max(now - self.start, 1e-6)
                print(
                    f"{self.prog}: {self.lf.name} {self.done / MIB:.1f}/{self.lf.size / MIB:.1f} MiB "
                    f"({100 * self.done / max(self.lf.size, 1):.0f}%) {rate:.1f} MiB/s",
                    file=sys.stderr,
                    flush=True,
                )


# ---------------------------------------------------------------------------------------------- the run


def abort_stale_uploads(bucket: S3Bucket, prefix: str, older_than: timedelta) -> tuple[int, str | None]:
    """Abort multipart uploads under ``prefix`` initiated before now - ``older_than`` (left by a killed run).
    Returns (count, warning)."""
    cutoff = datetime.now(timezone.utc) - older_than
    client = bucket.client
    aborted = 0
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket.name, Prefix=prefix):
            for up in page.get("Uploads", []):
                initiated = up.get("Initiated")
                if initiated is not None and initiated.tzinfo is None:
                    initiated = initiated.replace(tzinfo=timezone.utc)
                if initiated is None or initiated > cutoff:
                    continue
                with contextlib.suppress(botocore.exceptions.ClientError):  # already completed/aborted meanwhile
                    client.abort_multipart_upload(Bucket=bucket.name, Key=up["Key"], UploadId=up["UploadId"])
                    aborted += 1
    except botocore.exceptions.ClientError as e:
        return aborted, f"could not list stale multipart uploads ({error_code(e)}); continuing"
    return aborted, None


# ---------------------------------------------------------------------------------------------- one upload


@dataclass
class UploadRequest:
    """What to upload: ``source``'s files matching ``includes`` to ``prefix`` of the bucket."""

    source: str
    prefix: str
    includes: list[str]
    part_size: int = PART_SIZE
    concurrency: int = CONCURRENCY
    progress: bool = False
    stale_after: timedelta | None = None  # abort multipart uploads under the prefix older than this (None: never)


@dataclass
class UploadOutcome:
    """What an upload did, filled in as it goes (so that a failure can still report it)."""

    files: list[LocalFile] = field(default_factory=list)
    stale_aborted: int = 0
    check_seconds: float = 0.0
    upload_seconds: float = 0.0

    @property
    def uploaded(self) -> list[LocalFile]:
        return [lf for lf in self.files if lf.action == "uploaded"]


def find_files(req: UploadRequest) -> list[LocalFile]:
    """The files ``req`` names, with the part size each will be sent with; JobError when there are none."""
    files = discover(req.source, req.includes, req.prefix)
    for lf in files:
        lf.part_size = part_size_for(lf.size, req.part_size)
    return files


def upload_files(bucket: S3Bucket, req: UploadRequest, out: UploadOutcome, prog: str) -> None:
    """Upload ``out.files`` (from ``find_files(req)``: the caller looks at its inputs before the bucket) through
    the caller's client, skipping files whose content is already there (by checksum), and record in ``out`` what
    was done. The caller has checked the bucket (HeadBucket). Raises JobError; ``prog`` labels the warnings."""
    t0 = time.monotonic()
    files = out.files
    if req.stale_after is not None:
        out.stale_aborted, warning = abort_stale_uploads(bucket, req.prefix, req.stale_after)
        if warning:
            warn(prog, warning)
    _check_remote(bucket, files)
    out.check_seconds = time.monotonic() - t0
    todo = [lf for lf in files if lf.action == "pending"]
    if todo:
        t1 = time.monotonic()
        try:
            _send(bucket, req, todo, prog)
        finally:
            out.upload_seconds = time.monotonic() - t1


def _check_remote(bucket: S3Bucket, files: list[LocalFile]) -> None:
    """Decide, for each file, "skipped" (its content is there) or "pending"; CHECK_THREADS files at a time."""

    def check(lf: LocalFile) -> None:
        decide(lf, bucket.head(lf.key), lambda: bucket.first_part_size(lf.key))

    workers = max(1, min(CHECK_THREADS, os.cpu_count() or 2, len(files)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        for fut in [pool.submit(check, lf) for lf in files]:
            fut.result()


def _send(bucket: S3Bucket, req: UploadRequest, todo: list[LocalFile], prog: str) -> None:
    """All of ``todo`` through one TransferManager, then each result checked against what S3 acknowledged."""
    hooks = ChecksumHooks(bucket.client, {lf.key: lf for lf in todo})
    config = TransferConfig(
        multipart_threshold=req.part_size,
        multipart_chunksize=req.part_size,
        max_concurrency=req.concurrency,
        use_threads=True,
    )
    errors: list[str] = []
    try:
        with TransferManager(bucket.client, config) as manager:
            futures = []
            for lf in todo:
                extra = {"ChecksumAlgorithm": "SHA256"}
                ctype = mimetypes.guess_type(lf.name)[0]
                if ctype:
                    extra["ContentType"] = ctype
                subscriber = Progress(prog, lf, req.progress and lf.size >= req.part_size)
                future = manager.upload(lf.path, bucket.name, lf.key, extra_args=extra, subscribers=[subscriber])
                futures.append((lf, future))
            for lf, fut in futures:
                try:
                    fut.result()
                except AWS_ERRORS as e:
                    lf.action = "failed"
                    errors.append(str(bucket.error(e, f"uploading {lf.name}")))
                    continue
                except OSError as e:
                    lf.action = "failed"
                    errors.append(f"cannot read {lf.path}: {e}")
                    continue
                errors += _record_upload(lf, hooks.results.get(lf.key, {}))
    finally:
        hooks.close()
    if errors:
        raise JobError("; ".join(errors))


def _record_upload(lf: LocalFile, got: dict) -> list[str]:
    """Mark ``lf`` uploaded with what S3 returned; the errors found when comparing it with what was sent."""
    errors = []
    lf.action = "uploaded"
    lf.version_id = got.get("VersionId") if got.get("VersionId") != "null" else None  # unversioned bucket
    lf.remote_checksum = strip_parts(got.get("ChecksumSHA256"))
    # The part checksums botocore computed from the file as it sent it, as S3 acknowledged them.
    if lf.multipart and lf.part_checksums:
        lf.s3_checksum = composite_of(lf.part_checksums)
        expected_parts = math.ceil(lf.size / lf.part_size)
        if len(lf.part_checksums) != expected_parts or lf.remote_checksum not in (None, lf.s3_checksum):
            errors.append(
                f"{lf.key}: S3 reports checksum {lf.remote_checksum} for {len(lf.part_checksums)} parts, "
                f"expected {lf.s3_checksum} for {expected_parts}; re-run to repair"
            )
    elif not lf.multipart and lf.remote_checksum:
        lf.s3_checksum = lf.remote_checksum  # verified by S3 against the header botocore computed
        lf.sha256 = base64.b64decode(lf.remote_checksum).hex()
    st = os.stat(lf.path)
    if (st.st_size, st.st_mtime_ns) != (lf.size, lf.mtime_ns):
        errors.append(f"{lf.path} was modified during the upload; re-run to upload its new content")
    return errors


# ---------------------------------------------------------------------------------------------- downloads


@dataclass
class PinnedObject:
    """One object version to fetch to ``path`` (``size`` bytes)."""

    key: str
    version_id: str | None
    size: int
    path: str


def download_objects(bucket: S3Bucket, objects: list[PinnedObject]) -> None:
    """Parallel ranged downloads of the pinned object versions; a file already there with the object's size was
    fetched by an earlier, interrupted run (s3transfer renames it only when complete) and is kept."""
    config = TransferConfig(
        multipart_threshold=DOWNLOAD_PART_SIZE, multipart_chunksize=DOWNLOAD_PART_SIZE, max_concurrency=CONCURRENCY
    )
    with TransferManager(bucket.client, config) as manager:
        todo = []
        for obj in objects:
            os.makedirs(os.path.dirname(obj.path) or ".", exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if os.path.getsize(obj.path) == obj.size:
                    continue
            extra = {"VersionId": obj.version_id} if obj.version_id else {}
            todo.append((obj, manager.download(bucket.name, obj.key, obj.path, extra_args=extra)))
        for obj, fut in todo:
            try:
                fut.result()
            except AWS_ERRORS as e:
                raise bucket.error(e, f"downloading {obj.key}") from e
            if os.path.getsize(obj.path) != obj.size:
                raise JobError(f"{obj.key}: downloaded {os.path.getsize(obj.path)} bytes of {obj.size}; re-run")
