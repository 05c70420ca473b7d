"""Read the controller's Kaggle credential files for the kaggle_credentials role.

Usage: python3 read_controller_files.py KAGGLE_JSON_PATH ACCESS_TOKEN_PATH

Prints one JSON object: {"json": {...}, "token": {...}}. Each part has "exists", "mode" (octal string),
"open" (group/other may read or write it) and "problem" (what is wrong, "" if nothing; never a value); the
json part also has "username" and "key", the token part "token". The task that runs it has no_log: the
values appear only in the registered result. It never fails: every problem is reported in "problem", so
that a non-secret assert can show it.
"""

from __future__ import annotations

import json
import os
import stat
import sys


def _file_info(path: str) -> tuple[dict, str | None]:
    info = {"exists": False, "mode": "", "open": False, "problem": ""}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return info, None
    except OSError as e:
        info.update(exists=True, problem=f"cannot be examined ({e.strerror})")
        return info, None
    info.update(exists=True, mode=f"{stat.S_IMODE(st.st_mode):04o}", open=bool(st.st_mode & 0o077))
    if not stat.S_ISREG(st.st_mode):
        info["problem"] = "is not a regular file"
        return info, None
    try:
        with open(path, encoding="utf-8") as f:
            return info, f.read()
    except OSError as e:
        info["problem"] = f"cannot be read ({e.strerror})"
    except UnicodeDecodeError:
        info["problem"] = "is not UTF-8 text"
    return info, None


def _value_problem(name: str, value: object) -> str:
    if not isinstance(value, str):
        return f'has a "{name}" that is not a string'
    if not value.strip():
        return f'has an empty "{name}"'
    if len(value.split()) != 1:
        return f'has a "{name}" with whitespace inside'
    return ""


def read_json(path: str) -> dict:
    info, text = _file_info(path)
    info.update(username="", key="")
    if text is None:
        return info
    try:
        data = json.loads(text)
    except ValueError as e:
        # The decoder's message names a position, never the content.
        where = f" ({e.msg} at line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        info["problem"] = f"is not valid JSON{where}"
        return info
    if not isinstance(data, dict):
        info["problem"] = 'is not a JSON object like {"username": "...", "key": "..."}'
        return info
    for name in ("username", "key"):
        if name not in data:
            info["problem"] = f'has no "{name}"'
            return info
        problem = _value_problem(name, data[name])
        if problem:
            info["problem"] = problem
            return info
    info.update(username=data["username"].strip(), key=data["key"].strip())
    return info


def read_token(path: str) -> dict:
    info, text = _file_info(path)
    info["token"] = ""
    if text is None:
        return info
    token = text.strip()
    if not token:
        info["problem"] = "is empty"
    elif len(token.split()) != 1:
        info["problem"] = "has whitespace inside the token"
    else:
        info["token"] = token
    return info


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(json.dumps({"error": "usage: read_controller_files.py KAGGLE_JSON_PATH ACCESS_TOKEN_PATH"}))
        return 0
    print(json.dumps({"json": read_json(argv[1]), "token": read_token(argv[2])}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
