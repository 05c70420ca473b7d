# Copyright: (c) fraud-demo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a failure of the kaggle package means for the user: one message per failure, naming the fix.

Part of the kaggle_dataset module (library/kaggle_dataset.py); it also owns the module's exception types and
the scrubbing of secrets and signed URLs from every message.
"""

from __future__ import annotations

import errno
import json
import re

TOKEN_URL = "https://www.kaggle.com/settings/api"  # noqa: S105 - a web page, not a secret


class KaggleDatasetError(Exception):
    """A failure with a message meant for the user."""


class TransientError(KaggleDatasetError):
    """A failure worth retrying (network, truncated download, 429, 5xx)."""


URL_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")


def sanitize(text, secrets=()):
    text = URL_QUERY.sub(r"\1?<redacted>", str(text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


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
