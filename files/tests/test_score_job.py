"""Tests of the batch scoring job (fraud_demo_jobs.score) against a moto server and a real MLflow tracking server,
with one model trained by the real training job on generated data (shared by the whole module).

Expected values come from outside the code under test: a second method (MLflow's own LightGBM loader and the
feature state applied to the whole joined test frame at once, no chunks, no column selection), the raw
sample_submission.csv read by hand, hashes of the downloaded objects, S3's ETags and object versions (nothing
rewritten), and MLflow's registry (no alias moved).
"""

from __future__ import annotations

import hashlib
import io
import json

import boto3
import numpy as np
import pandas as pd
import pytest
from fraud_demo_jobs import features as F
from fraud_demo_jobs import ingest
from fraud_demo_jobs import score as sj
from fraud_demo_jobs.errors import JobError
from fraud_demo_jobs.score_batch import check_ids
from jobs_lake import (
    BUCKET,
    DATASET,
    MODEL,
    aws_args,
    client,
    free_port,
    keys,
    log_version,
    running_lake,
    s3_json,
    tiny_booster,
    train_model,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The lake with one model trained by fraud-demo-train (version 1, champion) and its summary."""
    with running_lake(tmp_path_factory.mktemp("score")) as lake:
        yield lake, train_model(lake)


@pytest.fixture(scope="module")
def expected(trained, tmp_path_factory) -> pd.Series:
    """Second method: version 1 loaded by MLflow's LightGBM flavour, its feature state applied to the whole test
    table (curated Parquet read in full by pandas, joined with its identity rows); TransactionID -> probability."""
    import mlflow.artifacts
    import mlflow.lightgbm

    lake, _ = trained
    s3 = lake["s3"]
    manifest = s3_json(s3, s3_json(s3, f"curated/{DATASET}/latest")["manifest"])
    tables = {
        t["name"]: pd.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=t["key"])["Body"].read()))
        for t in manifest["tables"]
        if t["name"] in ("test_transaction", "test_identity")
    }
    frame = F.model_frame(tables["test_transaction"], tables["test_identity"])
    mlflow.set_tracking_uri(lake["uri"])
    booster = mlflow.lightgbm.load_model(f"models:/{MODEL}/1")
    model_dir = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(tmp_path_factory.mktemp("m")))
    state = F.FeatureState.load(f"{model_dir}/extra_files")
    scores = booster.predict(state.transform(frame), num_iteration=booster.best_iteration or None)
    return pd.Series(scores, index=frame["TransactionID"].to_numpy())


def score(lake, capsys, *extra) -> tuple[int, dict, str]:
    argv = ["--bucket", BUCKET, "--tracking-uri", lake["uri"], *aws_args(lake)]
    argv += ["--work-dir", str(lake["tmp"] / "score-work"), *extra]
    code = sj.score_main(argv)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines, err
    return code, json.loads(lines[-1]), err


def body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def object_versions(s3, prefix: str) -> dict[str, list[tuple[str, str]]]:
    """key -> [(VersionId, ETag)] of every stored version under ``prefix``: a rewrite adds one."""
    out: dict[str, list[tuple[str, str]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append((v["VersionId"], v["ETag"]))
    return out


def test_champion_scores_equal_a_second_method_with_lineage_and_a_kaggle_submission(trained, expected, capsys):
    lake, trained_summary = trained
    s3 = lake["s3"]
    latest = s3_json(s3, f"curated/{DATASET}/latest")
    dv = latest["version"]
    # Chunks of 1,000 rows: several chunks, the last one short.
    code, s, err = score(lake, capsys, "--chunk-rows", "1000")
    assert code == 0, err
    prefix = f"predictions/1/{dv}/"
    assert (s["changed"], s["status"], s["model_version"], s["dataset_version"]) == (True, "scored", "1", dv)
    assert s["keys"] == [f"{prefix}predictions.parquet", f"{prefix}submission.csv", f"{prefix}manifest.json"]
    assert sorted(keys(s3, "predictions/")) == sorted(s["keys"])

    test_ids = pd.read_csv(lake["raw"] / "test_transaction.csv", usecols=["TransactionID"])["TransactionID"]
    assert s["rows"] == len(test_ids) == len(expected)
    predictions = pd.read_parquet(io.BytesIO(body(s3, f"{prefix}predictions.parquet")))
    assert list(predictions.columns) == ["TransactionID", "fraud_probability"]
    assert predictions["TransactionID"].tolist() == test_ids.tolist()  # the test table's order
    np.testing.assert_allclose(
        predictions["fraud_probability"].to_numpy(), expected.loc[predictions["TransactionID"]].to_numpy(), rtol=1e-12
    )

    text = body(s3, f"{prefix}submission.csv").decode()
    assert text.splitlines()[0] == "TransactionID,isFraud"
    submission = pd.read_csv(io.StringIO(text))
    sample = pd.read_csv(lake["raw"] / "sample_submission.csv")
    assert submission["TransactionID"].tolist() == sample["TransactionID"].tolist()
    np.testing.assert_allclose(
        submission["isFraud"].to_numpy(), expected.loc[sample["TransactionID"]].to_numpy(), rtol=1e-12
    )

    manifest = s3_json(s3, f"{prefix}manifest.json")
    curated = s3_json(s3, latest["manifest"])
    raw_ids = {src["file"]: src["version_id"] for src in curated["source"]}
    mv = client(lake).get_model_version(MODEL, "1")
    assert manifest["model"] == {
        "model_name": MODEL,
        "model_version": "1",
        "run_id": trained_summary["run_id"],
        "dataset": DATASET,
        "dataset_version": trained_summary["dataset_version"],
        "raw_version_ids": json.loads(mv.tags["fraud_demo.raw_version_ids"]),
        "code_version": mv.tags["fraud_demo.code_version"],
    }
    assert (manifest["dataset_version"], manifest["raw_version_ids"], manifest["rows"]) == (dv, raw_ids, s["rows"])
    for name in ("predictions.parquet", "submission.csv"):
        data = body(s3, f"{prefix}{name}")
        entry = manifest["objects"][name]
        assert (entry["key"], entry["bytes"], entry["sha256"]) == (
            f"{prefix}{name}",
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
    assert manifest["created"].endswith("+00:00") and manifest["code_version"]

    # Its run reported to CloudWatch: the stream score/<run-id> and the metrics with Stage=score.
    logs = boto3.client("logs", endpoint_url=lake["endpoint"])
    events = logs.get_log_events(logGroupName="fraud-demo-logs", logStreamName=s["log_stream"])["events"]
    assert s["log_stream"] == f"score/{s['job_run_id']}"
    assert json.loads(events[-1]["message"])["event"] == "finished"
    dims = boto3.client("cloudwatch", endpoint_url=lake["endpoint"]).list_metrics(
        Namespace="FraudDemo", MetricName="RowsScored"
    )["Metrics"][0]
    assert {d["Name"]: d["Value"] for d in dims["Dimensions"]} == {"Dataset": DATASET, "Stage": "score"}
    # Scoring moved no alias.
    assert client(lake).get_model_version_by_alias(MODEL, "champion").version == "1"


def test_second_run_is_unchanged_check_writes_nothing_and_a_lost_manifest_is_rewritten_alone(trained, capsys):
    lake, _ = trained
    s3 = lake["s3"]
    code, first, err = score(lake, capsys, "--no-cloudwatch")  # scored by the test above, or now
    assert code == 0, err
    before = object_versions(s3, "predictions/")
    code, again, err = score(lake, capsys, "--no-cloudwatch")
    assert code == 0, err
    assert (again["changed"], again["status"], again["rows"], again["keys"]) == (
        False,
        "unchanged",
        first["rows"],
        first["keys"],
    )
    code, check, _ = score(lake, capsys, "--check")
    assert (code, check["changed"], check["status"]) == (0, False, "unchanged")
    assert object_versions(s3, "predictions/") == before

    # The manifest gone (a run killed before its last step): --check says would_score and writes nothing ...
    manifest_key = first["manifest"]
    s3.delete_object(Bucket=BUCKET, Key=manifest_key)
    after_delete = object_versions(s3, "predictions/")
    code, check, _ = score(lake, capsys, "--check")
    assert (code, check["changed"], check["status"]) == (0, True, "would_score")
    assert object_versions(s3, "predictions/") == after_delete
    # ... and a run scores again: the same bytes, so only the manifest is written anew.
    code, rescored, err = score(lake, capsys, "--no-cloudwatch")
    assert (code, rescored["status"]) == (0, "scored"), err
    now = object_versions(s3, "predictions/")
    for key in first["keys"][:2]:
        assert now[key] == before[key], key
    assert len(now[manifest_key]) == len(after_delete[manifest_key]) + 1


def test_another_model_version_writes_a_new_prefix_and_moves_no_alias(trained, expected, capsys):
    lake, _ = trained
    c = client(lake)
    v1 = c.get_model_version(MODEL, "1")
    # The same logged model registered again: another version number, the same predictions.
    import mlflow

    mlflow.set_registry_uri(lake["uri"])
    v2 = mlflow.register_model(v1.source, MODEL, tags=v1.tags)
    aliases_before = {a: c.get_model_version_by_alias(MODEL, a).version for a in c.get_registered_model(MODEL).aliases}
    code, s, err = score(lake, capsys, "--model-version", str(v2.version), "--no-cloudwatch")
    assert code == 0, err
    dv = s["dataset_version"]
    assert (s["status"], s["model_version"]) == ("scored", str(v2.version))
    assert s["keys"][0] == f"predictions/{v2.version}/{dv}/predictions.parquet"
    predictions = pd.read_parquet(io.BytesIO(body(lake["s3"], s["keys"][0])))
    np.testing.assert_allclose(
        predictions["fraud_probability"].to_numpy(), expected.loc[predictions["TransactionID"]].to_numpy(), rtol=1e-12
    )
    assert s3_json(lake["s3"], s["manifest"])["model"]["model_version"] == str(v2.version)
    after = {a: c.get_model_version_by_alias(MODEL, a).version for a in c.get_registered_model(MODEL).aliases}
    assert after == aliases_before


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--model-version", "x1"], 2, "is not a model version number"),
        (["--version", "nothex"], 2, "is not a curated version id"),
        (["--chunk-rows", "0"], 2, "--chunk-rows must be at least 1"),
        (["--model-name", "no-such-model"], 1, "has the alias champion yet"),
        (["--model-name", "no-such-model"], 1, "run playbooks/train.yml"),
        (["--model-version", "99"], 1, "has no version 99"),
        (["--alias", "no-such-alias"], 1, "no model version of fraud-detector has the alias no-such-alias"),
        (["--version", "0123456789abcdef"], 1, "has no manifest"),
        (["--dataset", "no-such-dataset"], 1, "no curated version of no-such-dataset yet"),
    ],
)
def test_bad_settings_and_inputs_fail_with_one_message_and_write_nothing(trained, capsys, args, code, words):
    lake, _ = trained
    before = object_versions(lake["s3"], "predictions/")
    got, s, err = score(lake, capsys, *args, "--no-cloudwatch")
    assert got == code and s["failed"] is True and words in s["msg"], (s, err)
    assert err.strip().splitlines()[-1] == f"fraud-demo-score: error: {s['msg']}"
    assert object_versions(lake["s3"], "predictions/") == before


def test_a_version_without_feature_state_and_a_dead_tracking_server_are_named(trained, capsys):
    lake, _ = trained
    before = object_versions(lake["s3"], "predictions/")
    version = log_version(lake, tiny_booster(), None)
    code, s, _ = score(lake, capsys, "--model-version", version, "--no-cloudwatch")
    assert code == 1 and f"model {MODEL} v{version} has no feature state" in s["msg"] and "retrain" in s["msg"]
    assert object_versions(lake["s3"], "predictions/") == before

    argv = ["--bucket", BUCKET, "--tracking-uri", f"http://127.0.0.1:{free_port()}", *aws_args(lake)]
    code = sj.score_main([*argv, "--no-cloudwatch"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and "does not answer" in s["msg"] and "systemctl start fraud-demo-mlflow" in s["msg"]


def test_check_ids_names_what_differs_from_sample_submission():
    check_ids(np.array([3, 1, 2]), np.array([1, 2, 3]))  # the same set in another order is a submission
    with pytest.raises(
        JobError, match=r"2 of sample_submission's TransactionIDs are not in test_transaction \(e.g. 4, 5;"
    ):
        check_ids(np.array([1, 2, 3]), np.array([1, 2, 3, 4, 5]))
    with pytest.raises(JobError, match=r"1 test_transaction TransactionIDs are not in sample_submission \(9\)"):
        check_ids(np.array([1, 2, 9]), np.array([1, 2]))
    with pytest.raises(JobError, match=r"test_transaction repeats 1 TransactionIDs \(e.g. 2\)"):
        check_ids(np.array([1, 2, 2]), np.array([1, 2]))


def test_a_submission_that_would_not_match_sample_submission_fails_before_writing(trained, capsys):
    """A sample_submission.csv without its last rows curates fine (its rows reference test transactions), but a
    submission of it would miss test transactions: the job says so and writes nothing. (Last: moves latest.)"""
    lake, _ = trained
    s3 = lake["s3"]
    lines = (lake["raw"] / "sample_submission.csv").read_text().splitlines(keepends=True)
    s3.put_object(Bucket=BUCKET, Key=f"raw/{DATASET}/sample_submission.csv", Body="".join(lines[:-3]).encode())
    argv = ["--bucket", BUCKET, "--work-dir", str(lake["tmp"] / "ingest"), "--no-cloudwatch", *aws_args(lake)]
    assert ingest.ingest_main(argv) == 0
    capsys.readouterr()
    before = object_versions(s3, "predictions/")
    code, s, _ = score(lake, capsys, "--no-cloudwatch")
    dropped = ", ".join(line.split(",")[0] for line in lines[-3:])
    assert code == 1 and "the submission would not match sample_submission" in s["msg"], s
    assert f"3 test_transaction TransactionIDs are not in sample_submission ({dropped})" in s["msg"]
    assert object_versions(s3, "predictions/") == before
