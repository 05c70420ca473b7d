"""Offline generator of an IEEE-CIS-shaped fraud dataset (``fraud-demo-generate``): the job and its files.

Writes the five CSV files of Kaggle's ``ieee-fraud-detection.zip`` (train/test transaction and identity tables and
``sample_submission.csv``) with the documented columns, column order, pandas dtypes, categorical domains, ID and
time ranges and realistic missingness, so that every later stage of the pipeline can run without a Kaggle
account.  The values are synthetic; the fraud label follows a planted, documented model whose true
probabilities are known, so the best achievable ROC AUC (the *oracle AUC*) is known too.

The parts, one concern each:

- ``synthetic_model``: the planted model's parameters and its description (shares, effects, missingness);
- ``synthetic_world``: the row-level world drawn from it once (``build_world``), and the oracle AUC;
- ``synthetic_csv``: chunks of CSV text in the contract's columns, kinds and domains (``ieee_contract``);
- this module: which files, atomic writing, the idempotence sidecar, the free-space check and the CLI.

See ``SYNTHETIC.md`` next to this file.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

from . import ieee_contract as S
from . import synthetic_csv
from .synthetic_model import FULL_TRAIN_ROWS
from .synthetic_world import World, build_world

GENERATOR_VERSION = "1"
# The drifted batch's own version (in the sidecar of a drifted batch only): a change to it regenerates drifted
# batches and leaves the normal ones, whose bytes are pinned by GENERATOR_VERSION, alone.
DRIFT_VERSION = "2"
JOB = "generate"
SIDECAR = ".fraud-demo-synthetic.json"
MIN_ROWS = 1000
MAX_ROWS = 20_000_000
# --scale K: K times the rows over K times the months. 0.5 (91 train days) still leaves the train job's default split
# (30 days holdout, 7 gap, 14 validation) 40 days to learn from.
MIN_SCALE = 0.5
MAX_SCALE = 16.0
CHUNK_ROWS = 32768

# The contract's tables in the order the generator writes (and summarises) them.
WRITE_ORDER = ("train_transaction", "train_identity", "test_transaction", "test_identity", "sample_submission")
if sorted(WRITE_ORDER) != sorted(t.name for t in S.TABLES):
    raise ImportError(f"the generator writes {WRITE_ORDER}, the contract has {[t.name for t in S.TABLES]}")
FILE_NAMES = tuple(S.BY_NAME[t].file for t in WRITE_ORDER)


class GenerateError(Exception):
    """A failure with a message meant for the user."""


def _plan(w: World):
    """(table spec, chunk writer, part, rows) per file, in WRITE_ORDER."""
    sz = w.sizes
    plan = {
        "train_transaction": (synthetic_csv.transaction_chunk, "train", sz.train),
        "train_identity": (synthetic_csv.identity_chunk, "train", len(w.identity_rows["train"])),
        "test_transaction": (synthetic_csv.transaction_chunk, "test", sz.test),
        "test_identity": (synthetic_csv.identity_chunk, "test", len(w.identity_rows["test"])),
        "sample_submission": (synthetic_csv.submission_chunk, "test", sz.test),
    }
    return [(S.BY_NAME[name], *plan[name]) for name in WRITE_ORDER]


def _write_file(pool, out: str, spec: S.TableSpec, fn, w: World, part: str, nrows: int, temps: list) -> int:
    name = spec.file
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
    temps.append(tmp)
    os.fchmod(fd, 0o666 & ~_UMASK)
    with os.fdopen(fd, "wb") as f:
        f.write((",".join(S.raw_header(spec)) + "\n").encode())
        bounds = [(lo, min(lo + CHUNK_ROWS, nrows)) for lo in range(0, nrows, CHUNK_ROWS)]
        pending = []
        for i, (lo, hi) in enumerate(bounds):
            pending.append(pool.submit(fn, w, part, lo, hi, i))
            if len(pending) >= 3:
                f.write(pending.pop(0).result())
        for fut in pending:
            f.write(fut.result())
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    os.replace(tmp, os.path.join(out, name))
    temps.remove(tmp)
    return size


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _read_sidecar(out: str) -> dict | None:
    try:
        with open(os.path.join(out, SIDECAR), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: str, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".sidecar.", suffix=".tmp", dir=os.path.dirname(path))
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _up_to_date(out: str, rows: int, seed: int, drift: bool, scale: float) -> dict | None:
    meta = _read_sidecar(out)
    if not meta or meta.get("status") != "complete":
        return None
    if (meta.get("rows"), meta.get("seed"), meta.get("generator_version")) != (rows, seed, GENERATOR_VERSION):
        return None
    if meta.get("scale", 1) != scale:  # sidecars from before --scale describe 1x
        return None
    if meta.get("drift", False) != drift:  # sidecars from before --drift describe a normal batch
        return None
    if drift and meta.get("drift_version") != DRIFT_VERSION:
        return None
    for entry in meta.get("files", []):
        path = os.path.join(out, entry["name"])
        if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"]:
            return None
    if sorted(e["name"] for e in meta.get("files", [])) != sorted(FILE_NAMES):
        return None
    return meta


def estimate_bytes(rows: int) -> int:
    """Rough output size (about 2.15 kB per train row over all five files) for the free-space check."""
    return int(rows * 2200) + 1_000_000


def _checked_scale(rows: int, scale: float) -> float:
    """The scale, whole numbers as int (the sidecar and summary say 2, not 2.0); GenerateError when out of range."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not MIN_SCALE <= scale <= MAX_SCALE:
        raise GenerateError(f"--scale must be a number between {MIN_SCALE:g} and {MAX_SCALE:g}, got {scale!r}")
    total = round(rows * scale)
    if not MIN_ROWS <= total <= MAX_ROWS:
        raise GenerateError(
            f"--rows {rows} x --scale {scale:g} = {total} train rows; it must be between {MIN_ROWS} and {MAX_ROWS}"
        )
    return int(scale) if float(scale).is_integer() else float(scale)


def generate(
    out: str,
    rows: int = FULL_TRAIN_ROWS,
    seed: int = 42,
    force: bool = False,
    workers: int = 2,
    drift: bool = False,
    scale: float = 1.0,
) -> dict:
    """Generate the five files into ``out``; returns the summary dict (see module docstring). ``drift``: the later,
    drifted batch (see SYNTHETIC.md) instead of the normal one. ``scale``: ``scale`` times the rows over ``scale``
    times the train and test periods (1 = the real size and span)."""
    t0 = time.monotonic()
    if not isinstance(rows, int) or rows < MIN_ROWS or rows > MAX_ROWS:
        raise GenerateError(f"--rows must be an integer between {MIN_ROWS} and {MAX_ROWS}, got {rows!r}")
    if not isinstance(seed, int) or seed < 0:
        raise GenerateError(f"--seed must be a non-negative integer, got {seed!r}")
    scale = _checked_scale(rows, scale)
    out = os.path.abspath(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise GenerateError(f"cannot create output directory {out}: {e.strerror or e}") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise GenerateError(f"output directory {out} is not writable")

    if not force:
        meta = _up_to_date(out, rows, seed, drift, scale)
        if meta is not None:
            return _summary(out, False, meta, time.monotonic() - t0)
        foreign = [f for f in FILE_NAMES if os.path.exists(os.path.join(out, f))]
        if foreign and _read_sidecar(out) is None:
            raise GenerateError(
                f"{out} already holds {', '.join(foreign)} not written by this generator (no {SIDECAR}); "
                "refusing to overwrite them without --force"
            )
    free = shutil.disk_usage(out).free
    need = estimate_bytes(round(rows * scale))
    if free < need:
        raise GenerateError(
            f"not enough disk space in {out}: about {need // 2**20} MiB needed, {free // 2**20} MiB free"
        )

    sidecar = os.path.join(out, SIDECAR)
    base = {"generator_version": GENERATOR_VERSION, "rows": rows, "seed": seed, "drift": drift, "scale": scale}
    if drift:
        base["drift_version"] = DRIFT_VERSION
    temps: list[str] = []
    try:
        _write_json_atomic(sidecar, {**base, "status": "in-progress"})
        w = build_world(rows, seed, drift, scale)
        files = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for spec, fn, part, nrows in _plan(w):
                size = _write_file(pool, out, spec, fn, w, part, nrows, temps)
                files.append({"name": spec.file, "rows": nrows, "bytes": size})
        meta = {
            **base,
            "status": "complete",
            "files": files,
            "oracle_auc": round(w.oracle_auc, 6),
            "oracle_auc_last20pct": round(w.oracle_auc_last20pct, 6),
            "fraud_rate": round(w.fraud_rate, 6),
        }
        _write_json_atomic(sidecar, meta)
    except OSError as e:
        if e.errno == 28:
            raise GenerateError(f"disk full while writing to {out}; partial files removed") from e
        raise GenerateError(f"writing to {out} failed: {e}") from e
    finally:
        for tmp in temps:
            _unlink(tmp)
    return _summary(out, True, meta, time.monotonic() - t0)


def _summary(out: str, changed: bool, meta: dict, seconds: float) -> dict:
    return {
        "job": JOB,
        "changed": changed,
        "out": out,
        "rows": meta["rows"],
        "seed": meta["seed"],
        "drift": meta.get("drift", False),
        "scale": meta.get("scale", 1),
        "generator_version": meta["generator_version"],
        "files": meta["files"],
        "fraud_rate": meta["fraud_rate"],
        "oracle_auc": meta["oracle_auc"],
        "oracle_auc_last20pct": meta["oracle_auc_last20pct"],
        "seconds": round(seconds, 2),
    }


# ---------------------------------------------------------------------------------------------------- CLI


def _env_int(name: str, default: int) -> int | str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fraud-demo-generate",
        description="Write an offline, IEEE-CIS-shaped synthetic fraud dataset (the five CSV files of Kaggle's "
        "ieee-fraud-detection.zip) with a planted, documented fraud signal. Idempotent: does nothing when the "
        "files for the same --rows/--seed are already there. Prints one JSON summary line last.",
    )
    parser.add_argument(
        "--out",
        default=os.environ.get("FRAUD_DEMO_SYNTHETIC_OUT"),
        help="output directory (env FRAUD_DEMO_SYNTHETIC_OUT)",
    )
    parser.add_argument(
        "--rows",
        default=_env_int("FRAUD_DEMO_SYNTHETIC_ROWS", FULL_TRAIN_ROWS),
        help=f"train transaction rows, >= {MIN_ROWS}; test rows scale along (default {FULL_TRAIN_ROWS} = full scale; "
        "env FRAUD_DEMO_SYNTHETIC_ROWS)",
    )
    parser.add_argument(
        "--seed",
        default=_env_int("FRAUD_DEMO_SYNTHETIC_SEED", 42),
        help="random seed (default 42; env FRAUD_DEMO_SYNTHETIC_SEED)",
    )
    parser.add_argument(
        "--drift",
        action="store_true",
        default=os.environ.get("FRAUD_DEMO_SYNTHETIC_DRIFT", "") in ("1", "true", "yes"),
        help="write the later, drifted batch instead: after the normal batch's test period, amounts shifted up, "
        "new e-mail domains and a new fraud pattern (env FRAUD_DEMO_SYNTHETIC_DRIFT=1)",
    )
    parser.add_argument(
        "--scale",
        default=os.environ.get("FRAUD_DEMO_SYNTHETIC_SCALE") or "1",
        help=f"K times the data as K times the months: K x --rows train rows over K x 182 days and the test period "
        f"(K x 183 days) after it, same rows per day; {MIN_SCALE:g}..{MAX_SCALE:g}, fractions allowed (default 1 = the "
        "real size and span; env FRAUD_DEMO_SYNTHETIC_SCALE)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date; overwrite foreign files")
    args = parser.parse_args(argv)

    def fail(msg: str, code: int) -> int:
        print(f"fraud-demo-generate: error: {msg}", file=sys.stderr)
        print(json.dumps({"job": JOB, "changed": False, "failed": True, "msg": msg}))
        return code

    if not args.out:
        return fail("--out DIR (or FRAUD_DEMO_SYNTHETIC_OUT) is required", 2)
    try:
        rows, seed = int(args.rows), int(args.seed)
    except (TypeError, ValueError):
        return fail(f"--rows and --seed must be integers, got {args.rows!r} and {args.seed!r}", 2)
    try:
        scale = float(args.scale)
    except ValueError:
        return fail(f"--scale must be a number, got {args.scale!r}", 2)
    try:
        summary = generate(args.out, rows=rows, seed=seed, force=args.force, drift=args.drift, scale=scale)
    except GenerateError as e:
        return fail(str(e), 1)
    except MemoryError:
        return fail("out of memory", 1)
    except Exception as e:  # a bug: keep the traceback, still end with the summary line
        traceback.print_exc()
        return fail(f"unexpected error: {type(e).__name__}: {e}", 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
