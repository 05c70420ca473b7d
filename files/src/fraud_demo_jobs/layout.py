"""The data lake's key layout: the one place that spells a prefix of the bucket (design notes, "S3 layout").

    raw/<dataset>/<file>                          files exactly as fetched (bucket versioning keeps each upload)
    quarantine/<dataset>/<version>/<table>.csv    rejected rows with their reasons
    curated/<dataset>/<version>/<table>.parquet   typed, validated rows
    curated/<dataset>/<version>/manifest.json     written last: a version is complete when it exists
    curated/<dataset>/latest                      {"dataset", "version", "manifest"}: the newest complete version
    models/                                       MLflow's artifact store (proxied by the tracking server)
    registry/                                     backups of the registry database
    predictions/<model-version>/<dataset-version>/ batch scores: predictions.parquet, submission.csv, manifest.json
    inference/<date>/                             a sample of what the scoring service saw
    reports/drift/<run>/                          drift reports: report.html, report.json, summary.json (last)

Everything here is pure string work (no AWS calls), so the controller's scripts and tests import it too.
"""

from __future__ import annotations

import os

DEFAULT_DATASET = "ieee-fraud-detection"
DATASET_ENV = "FRAUD_DEMO_DATASET"
MANIFEST_NAME = "manifest.json"
LATEST_NAME = "latest"
PREDICTIONS_FILE = "predictions.parquet"  # TransactionID, fraud_probability
SUBMISSION_FILE = "submission.csv"  # Kaggle's TransactionID,isFraud
DRIFT_HTML = "report.html"  # Evidently's self-contained report
DRIFT_JSON = "report.json"  # Evidently's result as a dict
DRIFT_SUMMARY = "summary.json"  # written last: a drift report is complete when it exists
# Prefixes of the areas; each ends with "/" and none is spelled anywhere else.
RAW = "raw/"
CURATED = "curated/"
QUARANTINE = "quarantine/"
MODELS = "models/"
REGISTRY = "registry/"
PREDICTIONS = "predictions/"
INFERENCE = "inference/"
DRIFT_REPORTS = "reports/drift/"


def default_dataset() -> str:
    """The dataset name from FRAUD_DEMO_DATASET, else the Kaggle competition's."""
    return os.environ.get(DATASET_ENV) or DEFAULT_DATASET


def raw_prefix(dataset: str) -> str:
    return f"{RAW}{dataset}/"


def raw_key(dataset: str, file_name: str) -> str:
    return raw_prefix(dataset) + file_name


def curated_root(dataset: str) -> str:
    """curated/<dataset>/: every version of the dataset and its `latest` pointer."""
    return f"{CURATED}{dataset}/"


def curated_prefix(dataset: str, version: str) -> str:
    return f"{curated_root(dataset)}{version}/"


def curated_key(dataset: str, version: str, table: str) -> str:
    return f"{curated_prefix(dataset, version)}{table}.parquet"


def manifest_key(dataset: str, version: str) -> str:
    return curated_prefix(dataset, version) + MANIFEST_NAME


def latest_key(dataset: str) -> str:
    return curated_root(dataset) + LATEST_NAME


def quarantine_prefix(dataset: str, version: str) -> str:
    return f"{QUARANTINE}{dataset}/{version}/"


def quarantine_key(dataset: str, version: str, table: str) -> str:
    return f"{quarantine_prefix(dataset, version)}{table}.csv"


def latest_pointer(dataset: str, version: str) -> dict:
    """The body of curated/<dataset>/latest (stored as JSON)."""
    return {"dataset": dataset, "version": version, "manifest": manifest_key(dataset, version)}


def pointer_version(pointer: object, dataset: str) -> str | None:
    """The version a `latest` body names, or None when it is not a pointer of ours for this dataset."""
    if not isinstance(pointer, dict) or pointer.get("dataset") != dataset:
        return None
    version = pointer.get("version")
    if not isinstance(version, str) or not version or pointer.get("manifest") != manifest_key(dataset, version):
        return None
    return version


def version_of(key: str, dataset: str) -> str | None:
    """The version id in a key under curated/<dataset>/<version>/…, else None (the `latest` key included)."""
    root = curated_root(dataset)
    if not key.startswith(root):
        return None
    version, sep, _ = key[len(root) :].partition("/")
    return version if sep and version else None


def predictions_model_prefix(model_version: str) -> str:
    """predictions/<model-version>/: the batch scores of one model version, one folder per dataset version."""
    return f"{PREDICTIONS}{model_version}/"


def predictions_prefix(model_version: str, dataset_version: str) -> str:
    return f"{predictions_model_prefix(model_version)}{dataset_version}/"


def predictions_key(model_version: str, dataset_version: str, name: str) -> str:
    """predictions/<model-version>/<dataset-version>/<name>: PREDICTIONS_FILE, SUBMISSION_FILE or MANIFEST_NAME
    (written last: the scores of a pair are complete when it exists)."""
    return predictions_prefix(model_version, dataset_version) + name


def inference_prefix(date: str) -> str:
    """inference/<YYYY-MM-DD>/."""
    return f"{INFERENCE}{date}/"


def inference_key(date: str, name: str) -> str:
    """inference/<YYYY-MM-DD>/<name>.parquet: one flushed batch of the scoring service's sampled inputs."""
    return f"{inference_prefix(date)}{name}.parquet"


def drift_report_prefix(run: str) -> str:
    """reports/drift/<run>/: one drift report (DRIFT_HTML, DRIFT_JSON, then DRIFT_SUMMARY, written last)."""
    return f"{DRIFT_REPORTS}{run}/"


def drift_report_key(run: str, name: str) -> str:
    return drift_report_prefix(run) + name


def registry_key(name: str) -> str:
    return REGISTRY + name
