"""Read the sandbox's environment file (.sandbox/env, written by scripts/sandbox.sh up) into a dict.

Shared by the end-to-end tests (tests/sandbox/conftest.py) and the benchmarks (bench/).
"""

import shlex
from pathlib import Path


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of the file's `export NAME=value` lines (shell-quoted values unquoted)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env
