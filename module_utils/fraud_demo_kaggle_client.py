# Copyright: (c) fraud-demo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The kaggle package, contained: imported lazily (it authenticates, prints and may exit at import time), its
output kept off the module's stdout, its requests given a timeout, and its download retried and verified.

Part of the kaggle_dataset module.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import shutil
import sys
import tempfile
import time

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.fraud_demo_kaggle_credentials import no_credentials_message
from ansible.module_utils.fraud_demo_kaggle_errors import (
    KaggleDatasetError,
    TransientError,
    describe_error,
    http_status,
    is_transient,
    sanitize,
    source_label,
    truncated_message,
)
from ansible.module_utils.fraud_demo_zip import verify_zip


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
