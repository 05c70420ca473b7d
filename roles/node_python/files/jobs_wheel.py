#!/usr/bin/env python3
"""Build the jobs package's wheel on the controller, once per content of its sources.

    jobs_wheel.py --src files --cache .cache/jobs-wheel
    -> {"sha256": "<sources' hash>", "wheel": "<cache>/<hash>/fraud_demo_jobs-<v>-py3-none-any.whl", "built": true}

A wheel's bytes differ from build to build (zip timestamps), so the node decides whether to reinstall by the
SHA-256 of the sources (pyproject.toml and everything under src/ but caches and build metadata), which this
script prints. The wheel is built from a copy of exactly those files, so the hash describes what was built, and
kept under <cache>/<hash>/: a second call with unchanged sources builds nothing. Concurrent calls (several
hosts) are safe: each builds in its own temporary directory and the first rename wins.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Build leftovers and caches are not sources: they change without the code changing.
SKIP_DIRS = {"__pycache__", "build", "dist"}
SKIP_SUFFIXES = (".pyc", ".egg-info")


def source_files(src: Path) -> list[Path]:
    """pyproject.toml and every file under src/, relative to `src`, sorted."""
    found = [Path("pyproject.toml")]
    for root, dirs, files in os.walk(src / "src"):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(SKIP_SUFFIXES))
        found += [Path(root, f).relative_to(src) for f in files if not f.endswith(SKIP_SUFFIXES)]
    return sorted(found)


def sources_sha256(src: Path, files: list[Path]) -> str:
    """SHA-256 over each file's relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for rel in files:
        data = (src / rel).read_bytes()
        digest.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def cached_wheel(directory: Path) -> Path | None:
    wheels = sorted(directory.glob("*.whl")) if directory.is_dir() else []
    return wheels[0] if wheels else None


def build(src: Path, files: list[Path], target: Path) -> Path:
    """Build the wheel from a copy of `files` and move it into `target` (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        tree, out = Path(tmp, "tree"), Path(tmp, "out")
        for rel in files:
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, tree / rel)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        subprocess.run(
            [*pip, "wheel", "--no-deps", "--wheel-dir", str(out), str(tree)],
            check=True,
            stdout=sys.stderr,
        )
        try:
            out.rename(target)
        except OSError:  # another host's build of the same sources won the race
            if cached_wheel(target) is None:
                raise
    wheel = cached_wheel(target)
    if wheel is None:
        raise RuntimeError(f"pip wheel left no wheel in {target}")
    return wheel


def prune(cache: Path, keep: Path) -> None:
    """Remove the wheels of earlier sources: only the current one is ever installed."""
    for old in cache.iterdir():
        if old != keep and not old.name.startswith(".") and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="the Python project (pyproject.toml, src/)")
    parser.add_argument("--cache", type=Path, required=True, help="directory of the built wheels, one per hash")
    args = parser.parse_args(argv)
    files = source_files(args.src)
    sha256 = sources_sha256(args.src, files)
    target = args.cache / sha256
    wheel = cached_wheel(target)
    built = wheel is None
    if wheel is None:
        wheel = build(args.src, files, target)
        prune(args.cache, keep=target)
    print(json.dumps({"sha256": sha256, "wheel": str(wheel.resolve()), "built": built}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
