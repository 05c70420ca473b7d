# Copyright: (c) fraud-demo contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Where the kaggle package finds credentials, found the same way without importing it (importing it
authenticates, prints and may exit), plus the secrets to scrub from output. Part of the kaggle_dataset module.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from ansible.module_utils.fraud_demo_kaggle_errors import TOKEN_URL


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
