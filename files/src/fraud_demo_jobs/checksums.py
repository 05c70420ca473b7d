"""S3's SHA-256 checksums of local files: the whole file's, and the composite one of a multipart object
(``base64(sha256(sha256(part1) || sha256(part2) || ...))``, shown by S3 with a ``-<nparts>`` suffix).

Files are read with ``os.preadv`` into reused 8 MiB buffers, and the parts of a composite are hashed in parallel
(hashlib releases the GIL).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import math
import os
import threading

from .errors import JobError

MIB = 1024 * 1024
READ_BLOCK = 8 * MIB


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _read_range(fd: int, buf: bytearray, offset: int, end: int, h, path: str) -> None:
    """Feed bytes [offset, end) of ``fd`` into ``h`` through ``buf`` (``os.preadv``: no fresh 8 MiB ``bytes`` per
    read, which would cost more in page faults than the hashing)."""
    view = memoryview(buf)
    while offset < end:
        n = os.preadv(fd, [view[: min(len(buf), end - offset)]], offset)
        if not n:
            raise JobError(f"{path} changed while being read (shorter than {end} bytes)")
        h.update(view[:n])
        offset += n


def file_sha256(path: str, size: int | None = None) -> bytes:
    """The SHA-256 digest of the first ``size`` bytes of a file (default: all of it), in one streaming read."""
    whole = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            end = os.fstat(fd).st_size if size is None else size
            _read_range(fd, bytearray(READ_BLOCK), 0, end, whole, path)
        finally:
            os.close(fd)
    except OSError as e:
        raise JobError(f"cannot read {path}: {e.strerror}") from e
    return whole.digest()


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
        raise JobError(f"cannot read {path}: {e.strerror}") from e

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
        raise JobError(f"cannot read {path}: {e.strerror}") from e
    finally:
        os.close(fd)
    return b64(hashlib.sha256(b"".join(digests)).digest())


def composite_of(part_checksums: dict[int, str]) -> str:
    """The composite checksum of base64 part checksums (by part number)."""
    return b64(hashlib.sha256(b"".join(base64.b64decode(part_checksums[n]) for n in sorted(part_checksums))).digest())


def strip_parts(checksum: str | None) -> str | None:
    """A ChecksumSHA256 without its "-<nparts>" suffix."""
    return checksum.split("-", 1)[0] if checksum else checksum


def remote_parts(remote: dict) -> int:
    """Part count of a multipart object (from the "-<nparts>" suffix of its ChecksumSHA256 or ETag, or PartsCount);
    0 for an object written by a single PutObject."""
    for value in (remote.get("ChecksumSHA256") or "", (remote.get("ETag") or "").strip('"')):
        _, dash, suffix = value.rpartition("-")
        if dash and suffix.isdigit():
            return int(suffix)
    return int(remote.get("PartsCount") or 0)


def code_version_of(modules: tuple[str, ...]) -> str:
    """The package version plus a hash of the named modules of the package: what a job's output depends on."""
    from . import __version__

    h = hashlib.sha256()
    for mod in modules:
        with open(os.path.join(os.path.dirname(__file__), mod), "rb") as f:
            h.update(f.read())
    return f"{__version__}+{h.hexdigest()[:12]}"
