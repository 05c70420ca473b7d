#!/usr/bin/python

# Copyright: (c) fraud-demo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kaggle_dataset
short_description: Download a Kaggle competition's or dataset's files and keep them verified on disk
description:
  - Downloads all files of a Kaggle competition (default C(ieee-fraud-detection)) or of a Kaggle dataset
    with the official C(kaggle) Python package, verifies the archive, extracts it and records every file
    with its size and SHA-256 in a manifest, C(<dest>/.kaggle_dataset_manifest.json).
  - Idempotent without the network. When the manifest matches the files on disk the module reports
    C(changed=false) and does not contact Kaggle at all (no download, no listing). A file whose size and
    mtime still match the manifest is trusted; any other file is re-hashed, and the SHA-256 decides.
    Kaggle competition data is static, so the remote side is not compared; use O(force=true) to fetch
    again (for example after the owner of a dataset published a new version).
  - When only extracted files are missing or damaged and the kept archive (O(keep_archive)) still matches
    its checksum, the files are restored from the archive without downloading.
  - Never leaves a partial file under a final name. The download and the extraction happen in a temporary
    directory inside O(dest) (same filesystem); complete, verified files are moved into place with an atomic
    rename, and the manifest is written last. A failed or interrupted run is recovered by the next run, which
    removes stale temporary directories (C(<dest>/.kaggle_dataset-tmp-*)) and downloads again.
  - Runs of this module on the same O(dest) are serialized with a lock file, C(<dest>/.kaggle_dataset.lock).
  - Credentials are the C(kaggle) package's own, read on the managed node. See O(config_dir).
    Secrets never appear in the module's output.
version_added: "0.1.0"
author:
  - fraud-demo contributors
options:
  competition:
    description:
      - Kaggle competition whose data files are downloaded (its URL slug).
      - Ignored when O(dataset) is set. Mutually exclusive with O(dataset).
      - The account must have accepted the competition's rules on the Kaggle website.
    type: str
    default: ieee-fraud-detection
  dataset:
    description:
      - Kaggle dataset to download instead of a competition, as C(owner/slug) or C(owner/slug/version).
      - Mutually exclusive with O(competition).
    type: str
  dest:
    description:
      - Directory on the managed node that receives the files. Created (with parents) when missing.
      - Files listed by an earlier manifest but absent from a new download are removed.
    type: path
    required: true
  force:
    description:
      - Download again even when the files on disk match the manifest.
    type: bool
    default: false
  config_dir:
    description:
      - Directory holding C(kaggle.json), a JSON object with the keys C(username) and C(key); exported to the
        C(kaggle) package as E(KAGGLE_CONFIG_DIR).
      - When unset, E(KAGGLE_CONFIG_DIR) of the module's environment is used, else C(~/.kaggle) of the
        remote user (the C(kaggle) package falls back to C(~/.config/kaggle) when C(~/.kaggle) is absent).
      - Credentials may instead come from the environment (E(KAGGLE_USERNAME) and E(KAGGLE_KEY), or an
        access token in E(KAGGLE_API_TOKEN)), for example with the task keyword C(environment), or
        from C(~/.kaggle/access_token) (kaggle 2.x).
    type: path
  extract:
    description:
      - Extract the downloaded zip archive into O(dest).
      - When V(false) the archive itself is the only file kept and recorded.
    type: bool
    default: true
  keep_archive:
    description:
      - With O(extract=true), keep the downloaded archive in O(dest) next to the extracted files and record it
        in the manifest.
      - Keeping it costs the archive's size on disk (about 120 MB for C(ieee-fraud-detection)) and lets a later
        run restore deleted or damaged extracted files without downloading again (Kaggle downloads are slow and
        rate-limited, and need the credentials on the node).
      - A missing or damaged kept archive alone never triggers a download while the extracted files are intact.
    type: bool
    default: true
  timeout:
    description:
      - Timeout in seconds for connecting to Kaggle and for each read of a response.
    type: int
    default: 60
  retries:
    description:
      - How many times a transient failure (connection error, timeout, truncated download, HTTP 429 or 5xx) is
        retried, with exponential backoff.
      - With kaggle 2.x the package itself retries and resumes the download with HTTP Range requests.
    type: int
    default: 3
notes:
  - Supports C(check_mode) (reports whether a download or a restore would happen; nothing is written and Kaggle is
    not contacted) and C(diff_mode) (the manifest's file list with sizes and SHA-256, before and after).
  - Works with kaggle 1.7 (Python 3.10, for example Ubuntu 22.04) and kaggle 2.x (Python 3.11 and later).
  - Set E(KAGGLE_API_ENVIRONMENT=LOCALHOST) to talk to a Kaggle API on C(http://localhost) (tests only).
requirements:
  - kaggle >= 1.7 (the Python package, on the managed node's Python interpreter)
seealso:
  - name: Kaggle API credentials
    description: How to create an API token and where the kaggle package looks for it.
    link: https://github.com/Kaggle/kaggle-api#api-credentials
"""

EXAMPLES = r"""
- name: Download the IEEE-CIS Fraud Detection competition data
  kaggle_dataset:
    dest: /srv/fraud-demo/data/raw/ieee-fraud-detection

- name: Download a public dataset with credentials from the environment, without keeping the zip
  kaggle_dataset:
    dataset: mlg-ulb/creditcardfraud
    dest: /srv/fraud-demo/data/raw/creditcardfraud
    keep_archive: false
  environment:
    KAGGLE_USERNAME: "{{ kaggle_username }}"
    KAGGLE_KEY: "{{ kaggle_key }}"
  no_log: true

- name: Keep only the archive, read kaggle.json from a custom directory, download again
  kaggle_dataset:
    competition: ieee-fraud-detection
    dest: /srv/fraud-demo/data/archive
    config_dir: /home/ubuntu/.config/kaggle
    extract: false
    force: true
"""

RETURN = r"""
dest:
  description: Destination directory.
  returned: always
  type: str
  sample: /srv/fraud-demo/data/raw/ieee-fraud-detection
source:
  description: What was downloaded.
  returned: always
  type: dict
  sample: {"type": "competition", "name": "ieee-fraud-detection"}
manifest:
  description: Path of the manifest file.
  returned: always
  type: str
  sample: /srv/fraud-demo/data/raw/ieee-fraud-detection/.kaggle_dataset_manifest.json
files:
  description:
    - The data files in O(dest) as recorded in the manifest (paths relative to O(dest)).
    - Empty in check mode when a download would be needed.
  returned: always
  type: list
  elements: dict
  sample: [{"file": "train_transaction.csv", "size": 683351067, "sha256": "4b6f...e2"}]
archive:
  description: The kept archive as recorded in the manifest, or null.
  returned: always
  type: dict
  sample: {"file": "ieee-fraud-detection.zip", "size": 124513234, "sha256": "9a1c...07"}
downloaded:
  description: Whether the files were downloaded from Kaggle (in check mode, whether they would be).
  returned: always
  type: bool
restored:
  description: Files restored from the kept archive without downloading (would be, in check mode).
  returned: always
  type: list
  elements: str
removed:
  description: Files removed because the new download no longer contains them, and stale temporary directories.
  returned: always
  type: list
  elements: str
downloaded_at:
  description: When the files in the manifest were downloaded (UTC, ISO 8601).
  returned: when a manifest exists
  type: str
  sample: "2024-05-01T12:00:00Z"
kaggle_version:
  description: Version of the kaggle package used for a download.
  returned: when a download happened
  type: str
  sample: 2.2.5
"""

import datetime
import os
import re
import shutil
import tempfile
import traceback
import zipfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.fraud_demo_kaggle_client import run_download
from ansible.module_utils.fraud_demo_kaggle_credentials import (
    default_config_dir,
    find_credentials,
    no_credentials_message,
)
from ansible.module_utils.fraud_demo_kaggle_errors import KaggleDatasetError, describe_error, sanitize, source_label
from ansible.module_utils.fraud_demo_verified_dir import (
    MANIFEST_NAME,
    TMP_PREFIX,
    check_entry,
    dest_lock,
    dump,
    file_entry,
    install,
    manifest_summary,
    new_manifest,
    public_entry,
    read_manifest,
    stale_temp_dirs,
)
from ansible.module_utils.fraud_demo_zip import extract_zip, safe_rel


def plan(module, dest, source, manifest):
    """Decide what to do: ('ok'|'restore'|'download', broken file names, reason)."""
    p = module.params
    if p["force"]:
        return "download", [], "force=true"
    if manifest is None:
        return "download", [], "no manifest in dest"
    if manifest.get("source") != source:
        return (
            "download",
            [],
            "the manifest records {}".format(source_label(manifest.get("source") or {"type": "?", "name": "?"})),
        )
    archive = manifest.get("archive")
    if p["extract"]:
        if manifest.get("extracted") is not True:
            return "download", [], "the manifest records an archive that was not extracted"
    elif manifest.get("extracted") is not False:
        return "download", [], "extract=false but the manifest records extracted files"
    broken = [e["file"] for e in manifest["files"] if not check_entry(dest, e)]
    if not broken:
        return "ok", [], "files match the manifest"
    if p["extract"] and archive and check_entry(dest, dict(archive, mtime_ns=None)):
        return "restore", broken, f"restoring {len(broken)} file(s) from the kept archive"
    return "download", broken, f"{len(broken)} file(s) missing or changed: {', '.join(broken[:5])}"


def apply(module, dest, source, manifest, action, broken, config_dir, secrets, credentials, staging):
    """Download (or restore from the kept archive) and install; return the result fields."""
    p = module.params
    if action == "restore":
        archive_path = os.path.join(dest, manifest["archive"]["file"])
        downloaded_at, version = manifest.get("downloaded_at"), manifest.get("kaggle_version")
    else:
        archive_path, version = run_download(module, source, config_dir, secrets, credentials, staging)
        downloaded_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    archive_dir, archive_name = os.path.split(archive_path)
    safe_rel(archive_name)

    archive_entry = None
    if p["extract"]:
        extracted = os.path.join(staging, "extracted")
        os.mkdir(extracted)
        rels = extract_zip(archive_path, extracted)
        if p["keep_archive"] and archive_name in rels:
            raise KaggleDatasetError(
                f"The archive holds a file named like the archive itself ({archive_name}); use keep_archive=false."
            )
        files = [file_entry(extracted, rel) for rel in rels]
        moves = [(os.path.join(extracted, rel), rel) for rel in rels]
        if p["keep_archive"] and action == "download":
            archive_entry = file_entry(archive_dir, archive_name)
            moves.append((archive_path, archive_name))
        elif p["keep_archive"]:
            archive_entry = dict(manifest["archive"])
    else:
        files = [file_entry(archive_dir, archive_name)]
        moves = [(archive_path, archive_name)]

    if action == "restore":
        recorded = {e["file"]: e["sha256"] for e in manifest["files"]}
        if {f["file"]: f["sha256"] for f in files} != recorded:
            raise KaggleDatasetError(
                f"The kept archive {archive_name} does not hold the files the manifest records; "
                "re-run with force=true to download again."
            )
        moves = [(src, rel) for src, rel in moves if rel in broken]

    manifest_new = new_manifest(source, bool(p["extract"]), files, archive_entry, downloaded_at, version)
    removed = install(dest, moves, manifest, manifest_new)
    out = {
        "changed": True,
        "files": [public_entry(f) for f in files],
        "downloaded_at": downloaded_at,
        "archive": public_entry(archive_entry) if archive_entry else None,
        "removed": removed,
        "after": dump(manifest_summary(manifest_new)),
    }
    if action == "restore":
        out.update(restored=broken, msg="Restored {} from the kept archive {}.".format(", ".join(broken), archive_name))
    else:
        out.update(
            downloaded=True,
            kaggle_version=version,
            msg=f"Downloaded {source_label(source)}: {len(files)} file(s) in {dest}.",
        )
    return out


def select_source(module):
    p = module.params
    if p["dataset"]:
        if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[0-9]+)?$", p["dataset"]):
            module.fail_json(msg="dataset must be owner/slug or owner/slug/version, got {!r}.".format(p["dataset"]))
        return {"type": "dataset", "name": p["dataset"]}
    if not re.match(r"^[A-Za-z0-9_.-]+$", p["competition"] or ""):
        module.fail_json(msg="competition must be a Kaggle competition slug, got {!r}.".format(p["competition"]))
    return {"type": "competition", "name": p["competition"]}


def main():
    module = AnsibleModule(
        argument_spec={
            "competition": {"type": "str", "default": "ieee-fraud-detection"},
            "dataset": {"type": "str"},
            "dest": {"type": "path", "required": True},
            "force": {"type": "bool", "default": False},
            "config_dir": {"type": "path"},
            "extract": {"type": "bool", "default": True},
            "keep_archive": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 60},
            "retries": {"type": "int", "default": 3},
        },
        mutually_exclusive=[("competition", "dataset")],
        supports_check_mode=True,
    )
    p = module.params
    source = select_source(module)
    dest = os.path.abspath(p["dest"])
    if p["timeout"] < 1 or p["retries"] < 0:
        module.fail_json(msg="timeout must be >= 1 and retries >= 0.")
    if os.path.exists(dest) and not os.path.isdir(dest):
        module.fail_json(msg=f"dest {dest} exists and is not a directory.")
    config_dir = os.path.abspath(p["config_dir"]) if p["config_dir"] else default_config_dir()
    if p["config_dir"]:
        os.environ["KAGGLE_CONFIG_DIR"] = config_dir  # read by the kaggle package when it is imported
    credentials, secrets, cred_problem = find_credentials(config_dir)
    module.no_log_values.update(secrets)

    manifest_path = os.path.join(dest, MANIFEST_NAME)
    result = {
        "changed": False,
        "dest": dest,
        "source": source,
        "manifest": manifest_path,
        "files": [],
        "archive": None,
        "downloaded": False,
        "restored": [],
        "removed": [],
    }
    warnings = []
    manifest, problem = read_manifest(dest) if os.path.isdir(dest) else (None, None)
    if problem:
        warnings.append(problem)
    action, broken, reason = plan(module, dest, source, manifest)
    stale = stale_temp_dirs(dest)
    before = dump(manifest_summary(manifest))
    diff = {"before": before, "after": before, "before_header": manifest_path, "after_header": manifest_path}

    def finish(**extra):
        diff["after"] = extra.pop("after", diff["after"])
        removed = result["removed"] + extra.pop("removed", [])
        result.update(extra, removed=removed)
        if module._diff:
            result["diff"] = diff
        for w in warnings:
            module.warn(w)
        module.exit_json(**result)

    def unchanged(m, **extra):
        finish(
            msg=f"{source_label(source)}: {reason}.",
            files=[public_entry(e) for e in m["files"]],
            archive=public_entry(m["archive"]) if m.get("archive") else None,
            downloaded_at=m.get("downloaded_at"),
            **extra,
        )

    if action == "ok" and manifest.get("archive") and not check_entry(dest, manifest["archive"]):
        warnings.append(
            f"The kept archive {manifest['archive']['file']} is missing or changed. It only serves to "
            "restore extracted files without a download; use force=true to download it again."
        )
    if action == "ok" and not stale:
        unchanged(manifest)

    if module.check_mode:
        if action == "download":
            if credentials is None:
                warnings.append(no_credentials_message(config_dir, cred_problem))
            finish(
                changed=True,
                downloaded=True,
                removed=stale,
                after=dump({"source": source, "files": "(unknown until downloaded)"}),
                msg=f"Would download {source_label(source)} ({reason}).",
            )
        if action == "restore":
            finish(
                changed=True,
                restored=broken,
                removed=stale,
                files=[public_entry(e) for e in manifest["files"]],
                msg="Would restore {} from the kept archive.".format(", ".join(broken)),
            )
        unchanged(manifest, changed=True, removed=stale)

    if action == "download" and credentials is None:
        module.fail_json(msg=no_credentials_message(config_dir, cred_problem), **result)

    try:
        os.makedirs(dest, exist_ok=True)
        with dest_lock(dest):
            # Under the lock no other run of this module uses a temporary directory: whatever is left is stale.
            for name in stale_temp_dirs(dest):
                shutil.rmtree(os.path.join(dest, name), ignore_errors=True)
                result["removed"].append(name)
            # Another run may have completed the work while this one waited for the lock.
            manifest, problem = read_manifest(dest)
            action, broken, reason = plan(module, dest, source, manifest)
            if action == "ok":
                unchanged(manifest, changed=bool(result["removed"]))
            staging = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest)
            try:
                out = apply(module, dest, source, manifest, action, broken, config_dir, secrets, credentials, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finish(**out)
    except KaggleDatasetError as e:
        module.fail_json(msg=sanitize(e, secrets), **result)
    except zipfile.BadZipFile as e:
        module.fail_json(
            msg=sanitize(f"The archive is corrupt ({e}); re-run with force=true to download it again.", secrets),
            **result,
        )
    except OSError as e:
        module.fail_json(msg=sanitize(describe_error(e, source, {"dest": dest}), secrets), **result)
    except Exception as e:
        module.fail_json(
            msg=sanitize(f"Unexpected error for {source_label(source)}: {type(e).__name__}: {e}", secrets),
            exception=sanitize(traceback.format_exc(), secrets),
            **result,
        )


if __name__ == "__main__":
    main()
