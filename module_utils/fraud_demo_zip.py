# Copyright: (c) fraud-demo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verify a downloaded zip and extract it safely (no absolute or parent paths, links or reserved names).

Part of the kaggle_dataset module.
"""

from __future__ import annotations

import os
import shutil
import zipfile

from ansible.module_utils.fraud_demo_kaggle_errors import KaggleDatasetError
from ansible.module_utils.fraud_demo_verified_dir import CHUNK, RESERVED, TMP_PREFIX


def safe_rel(name):
    """Validate a zip member name; return a normalized relative path or None for directories."""
    if name.endswith("/"):
        return None
    norm = os.path.normpath(name.replace("\\", "/"))
    if norm.startswith(("/", "../")) or norm in ("..", ".") or os.path.isabs(norm) or ":" in norm.split("/")[0]:
        raise KaggleDatasetError(f"The archive contains an unsafe path {name!r}; refusing to extract it.")
    if os.path.basename(norm) in RESERVED or norm.startswith(TMP_PREFIX):
        raise KaggleDatasetError(f"The archive contains a file named {name!r}, which this module reserves.")
    return norm


def verify_zip(path):
    """Raise KaggleDatasetError unless `path` is a readable zip whose members pass their CRC check."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            names = [i.filename for i in z.infolist()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as e:
        raise KaggleDatasetError(
            f"The downloaded archive {os.path.basename(path)} is corrupt ({e}). Nothing was changed in the "
            "destination; re-run to download it again (use force=true if the files are already in place)."
        ) from e
    if bad is not None:
        raise KaggleDatasetError(
            f"The downloaded archive {os.path.basename(path)} is corrupt: CRC check failed for member {bad!r}. "
            "Nothing was changed in the destination; re-run to download it again."
        )
    if not [n for n in names if not n.endswith("/")]:
        raise KaggleDatasetError(f"The downloaded archive {os.path.basename(path)} contains no files.")


def extract_zip(path, target):
    """Extract into `target` (files only, mtime = now); return the sorted relative paths."""
    rels = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            rel = safe_rel(info.filename)
            if rel is None:
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise KaggleDatasetError(f"The archive contains a symbolic link {rel!r}; refusing to extract it.")
            out = os.path.join(target, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
                dst.flush()
                os.fsync(dst.fileno())
            rels.append(rel)
    if len(set(rels)) != len(rels):
        raise KaggleDatasetError(f"The archive {os.path.basename(path)} lists a file twice.")
    return sorted(rels)
