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

import base64
import contextlib
import datetime
import errno
import fcntl
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import zipfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

MANIFEST_NAME = ".kaggle_dataset_manifest.json"
LOCK_NAME = ".kaggle_dataset.lock"
TMP_PREFIX = ".kaggle_dataset-tmp-"
MANIFEST_VERSION = 1
CHUNK = 1024 * 1024
RESERVED = (MANIFEST_NAME, LOCK_NAME)
TOKEN_URL = "https://www.kaggle.com/settings/api"  # noqa: S105 - a web page, not a secret


class KaggleDatasetError(Exception):
    """A failure with a message meant for the user."""


class TransientError(KaggleDatasetError):
    """A failure worth retrying (network, truncated download, 429, 5xx)."""


# --------------------------------------------------------------------------------------------- files


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


# --------------------------------------------------------------------------------------------- output


@contextlib.contextmanager
def captured_output():
    """Swallow everything printed by the kaggle package, at the Python and the file-descriptor level.

    Ansible reads the module's JSON result from stdout, so nothing else may reach it.
    """
    buf = io.StringIO()
    saved = []
    sink = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        sink = tempfile.TemporaryFile()
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(sink.fileno(), fd)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield buf
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if sink is not None:
            sink.close()


@contextlib.contextmanager
def default_request_timeout(seconds):
    """Give every `requests` call made by the kaggle package a timeout (it sets none on its API calls)."""
    try:
        import requests
    except ImportError:
        yield
        return
    original = requests.Session.send

    def send(self, request, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = seconds
        return original(self, request, **kwargs)

    requests.Session.send = send
    try:
        yield
    finally:
        requests.Session.send = original


URL_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")


def sanitize(text, secrets=()):
    text = URL_QUERY.sub(r"\1?<redacted>", str(text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


# --------------------------------------------------------------------------------------------- credentials


def default_config_dir():
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return configured
    home_dir = os.path.join(os.path.expanduser("~"), ".kaggle")
    if sys.platform.startswith("linux") and not os.path.exists(home_dir):
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return os.path.join(xdg, "kaggle")
    return home_dir


def _read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def find_credentials(config_dir):
    """Look for credentials the way the kaggle package does, without importing it.

    Return (description or None, secrets, problem or None).
    """
    secrets = []
    found = None
    problem = None
    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        value = _read_text(token) if os.path.isfile(token) else token
        secrets.append(value)
        found = found or "the KAGGLE_API_TOKEN environment variable"
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if key:
        secrets.append(key)
        if user:
            secrets.append(base64.b64encode((f"{user}:{key}").encode()).decode())
            found = found or "the KAGGLE_USERNAME/KAGGLE_KEY environment variables"
    config = os.path.join(config_dir, "kaggle.json")
    if os.path.exists(config):
        try:
            with open(config) as f:
                data = json.load(f)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
        except (OSError, ValueError, TypeError) as e:
            data = {}
            problem = f"{config} is not readable JSON ({type(e).__name__})"
        for name in ("key", "token"):
            if isinstance(data.get(name), str):
                secrets.append(data[name])
        if data.get("username") and data.get("key"):
            secrets.append(base64.b64encode(("{}:{}".format(data["username"], data["key"])).encode()).decode())
            found = found or config
        elif not problem:
            problem = f'{config} lacks "username" and "key"'
    kaggle_home = os.path.join(os.path.expanduser("~"), ".kaggle")
    for name in ("access_token", "access_token.txt"):
        value = _read_text(os.path.join(kaggle_home, name))
        if value:
            secrets.append(value)
            found = found or os.path.join(kaggle_home, name)
    creds = os.path.join(kaggle_home, "credentials.json")
    if os.path.isfile(creds):
        try:
            with open(creds) as f:
                data = json.load(f)
            secrets.extend(v for k, v in data.items() if isinstance(v, str) and ("token" in k or "key" in k))
            found = found or creds
        except (OSError, ValueError, AttributeError):
            pass
    return found, [s for s in secrets if s and len(s) >= 4], problem


def no_credentials_message(config_dir, problem=None):
    msg = "No Kaggle credentials found on the managed node"
    if problem:
        msg += f" ({problem})"
    return (
        msg + f". Create an API token at {TOKEN_URL} and either save it as {config_dir}/kaggle.json "
        '({"username": "<user>", "key": "<key>"}, mode 0600, owned by the remote user), or set the environment '
        "variables KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN (or save the token to "
        "~/.kaggle/access_token), for example with the task keyword 'environment'; or point the config_dir option "
        "at the directory holding kaggle.json."
    )


# --------------------------------------------------------------------------------------------- kaggle errors


def error_body(exc):
    """The JSON body Kaggle sent with an error ({"code": 403, "message": "..."}), or {}."""
    response = getattr(exc, "response", None)
    body = getattr(exc, "body", None)  # kaggle.rest.ApiException (kaggle < 1.7)
    if response is not None and hasattr(response, "headers"):
        try:
            if "json" in response.headers.get("Content-Type", ""):
                body = response.text
        except Exception:
            body = None
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def http_status(exc):
    """HTTP status of an error from kaggle 2.x/1.7 (requests.HTTPError) or kaggle < 1.7 (kaggle.rest.ApiException)."""
    code = error_body(exc).get("code")
    if isinstance(code, int) and code >= 400:
        return code  # kagglesdk raises on a JSON body with "code" >= 400 whatever the HTTP status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "status", None)
    try:
        return int(status)
    except (TypeError, ValueError):
        return None


def kaggle_message(exc):
    """The message Kaggle sent with an error, or the exception text."""
    message = error_body(exc).get("message")
    if message:
        return str(message)
    return str(exc).strip() or type(exc).__name__


def _exception_chain(exc):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def is_transient(exc):
    if isinstance(exc, TransientError):
        return True
    status = http_status(exc)
    if status is not None:
        return status == 429 or status >= 500
    names = {type(e).__name__ for e in _exception_chain(exc)}
    return bool(
        names
        & {
            "ConnectionError",
            "Timeout",
            "ConnectTimeout",
            "ReadTimeout",
            "ChunkedEncodingError",
            "ProtocolError",
            "IncompleteRead",
            "ReadTimeoutError",
            "NewConnectionError",
            "MaxRetryError",
            "RemoteDisconnected",
            "ConnectionResetError",
        }
    )


def describe_error(exc, source, ctx):
    """One clear message per failure, naming the fix."""
    label = source_label(source)
    for e in _exception_chain(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            need = ctx.get("expected_size")
            hint = (
                (f" The archive is {need} bytes and extracting needs room for the archive plus the extracted files.")
                if need
                else ""
            )
            return (
                f"No space left on device while downloading {label} into {ctx['dest']}. Free disk space or "
                f"choose a dest on a larger filesystem, then re-run.{hint} Nothing was changed in the destination."
            )
    status = http_status(exc)
    message = kaggle_message(exc)
    if status == 401:
        return (
            "Kaggle rejected the credentials from {} (HTTP 401 Unauthorized: {}). The API key or token is wrong, "
            "expired or revoked: create a new token at {} and update kaggle.json / KAGGLE_KEY / "
            "KAGGLE_API_TOKEN on the managed node.".format(ctx.get("credentials"), message, TOKEN_URL)
        )
    if status == 403:
        if source["type"] == "competition":
            return (
                "Kaggle refused the download of competition {!r} (HTTP 403: {}). The account behind the "
                "credentials must accept the competition's rules: accept the rules at "
                "https://www.kaggle.com/competitions/{}/rules then re-run.".format(
                    source["name"], message, source["name"]
                )
            )
        return (
            "Kaggle refused the download of dataset {!r} (HTTP 403: {}). The dataset is private or the account "
            "lacks access: check https://www.kaggle.com/datasets/{} while logged in as that account.".format(
                source["name"], message, source["name"]
            )
        )
    if status == 404:
        if source["type"] == "competition":
            return (
                "Kaggle competition {!r} was not found (HTTP 404: {}). Check the competition option: it is the "
                "slug in https://www.kaggle.com/competitions/<slug>.".format(source["name"], message)
            )
        return (
            "Kaggle dataset {!r} was not found (HTTP 404: {}). Check the dataset option: it is owner/slug as in "
            "https://www.kaggle.com/datasets/<owner>/<slug>.".format(source["name"], message)
        )
    if status == 429:
        return f"Kaggle rate-limited the download of {label} (HTTP 429: {message}). Wait a few minutes, then re-run."
    if status is not None and status >= 500:
        return f"Kaggle had a server error downloading {label} (HTTP {status}: {message}). Re-run later."
    if status is not None:
        return f"Kaggle answered HTTP {status} downloading {label}: {message}"
    if isinstance(exc, KaggleDatasetError):
        return str(exc)
    names = {type(e).__name__ for e in _exception_chain(exc)}
    if names & {"ChunkedEncodingError", "ProtocolError", "IncompleteRead"} or "does not match expected size" in str(
        exc
    ):
        return truncated_message(label, ctx)
    if names & {"Timeout", "ConnectTimeout", "ReadTimeout", "ReadTimeoutError"}:
        return (
            "Timed out after {}s talking to Kaggle while downloading {} ({}). Check the node's network/proxy, or "
            "raise the timeout option, then re-run.".format(ctx.get("timeout"), label, message)
        )
    if names & {"ConnectionError", "NewConnectionError", "MaxRetryError", "RemoteDisconnected", "ConnectionResetError"}:
        return (
            f"Could not connect to Kaggle while downloading {label} ({message}). Check the node's network "
            "access to https://www.kaggle.com (HTTPS_PROXY if it needs a proxy), then re-run."
        )
    if isinstance(exc, OSError):
        return "Could not write the download for {} under {}: {}".format(label, ctx["dest"], message)
    return f"Downloading {label} failed: {type(exc).__name__}: {message}"


def truncated_message(label, ctx):
    got, expected = ctx.get("received_size"), ctx.get("expected_size")
    amount = ""
    if got and expected:
        amount = f" (received {got} of {expected} bytes)"
    elif expected:
        amount = f" (expected {expected} bytes)"
    return (
        f"The download of {label} was truncated: the connection closed before the whole archive "
        f"arrived{amount}. The partial data was discarded and nothing was changed in the destination; "
        "re-run to download it again (raise retries if the network is unreliable)."
    )


def source_label(source):
    return "{} {}".format(source["type"], source["name"])


# --------------------------------------------------------------------------------------------- kaggle package


def load_kaggle_api(module, config_dir, secrets):
    """Import kaggle lazily (it authenticates, prints and may exit at import time) and return an authenticated API."""
    if module.params["config_dir"]:
        os.environ["KAGGLE_CONFIG_DIR"] = config_dir
    import_error = None
    with captured_output():
        try:
            import kaggle  # noqa: F401  pylint: disable=unused-import
        except SystemExit:
            pass  # kaggle 2.x without credentials: print_auth_help(); exit(1)
        except ImportError as e:
            import_error = e
        except Exception:  # noqa: S110 - kaggle 1.7 raises IOError without credentials; see authenticate()
            pass
        extended = sys.modules.get("kaggle.api.kaggle_api_extended")
        if extended is None:
            # Never exit inside captured_output(): the result would go to the swallowed stdout.
            raise KaggleDatasetError(
                missing_required_lib("kaggle", url="https://pypi.org/project/kaggle/")
                + (f" Import error: {sanitize(import_error, secrets)}" if import_error else "")
            )
        api = extended.KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleDatasetError(no_credentials_message(config_dir)) from None
        except (OSError, ValueError, KeyError) as e:
            if http_status(e) is not None:
                raise
            raise KaggleDatasetError(no_credentials_message(config_dir, sanitize(e, secrets))) from None
    version = getattr(sys.modules.get("kaggle"), "__version__", None) or getattr(
        extended.KaggleApi, "__version__", None
    )
    if not version:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("kaggle")
        except Exception:
            version = "unknown"
    return api, version


def instrument_download(api, ctx, timeout, retries):
    """Wrap the API's download_file to learn the expected size and to pass timeout/retries where supported.

    Both kaggle 1.7 and 2.x call self.download_file(response, outfile, http_client, quiet, resume).
    Return True when the package retries (and resumes) by itself.
    """
    original = api.download_file
    try:
        params = inspect.signature(original).parameters
    except (TypeError, ValueError):
        params = {}
    extra = {}
    if "max_retries" in params:
        extra["max_retries"] = retries
    if "timeout" in params:
        extra["timeout"] = timeout

    def download_file(response, outfile, *args, **kwargs):
        length = getattr(response, "headers", {}).get("Content-Length")
        ctx["expected_size"] = int(length) if length and str(length).isdigit() else None
        ctx["outfile"] = outfile
        for name, value in extra.items():
            kwargs.setdefault(name, value)
        return original(response, outfile, *args, **kwargs)

    api.download_file = download_file
    return "max_retries" in extra


def download_archive(api, source, target, ctx):
    """Download into the empty directory `target`; return the archive's path."""
    ctx.pop("outfile", None)
    ctx.pop("expected_size", None)
    if source["type"] == "competition":
        api.competition_download_files(source["name"], path=target, force=True, quiet=True)
    else:
        api.dataset_download_files(source["name"], path=target, force=True, quiet=True)
    outfile = ctx.get("outfile")
    if not outfile or not os.path.isfile(outfile):
        found = [os.path.join(target, n) for n in os.listdir(target) if not n.endswith(".kaggle-partial")]
        if len(found) != 1:
            raise KaggleDatasetError(f"The kaggle package reported success but wrote no single archive into {target}.")
        outfile = found[0]
    size = os.path.getsize(outfile)
    ctx["received_size"] = size
    expected = ctx.get("expected_size")
    if expected is not None and size != expected:
        raise TransientError(truncated_message(source_label(source), ctx))
    return outfile


# --------------------------------------------------------------------------------------------- module logic


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


def run_download(module, source, config_dir, secrets, credentials, staging):
    """Download and verify the archive into `staging`; return (archive path, kaggle version)."""
    p = module.params
    ctx = {"dest": os.path.dirname(staging), "timeout": p["timeout"], "credentials": credentials}
    try:
        with default_request_timeout(p["timeout"]):
            api, version = load_kaggle_api(module, config_dir, secrets)
    except KaggleDatasetError:
        raise
    except Exception as e:
        raise KaggleDatasetError(sanitize(describe_error(e, source, ctx), secrets)) from None
    package_retries = instrument_download(api, ctx, p["timeout"], p["retries"])
    attempts = 1 if package_retries else p["retries"] + 1
    for attempt in range(1, attempts + 1):
        target = os.path.join(staging, f"download-{attempt}")
        os.mkdir(target)
        try:
            with captured_output(), default_request_timeout(p["timeout"]):
                archive = download_archive(api, source, target, ctx)
            verify_zip(archive)
            return archive, version
        except Exception as e:
            outfile = ctx.get("outfile")
            if outfile and os.path.isfile(outfile):
                ctx["received_size"] = os.path.getsize(outfile)
            shutil.rmtree(target, ignore_errors=True)
            if attempt < attempts and is_transient(e):
                time.sleep(min(2**attempt, 30))
                continue
            raise KaggleDatasetError(sanitize(describe_error(e, source, ctx), secrets)) from None


def apply(module, dest, source, manifest, action, broken, config_dir, secrets, credentials, staging):
    """Download (or restore from the kept archive) and install; return the result fields."""
    p = module.params
    if action == "restore":
        archive_path = os.path.join(dest, manifest["archive"]["file"])
        downloaded_at, version = manifest.get("downloaded_at"), manifest.get("kaggle_version")
    else:
        archive_path, version = run_download(module, source, config_dir, secrets, credentials, staging)
        downloaded_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
