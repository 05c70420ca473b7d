"""Upload a directory of dataset files to the data-lake bucket (``fraud-demo-upload``).

Puts every matching file under ``<source>`` to ``s3://<bucket>/<prefix><relative path>`` (the prefix defaults to
``raw/<dataset>/``), skipping files whose content is already there, and prints one JSON summary line last.

Transfer
    One S3 client (``max_pool_connections >= --concurrency``) and one boto3/s3transfer ``TransferManager``
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
    and Ctrl-C or SIGTERM (turned into an exception here) cancel the transfers, which aborts them too. A failed
    single PutObject never creates an object. At start, multipart uploads under the prefix that were initiated
    more than ``--stale-hours`` ago (left by a killed run) are aborted.

Settings come from flags or the environment: FRAUD_DEMO_UPLOAD_SOURCE, FRAUD_DEMO_BUCKET, FRAUD_DEMO_DATASET
(prefix ``raw/<dataset>/``); endpoint, region, CA bundle and credentials come from boto3's own configuration
(AWS_ENDPOINT_URL, AWS_REGION, AWS_CA_BUNDLE, the instance profile, ...) unless --endpoint-url/--region are given.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fnmatch
import hashlib
import json
import math
import mimetypes
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

JOB = "upload"
PROG = "fraud-demo-upload"
DEFAULT_DATASET = "ieee-fraud-detection"
MIB = 1024 * 1024
READ_BLOCK = 8 * MIB
MIN_PART_MB = 5  # S3's minimum part size (all parts but the last)
MAX_PART_MB = 5 * 1024
PROGRESS_SECONDS = 5.0
META_KEY = "sha256"


class UploadError(Exception):
    """A failure with a message meant for the user (no traceback)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM; a KeyboardInterrupt so that s3transfer cancels (and aborts) alike."""


@contextlib.contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises Terminated in the main thread (a job's cleanup then runs as for Ctrl-C);
    the previous handler comes back on the way out. Elsewhere than the main thread, signals are left alone."""
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_sigterm(signum, frame):
            raise Terminated()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


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
        raise UploadError(f"source directory {source} does not exist")
    if not os.path.isdir(source):
        raise UploadError(f"source {source} is not a directory")
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
                raise UploadError(f"cannot read {path}: {e.strerror}") from e
            if not os.path.isfile(path):
                continue
            found.append(LocalFile(name=rel, path=path, key=prefix + rel, size=st.st_size, mtime_ns=st.st_mtime_ns))
    if not found:
        what = f"matching {' '.join(includes)}" if includes else "(dot files are ignored)"
        raise UploadError(f"no files to upload in {source} {what}")
    return found


def part_size_for(size: int, chunk_size: int) -> int:
    """The part size s3transfer will use for a file of ``size`` bytes (0 when it uses a single PutObject, i.e.
    below the multipart threshold, which is the chunk size here)."""
    if size < chunk_size:
        return 0
    return ChunksizeAdjuster().adjust_chunksize(chunk_size, size)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _read_range(fd: int, buf: bytearray, offset: int, end: int, h, path: str) -> None:
    """Feed bytes [offset, end) of ``fd`` into ``h`` through ``buf`` (``os.preadv``: no fresh 8 MiB ``bytes`` per
    read, which would cost more in page faults than the hashing)."""
    view = memoryview(buf)
    while offset < end:
        n = os.preadv(fd, [view[: min(len(buf), end - offset)]], offset)
        if not n:
            raise UploadError(f"{path} changed while being read (shorter than {end} bytes)")
        h.update(view[:n])
        offset += n


def hash_file(lf: LocalFile) -> None:
    """Fill in ``lf.sha256`` (hex) and ``lf.s3_checksum`` (its base64) in one streaming read of the whole file."""
    whole = hashlib.sha256()
    try:
        fd = os.open(lf.path, os.O_RDONLY)
        try:
            _read_range(fd, bytearray(READ_BLOCK), 0, lf.size, whole, lf.path)
        finally:
            os.close(fd)
    except OSError as e:
        raise UploadError(f"cannot read {lf.path}: {e.strerror}") from e
    lf.sha256 = whole.hexdigest()
    lf.s3_checksum = _b64(whole.digest())


def composite_checksum(path: str, size: int, part_size: int, workers: int | None = None) -> str:
    """S3's composite SHA-256 (base64, without "-<nparts>") of the file for ``part_size`` parts; the parts are
    hashed on ``workers`` threads (default: one per CPU, at most 8), each with its own reused buffer."""
    nparts = max(1, math.ceil(size / part_size))
    workers = max(1, min(workers or os.cpu_count() or 2, 8, nparts))
    digests: list[bytes] = [b""] * nparts
    local = threading.local()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise UploadError(f"cannot read {path}: {e.strerror}") from e

    def one(i: int) -> None:
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = bytearray(min(READ_BLOCK, part_size))
        h = hashlib.sha256()
        _read_range(fd, buf, i * part_size, min(size, (i + 1) * part_size), h, path)
        digests[i] = h.digest()

    try:
        if workers == 1:
            for i in range(nparts):
                one(i)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parts") as pool:
                for fut in [pool.submit(one, i) for i in range(nparts)]:
                    fut.result()
    except OSError as e:
        raise UploadError(f"cannot read {path}: {e.strerror}") from e
    finally:
        os.close(fd)
    return _b64(hashlib.sha256(b"".join(digests)).digest())


def composite_of(part_checksums: dict[int, str]) -> str:
    """The composite checksum of base64 part checksums (by part number)."""
    return _b64(hashlib.sha256(b"".join(base64.b64decode(part_checksums[n]) for n in sorted(part_checksums))).digest())


# ---------------------------------------------------------------------------------------------- S3 side


def make_client(endpoint_url: str | None, region: str | None, concurrency: int):
    """The one S3 client of a run; endpoint, region, CA bundle, credentials and retries come from boto3's own
    configuration (env/profile/instance profile) unless given."""
    config = botocore.config.Config(
        max_pool_connections=max(10, concurrency + 4),
        connect_timeout=10,
        read_timeout=120,
        # Every PutObject/UploadPart body carries its x-amz-checksum-sha256 (ChecksumAlgorithm=SHA256, computed by
        # botocore while sending), which S3 verifies against the body, so hashing each body once more for the SigV4
        # payload signature adds no protection (botocore itself skips it over HTTPS when a checksum is present).
        s3={"payload_signing_enabled": False},
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config)


def _strip_parts(checksum: str | None) -> str | None:
    return checksum.split("-", 1)[0] if checksum else checksum


def _error_code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: botocore.exceptions.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def explain(e: BaseException, bucket: str, endpoint: str | None, what: str = "") -> str:
    """One-line, actionable message for a boto/botocore exception."""
    where = f" ({what})" if what else ""
    if isinstance(e, botocore.exceptions.NoCredentialsError):
        return (
            "no AWS credentials found: on the node attach an instance profile (IAM role) to the instance, "
            "elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(
        e,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectionClosedError,
        ),
    ):
        return (
            f"cannot reach the S3 endpoint {endpoint}{where}: {e} "
            "(check AWS_ENDPOINT_URL/--endpoint-url, AWS_REGION and the network)"
        )
    if isinstance(e, botocore.exceptions.ClientError):
        code, status = _error_code(e), _status(e)
        if code in ("NoSuchBucket",) or (status == 404 and code in ("404", "NotFound", "")):
            return f"bucket {bucket} does not exist (NoSuchBucket) at {endpoint}{where}"
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
            return (
                f"access denied to bucket {bucket}{where}: check that the node's IAM role (instance profile) allows "
                f"s3:ListBucket, s3:GetObject, s3:PutObject and s3:AbortMultipartUpload on it"
            )
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return f"AWS credentials rejected by S3{where}: {code}: {e.response.get('Error', {}).get('Message', '')}"
        if status == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
            region = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region", "?")
            return f"bucket {bucket} is in region {region}: set AWS_REGION/--region accordingly{where}"
        return f"S3 error on bucket {bucket}{where}: {code}: {e.response.get('Error', {}).get('Message', e)}"
    if isinstance(e, botocore.exceptions.BotoCoreError):
        return f"AWS client error{where}: {e}"
    return f"{type(e).__name__}: {e}{where}"


def abort_stale_uploads(client, bucket: str, prefix: str, older_than: timedelta) -> tuple[int, str | None]:
    """Abort multipart uploads under ``prefix`` initiated before now - ``older_than`` (left by a killed run).
    Returns (count, warning)."""
    cutoff = datetime.now(timezone.utc) - older_than
    aborted = 0
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            for up in page.get("Uploads", []):
                initiated = up.get("Initiated")
                if initiated is not None and initiated.tzinfo is None:
                    initiated = initiated.replace(tzinfo=timezone.utc)
                if initiated is None or initiated > cutoff:
                    continue
                with contextlib.suppress(botocore.exceptions.ClientError):  # already completed/aborted meanwhile
                    client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
                    aborted += 1
    except botocore.exceptions.ClientError as e:
        return aborted, f"could not list stale multipart uploads ({_error_code(e)}); continuing"
    return aborted, None


def not_found(e: botocore.exceptions.ClientError) -> bool:
    """Whether a ClientError means "no such object" (HeadObject has no error body, only the status)."""
    return _status(e) == 404 or _error_code(e) in ("404", "NoSuchKey", "NotFound")


def head(client, bucket: str, key: str) -> dict | None:
    """HeadObject with checksums, None when there is no such object."""
    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except botocore.exceptions.ClientError as e:
        if not_found(e):
            return None
        raise


def remote_parts(remote: dict) -> int:
    """Part count of a multipart object (from the "-<nparts>" suffix of its ChecksumSHA256 or ETag, or PartsCount);
    0 for an object written by a single PutObject."""
    for value in (remote.get("ChecksumSHA256") or "", (remote.get("ETag") or "").strip('"')):
        _, dash, suffix = value.rpartition("-")
        if dash and suffix.isdigit():
            return int(suffix)
    return int(remote.get("PartsCount") or 0)


def decide(lf: LocalFile, remote: dict | None, first_part_size=None) -> None:
    """Set ``lf.action`` to "skipped" or "pending" (upload), reading the file only when the object has its size.

    ``first_part_size()`` returns the ContentLength of the object's part 1 (HeadObject PartNumber=1), or None."""
    lf.action = "pending"
    if remote is None or remote.get("ContentLength") != lf.size:
        return  # new or resized: upload at once, the checksums are computed while sending
    remote_cks = _strip_parts(remote.get("ChecksumSHA256"))
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

    def __init__(self, client, files: dict[str, LocalFile]):
        self.files = files
        self.results: dict[str, dict] = {}
        self._lock = threading.Lock()
        events = client.meta.events
        for op in ("PutObject", "UploadPart", "CompleteMultipartUpload"):
            events.register(f"before-parameter-build.s3.{op}", self.before)
            events.register(f"after-call.s3.{op}", self.after)

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

    def __init__(self, lf: LocalFile, enabled: bool):
        self.lf, self.enabled = lf, enabled
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
                    f"{PROG}: {self.lf.name} {self.done / MIB:.1f}/{self.lf.size / MIB:.1f} MiB "
                    f"({100 * self.done / max(self.lf.size, 1):.0f}%) {rate:.1f} MiB/s",
                    file=sys.stderr,
                    flush=True,
                )


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class Settings:
    source: str
    bucket: str
    prefix: str
    includes: list[str]
    part_size: int
    concurrency: int
    progress: bool
    endpoint_url: str | None = None
    region: str | None = None
    stale_hours: float = 1.0


@dataclass
class RunState:
    files: list[LocalFile] = field(default_factory=list)
    stale_aborted: int = 0
    check_seconds: float = 0.0
    upload_seconds: float = 0.0


def run(s: Settings, state: RunState) -> None:
    """Do the upload; fills ``state`` as it goes (so a failure can still report what was done)."""
    t0 = time.monotonic()
    files = discover(s.source, s.includes, s.prefix)
    for lf in files:
        lf.part_size = part_size_for(lf.size, s.part_size)
    state.files = files
    client = make_client(s.endpoint_url, s.region, s.concurrency)
    endpoint = client.meta.endpoint_url

    # Preflight: fails fast (before reading gigabytes) on credentials, endpoint, bucket and permissions.
    try:
        client.head_bucket(Bucket=s.bucket)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise UploadError(explain(e, s.bucket, endpoint)) from e

    if s.stale_hours > 0:
        state.stale_aborted, warning = abort_stale_uploads(client, s.bucket, s.prefix, timedelta(hours=s.stale_hours))
        if warning:
            print(f"{PROG}: warning: {warning}", file=sys.stderr)

    def check(lf: LocalFile) -> None:
        try:
            remote = head(client, s.bucket, lf.key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise UploadError(explain(e, s.bucket, endpoint, f"HeadObject {lf.key}")) from e

        def first_part_size() -> int | None:
            try:
                part = client.head_object(Bucket=s.bucket, Key=lf.key, PartNumber=1)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                return None
            return part.get("ContentLength")

        decide(lf, remote, first_part_size)

    workers = max(1, min(4, os.cpu_count() or 2, len(files)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        for fut in [pool.submit(check, lf) for lf in files]:
            fut.result()
    state.check_seconds = time.monotonic() - t0

    todo = [lf for lf in files if lf.action == "pending"]
    if not todo:
        return
    t1 = time.monotonic()
    hooks = ChecksumHooks(client, {lf.key: lf for lf in todo})
    config = TransferConfig(
        multipart_threshold=s.part_size,
        multipart_chunksize=s.part_size,
        max_concurrency=s.concurrency,
        use_threads=True,
    )
    errors: list[str] = []
    with TransferManager(client, config) as manager:
        futures = []
        for lf in todo:
            extra = {"ChecksumAlgorithm": "SHA256"}
            ctype = mimetypes.guess_type(lf.name)[0]
            if ctype:
                extra["ContentType"] = ctype
            subscriber = Progress(lf, s.progress and lf.size >= s.part_size)
            futures.append((lf, manager.upload(lf.path, s.bucket, lf.key, extra_args=extra, subscribers=[subscriber])))
        for lf, fut in futures:
            try:
                fut.result()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                lf.action = "failed"
                errors.append(explain(e, s.bucket, endpoint, f"uploading {lf.name}"))
                continue
            except OSError as e:
                lf.action = "failed"
                errors.append(f"cannot read {lf.path}: {e}")
                continue
            lf.action = "uploaded"
            got = hooks.results.get(lf.key, {})
            lf.version_id = got.get("VersionId") if got.get("VersionId") != "null" else None  # unversioned bucket
            lf.remote_checksum = _strip_parts(got.get("ChecksumSHA256"))
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
    state.upload_seconds = time.monotonic() - t1
    if errors:
        raise UploadError("; ".join(errors))


def summary(s: Settings | None, state: RunState, seconds: float, msg: str | None = None) -> dict:
    uploaded = [lf for lf in state.files if lf.action == "uploaded"]
    out = {
        "job": JOB,
        "changed": bool(uploaded),
        "bucket": s.bucket if s else None,
        "prefix": s.prefix if s else None,
        "files": [lf.report() for lf in state.files if lf.action],
        "files_uploaded": len(uploaded),
        "files_skipped": sum(lf.action == "skipped" for lf in state.files),
        "bytes_sent": sum(lf.size for lf in uploaded),
        "stale_uploads_aborted": state.stale_aborted,
        "part_size_mb": s.part_size // MIB if s else None,
        "check_seconds": round(state.check_seconds, 3),
        "upload_seconds": round(state.upload_seconds, 3),
        "seconds": round(seconds, 3),
    }
    if msg is not None:
        out["failed"] = True
        out["msg"] = msg
    return out


# ---------------------------------------------------------------------------------------------------- CLI


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    dataset = _env("FRAUD_DEMO_DATASET", DEFAULT_DATASET)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Upload a directory's files to s3://BUCKET/PREFIX (default raw/<dataset>/) with parallel "
        "multipart transfers, skipping files whose SHA-256 (S3's ChecksumSHA256, full or composite, or the "
        "sha256 metadata of earlier versions) already matches. Never leaves a partial object. "
        "Prints one JSON summary line last.",
    )
    parser.add_argument(
        "--source", default=_env("FRAUD_DEMO_UPLOAD_SOURCE"), help="directory to upload (env FRAUD_DEMO_UPLOAD_SOURCE)"
    )
    parser.add_argument("--bucket", default=_env("FRAUD_DEMO_BUCKET"), help="target bucket (env FRAUD_DEMO_BUCKET)")
    parser.add_argument(
        "--prefix",
        default=f"raw/{dataset}/",
        help=f"key prefix (default raw/<dataset>/ = raw/{dataset}/; dataset from env FRAUD_DEMO_DATASET, "
        f"default {DEFAULT_DATASET})",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="shell pattern of files to upload, matched on the relative path or the base name; repeatable "
        "(default: every file except dot files)",
    )
    parser.add_argument("--part-size-mb", type=int, default=8, help="multipart threshold and part size in MiB (8)")
    parser.add_argument("--concurrency", type=int, default=10, help="parallel part/file transfers (10)")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    settings: Settings | None = None
    state = RunState()

    def fail(msg: str, code: int) -> int:
        print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
        print(json.dumps(summary(settings, state, time.monotonic() - t0, msg)), flush=True)
        return code

    if not args.source:
        return fail("--source DIR (or FRAUD_DEMO_UPLOAD_SOURCE) is required", 2)
    if not args.bucket:
        return fail("--bucket (or FRAUD_DEMO_BUCKET) is required", 2)
    if not MIN_PART_MB <= args.part_size_mb <= MAX_PART_MB:
        return fail(f"--part-size-mb must be between {MIN_PART_MB} and {MAX_PART_MB} (S3 part limits)", 2)
    if args.concurrency < 1:
        return fail("--concurrency must be at least 1", 2)
    progress = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    settings = Settings(
        source=args.source,
        bucket=args.bucket,
        prefix=normalize_prefix(args.prefix),
        includes=args.include or [],
        part_size=args.part_size_mb * MIB,
        concurrency=args.concurrency,
        progress=progress,
        endpoint_url=args.endpoint_url,
        region=args.region,
        stale_hours=args.stale_hours,
    )

    with sigterm_raises():
        try:
            run(settings, state)
        except UploadError as e:
            return fail(str(e), 1 if state.files else 2)  # no files yet: a problem with --source/--include
        except Terminated:
            return fail(
                "terminated (SIGTERM); in-progress multipart uploads were aborted, nothing partial was left", 143
            )
        except KeyboardInterrupt:
            return fail("interrupted; in-progress multipart uploads were aborted, nothing partial was left", 130)
        except MemoryError:
            return fail("out of memory", 1)
        except Exception as e:  # a bug: keep the traceback, still end with the summary line
            traceback.print_exc()
            return fail(f"unexpected error: {type(e).__name__}: {e}", 1)
    if progress:
        up = [lf for lf in state.files if lf.action == "uploaded"]
        print(
            f"{PROG}: {len(up)} uploaded ({sum(lf.size for lf in up) / MIB:.1f} MiB), "
            f"{len(state.files) - len(up)} unchanged, {time.monotonic() - t0:.1f} s",
            file=sys.stderr,
        )
    print(json.dumps(summary(settings, state, time.monotonic() - t0)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
