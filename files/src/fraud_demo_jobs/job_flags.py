"""The flags and summary fields the lake and registry jobs share (ingest, train, score, drift): one definition
each, with its environment variable and default, so a flag means the same in every job."""

from __future__ import annotations

import argparse

from . import layout
from . import tracking as T
from .cli import env
from .gate import CHAMPION


def add_lake_flags(p: argparse.ArgumentParser, dataset_help: str = "dataset name") -> None:
    """--bucket and --dataset."""
    p.add_argument("--bucket", default=env("FRAUD_DEMO_BUCKET"), help="data-lake bucket (env FRAUD_DEMO_BUCKET)")
    p.add_argument(
        "--dataset",
        default=layout.default_dataset(),
        help=f"{dataset_help} (env {layout.DATASET_ENV}; {layout.DEFAULT_DATASET})",
    )


def add_registry_flags(p: argparse.ArgumentParser) -> None:
    """--tracking-uri and --model-name."""
    p.add_argument(
        "--tracking-uri", default=env(T.TRACKING_URI_ENV), help=f"MLflow tracking server URL (env {T.TRACKING_URI_ENV})"
    )
    p.add_argument(
        "--model-name",
        default=env("FRAUD_DEMO_MODEL_NAME", T.DEFAULT_MODEL_NAME),
        help=f"registered model (env FRAUD_DEMO_MODEL_NAME; {T.DEFAULT_MODEL_NAME})",
    )


def add_model_choice(p: argparse.ArgumentParser, use: str) -> None:
    """--alias (champion when neither is given) or --model-version: which registered version the job ``use``s."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias", default=None, help=f"{use} the version this alias names ({CHAMPION})")
    which.add_argument("--model-version", default=None, help=f"{use} this version number instead of an alias")


def run_fields(
    bucket: str | None,
    job_run_id: str,
    log_stream: str | None,
    phase_seconds: dict[str, float],
    seconds: float,
    msg: str | None,
) -> dict:
    """The last fields of a job's JSON summary: where it ran and for how long; ``failed`` and ``msg`` on failure."""
    out = {
        "bucket": bucket,
        "job_run_id": job_run_id,
        "log_stream": log_stream,
        "phase_seconds": {k: round(v, 3) for k, v in phase_seconds.items()},
        "seconds": round(seconds, 3),
    }
    if msg is not None:
        out["failed"] = True
        out["msg"] = msg
    return out
