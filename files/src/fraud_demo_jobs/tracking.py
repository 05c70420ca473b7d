"""The jobs' side of MLflow: the node's tracking server, one experiment of runs and one registered model.

Everything goes through the server's REST API (artifacts too: the server proxies them to
``s3://<bucket>/models/``), so a job needs no S3 rights for models. Runs of ours carry ``fraud_demo.*`` tags;
the registered model's aliases (``fraud_demo_jobs.gate``) say what is served.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request

from .errors import JobError

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_EXPERIMENT = "fraud-demo"
DEFAULT_MODEL_NAME = "fraud-detector"
# Run and model-version tags of ours.
TAG_JOB = "fraud_demo.job"
TAG_TRAINING_KEY = "fraud_demo.training_key"
TAG_DATASET = "fraud_demo.dataset"
TAG_DATASET_VERSION = "fraud_demo.dataset_version"
TAG_CODE_VERSION = "fraud_demo.code_version"
TAG_RAW_VERSIONS = "fraud_demo.raw_version_ids"
TAG_MODEL_VERSION = "fraud_demo.model_version"
TAG_DECISION = "fraud_demo.decision"
TAG_REASON = "fraud_demo.reason"
TAG_FAILURE = "fraud_demo.failure"
HOW_TO_START = (
    "start it on the node (sudo systemctl start fraud-demo-mlflow; journalctl -u fraud-demo-mlflow says why it "
    "stopped) or run playbooks/train.yml, which installs and starts it"
)


def client_defaults() -> None:
    """Fail in seconds, not minutes, when the server is gone: MLflow's client retries 7 times with backoff 2
    (about 4 minutes) by default. A user's own MLFLOW_* settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    # A job's output is its event lines and the JSON summary, not progress bars and run URLs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def check_server(uri: str, timeout: float = 5.0) -> None:
    """GET <uri>/health, before anything is read or written; a JobError naming how to start the server."""
    if not uri.startswith(("http://", "https://")):
        raise JobError(f"tracking URI {uri!r} is not an http(s) URL of an MLflow server (--tracking-uri)")
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:  # noqa: S310 (http only)
            body = r.read(64).decode("utf-8", "replace").strip()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise JobError(f"the MLflow tracking server at {uri} does not answer ({reason}): {HOW_TO_START}") from e
    if body != "OK":
        raise JobError(f"{uri}/health answered {body!r}, not an MLflow tracking server's OK: check --tracking-uri")


def server_error(e: BaseException, uri: str, what: str) -> JobError:
    """A JobError for an MLflow client exception raised while doing ``what``."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "Max retries exceeded" in text or "Connection refused" in text or "NewConnectionError" in text:
        return JobError(f"{what}: the MLflow tracking server at {uri} stopped answering: {HOW_TO_START}")
    return JobError(f"{what}: MLflow: {text}")


class Tracking:
    """One tracking server (and its registry) seen through MlflowClient; every call raises JobError."""

    def __init__(self, uri: str):
        client_defaults()
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (KeyboardInterrupt, JobError):
            raise
        except Exception as e:  # MlflowException, requests' errors: the client's failures have no common base
            raise server_error(e, self.uri, what) from e

    def experiment_id(self, name: str, create: bool) -> str | None:
        """The experiment's id; created when ``create`` (None when missing and not created)."""
        exp = self.call(f"GetExperimentByName {name}", self.client.get_experiment_by_name, name)
        if exp is not None:
            if exp.lifecycle_stage != "active":
                raise JobError(
                    f"MLflow experiment {name} is deleted: restore it in the MLflow UI, or pass --experiment NAME"
                )
            return exp.experiment_id
        if not create:
            return None
        return self.call(f"CreateExperiment {name}", self.client.create_experiment, name)

    def finished_run(self, experiment_id: str, training_key: str):
        """The newest FINISHED run of ours with ``training_key`` (the same inputs, code and settings) that names the
        version it registered, or None. A FINISHED run without one never reached its commit: MLflow's exit hook
        ends a still-active run as FINISHED when a stopped job could not end it KILLED (its server slow or gone)."""
        runs = self.call(
            "SearchRuns",
            self.client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{TAG_TRAINING_KEY}` = '{training_key}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
        )
        return next((run for run in runs if run.data.tags.get(TAG_MODEL_VERSION)), None)

    def finish_committed_orphans(self, experiment_id: str, job: str, model_name: str) -> list[str]:
        """Mark FINISHED the runs of ``job`` left RUNNING after their commit point: an alias points at a version
        they registered (the job failed or died after the alias, before ending the run; its tags came before the
        alias). That version is live -- it may be the champion -- so it is never undone. The caller holds the job's
        lock, so no live run of ours can be among them."""
        finished = []
        for run in self._running(experiment_id, job):
            rid = run.info.run_id
            if any(mv.aliases for mv in self._versions_of(model_name, rid)):
                self.call(f"SetTerminated {rid}", self.client.set_terminated, rid, "FINISHED")
                finished.append(rid)
        return finished

    def fail_orphans(self, experiment_id: str, job: str, model_name: str) -> list[str]:
        """Mark FAILED the runs of ``job`` still RUNNING: the job that started them died (the caller holds the
        job's lock, so no live run of ours can be among them); a model version such a run registered before it
        died (the server gone mid-registration) is deleted: it never passed the commit point (the alias; runs that
        did are finished first by ``finish_committed_orphans``)."""
        runs = self._running(experiment_id, job)
        for run in runs:
            rid = run.info.run_id
            note = "orphaned: the job that started this run ended without finishing it (marked by the next run)"
            self.call(f"SetTag {rid}", self.client.set_tag, rid, TAG_FAILURE, note)
            self.call(f"SetTerminated {rid}", self.client.set_terminated, rid, "FAILED")
            for mv in self._versions_of(model_name, rid):
                self.call(f"DeleteModelVersion {mv.version}", self.client.delete_model_version, model_name, mv.version)
        return [r.info.run_id for r in runs]

    def _running(self, experiment_id: str, job: str) -> list:
        return self.call(
            "SearchRuns",
            self.client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{TAG_JOB}` = '{job}' and attributes.status = 'RUNNING'",
        )

    def _versions_of(self, model_name: str, run_id: str) -> list:
        """The model versions a run registered, each read on its own (a search result may not carry aliases)."""
        found = self.call(
            "SearchModelVersions", self.client.search_model_versions, f"name = '{model_name}' and run_id = '{run_id}'"
        )
        return [
            self.call(f"GetModelVersion {mv.version}", self.client.get_model_version, model_name, mv.version)
            for mv in found
        ]

    def alias_version(self, model_name: str, alias: str):
        """The model version an alias points at, or None (no such model or alias)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(model_name, alias)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise server_error(e, self.uri, f"GetModelVersionByAlias {model_name}@{alias}") from e
        except Exception as e:
            raise server_error(e, self.uri, f"GetModelVersionByAlias {model_name}@{alias}") from e

    def model_version(self, model_name: str, version: str):
        """The model version numbered ``version``, or None (no such model or version)."""
        from mlflow.exceptions import MlflowException

        what = f"GetModelVersion {model_name} v{version}"
        try:
            return self.client.get_model_version(model_name, version)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise server_error(e, self.uri, what) from e
        except Exception as e:
            raise server_error(e, self.uri, what) from e

    def run_params(self, run_id: str) -> dict[str, str]:
        return dict(self.call(f"GetRun {run_id}", self.client.get_run, run_id).data.params)

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.call(f"GetRun {run_id}", self.client.get_run, run_id).data.tags)

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        self.call(
            f"SetRegisteredModelAlias {model_name}@{alias}",
            self.client.set_registered_model_alias,
            model_name,
            alias,
            version,
        )

    def download_model(self, model_name: str, version: str, dst: str) -> str:
        """The model version's directory (MLmodel, the Booster, extra_files/), downloaded under ``dst``."""
        uri = f"models:/{model_name}/{version}"
        return self.call(f"download {uri}", self.mlflow.artifacts.download_artifacts, artifact_uri=uri, dst_path=dst)
