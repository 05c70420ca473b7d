# Copyright: (c) fraud-demo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A destination directory whose files a manifest vouches for (size, SHA-256): checks, atomic installs, a lock.

Part of the kaggle_dataset module. Nothing ever sits under a final name unverified: files are moved in with
atomic renames from a temporary directory (TMP_PREFIX) on the same filesystem, and the manifest goes last.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile

from ansible.module_utils.fraud_demo_kaggle_errors import KaggleDatasetError

MANIFEST_NAME = ".kaggle_dataset_manifest.json"
LOCK_NAME = ".kaggle_dataset.lock"
TMP_PREFIX = ".kaggle_dataset-tmp-"
MANIFEST_VERSION = 1
CHUNK = 1024 * 1024
RESERVED = (MANIFEST_NAME, LOCK_NAME)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(root, rel):
    path = os.path.join(root, rel)
    st = os.stat(path)
    return {
        "file": rel,
        "size": st.st_size,
        "sha256": sha256_file(path),
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
    }


def check_entry(dest, entry):
    """Return (ok, refreshed_stat_matches). The SHA-256 decides when size+mtime+inode are not conclusive."""
    path = os.path.join(dest, entry["file"])
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not os.path.isfile(path) or st.st_size != entry.get("size"):
        return False
    if st.st_mtime_ns == entry.get("mtime_ns") and st.st_ino == entry.get("inode"):
        return True
    return sha256_file(path) == entry.get("sha256")


def public_entry(entry):
    return {k: entry[k] for k in ("file", "size", "sha256") if k in entry}


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def read_manifest(dest):
    path = os.path.join(dest, MANIFEST_NAME)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"ignoring unreadable manifest {path} ({type(e).__name__})"
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or not isinstance(data.get("files"), list):
        return None, f"ignoring manifest {path} written in an unknown format"
    return data, None


def manifest_summary(manifest):
    if not manifest:
        return {}
    return {
        "source": manifest.get("source"),
        "files": [public_entry(e) for e in manifest.get("files", [])],
        "archive": public_entry(manifest["archive"]) if manifest.get("archive") else None,
    }


def dump(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def stale_temp_dirs(dest):
    try:
        names = os.listdir(dest)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(TMP_PREFIX))


@contextlib.contextmanager
def dest_lock(dest):
    fd = os.open(os.path.join(dest, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def install(dest, moves, old_manifest, manifest):
    """Move verified files into `dest` with atomic renames, drop files no longer listed, write the manifest last.

    `moves` is a list of (source path, path relative to dest). Return the removed files.
    """
    manifest_path = os.path.join(dest, MANIFEST_NAME)
    # The old manifest goes first: until the new one is written, no manifest vouches for a mix of files.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(manifest_path)
    fsync_dir(dest)
    for src, rel in moves:
        final = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if os.path.isdir(final) and not os.path.islink(final):
            raise KaggleDatasetError(f"Cannot install {rel}: a directory with that name exists in {dest}.")
        os.chmod(src, 0o644)
        os.replace(src, final)
        fsync_dir(os.path.dirname(final))
    entries = manifest["files"] + ([manifest["archive"]] if manifest.get("archive") else [])
    keep = {e["file"] for e in entries}
    old = (old_manifest or {}).get("files", []) + (
        [old_manifest["archive"]] if (old_manifest or {}).get("archive") else []
    )
    removed = []
    for entry in old:
        rel = entry.get("file")
        if rel and rel not in keep and not os.path.isabs(rel) and ".." not in rel.split("/"):
            try:
                os.unlink(os.path.join(dest, rel))
                removed.append(rel)
            except FileNotFoundError:
                pass
    for entry in entries:
        st = os.stat(os.path.join(dest, entry["file"]))
        entry["mtime_ns"], entry["inode"] = st.st_mtime_ns, st.st_ino
    write_json_atomic(manifest_path, manifest)
    return removed


def new_manifest(source, extracted, files, archive, downloaded_at, kaggle_version):
    return {
        "version": MANIFEST_VERSION,
        "source": source,
        "extracted": extracted,
        "downloaded_at": downloaded_at,
        "kaggle_version": kaggle_version,
        "files": files,
        "archive": archive,
    }
