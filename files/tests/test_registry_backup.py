"""Backup and restore of the MLflow registry database (fraud_demo_jobs.registry_backup) against moto's S3, with a
real SQLite database built here with sqlite3 directly (a second method: the code under test only copies bytes)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import moto
import pytest

# isort: off
from fraud_demo_jobs import aws, registry_backup
from fraud_demo_jobs.errors import JobError

# isort: on

BUCKET = "fraud-demo-test-registry"
KEY = "registry/mlflow.db"  # the design notes' layout, spelled here on purpose as the expected value
EXPERIMENTS = [(0, "Default"), (1, "fraud-demo")]
RUNS = [("r1", 1, "FINISHED", 0.91), ("r2", 1, "FAILED", None)]


def make_db(path) -> None:
    """A small database shaped like MLflow's (a few tables and rows), written with sqlite3 itself."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
        CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, experiment_id INTEGER, status TEXT, auc REAL);
        CREATE TABLE registered_model_aliases (name TEXT, alias TEXT, version INTEGER);
        """
    )
    conn.executemany("INSERT INTO experiments VALUES (?, ?)", EXPERIMENTS)
    conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?)", RUNS)
    conn.execute("INSERT INTO registered_model_aliases VALUES ('fraud-detector', 'champion', 1)")
    conn.commit()
    conn.close()


def rows(path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "experiments": conn.execute("SELECT * FROM experiments ORDER BY 1").fetchall(),
            "runs": conn.execute("SELECT * FROM runs ORDER BY 1").fetchall(),
            "aliases": conn.execute("SELECT * FROM registered_model_aliases").fetchall(),
        }
    finally:
        conn.close()


@pytest.fixture
def bucket():
    with moto.mock_aws():
        client = aws.make_client("s3", None, "us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield aws.S3Bucket(client, BUCKET)


def versions(bucket) -> list[str]:
    got = bucket.client.list_object_versions(Bucket=BUCKET, Prefix=KEY).get("Versions", [])
    return [v["VersionId"] for v in got]


def test_backup_uploads_once_and_a_second_backup_is_unchanged(bucket, tmp_path):
    db = tmp_path / "mlflow.db"
    make_db(db)
    first = registry_backup.backup_registry(str(db), bucket)
    assert first["changed"] is True and first["action"] == "uploaded" and first["key"] == KEY
    stored = bucket.client.get_object(Bucket=BUCKET, Key=KEY)
    body = stored["Body"].read()
    assert first["sha256"] == hashlib.sha256(body).hexdigest() == stored["Metadata"]["sha256"]
    assert first["bytes"] == len(body) and first["version_id"] == stored["VersionId"]

    second = registry_backup.backup_registry(str(db), bucket)
    assert second == {**first, "changed": False, "action": "unchanged"}
    assert len(versions(bucket)) == 1


def test_backup_after_a_change_uploads_a_new_version_and_check_only_reports(bucket, tmp_path):
    db = tmp_path / "mlflow.db"
    make_db(db)
    first = registry_backup.backup_registry(str(db), bucket)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE registered_model_aliases SET version = 2")
    conn.commit()
    conn.close()
    would = registry_backup.backup_registry(str(db), bucket, check=True)
    assert would["action"] == "would_upload" and would["changed"] is True and len(versions(bucket)) == 1
    moved = registry_backup.backup_registry(str(db), bucket)
    assert moved["action"] == "uploaded" and moved["sha256"] != first["sha256"]
    assert len(versions(bucket)) == 2


def test_backup_copy_is_consistent_while_a_writer_holds_an_open_transaction(bucket, tmp_path):
    """The backup API copies committed state only: an uncommitted insert of another connection is not in it."""
    db = tmp_path / "mlflow.db"
    make_db(db)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN")
    writer.execute("INSERT INTO runs VALUES ('r3', 1, 'RUNNING', NULL)")
    try:
        registry_backup.backup_registry(str(db), bucket)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    restored = tmp_path / "restored" / "mlflow.db"
    registry_backup.restore_registry(str(restored), bucket)
    assert rows(restored)["runs"] == RUNS


def test_restore_onto_a_missing_database_gives_the_same_rows(bucket, tmp_path):
    db = tmp_path / "old" / "mlflow.db"
    db.parent.mkdir()
    make_db(db)
    backup = registry_backup.backup_registry(str(db), bucket)
    fresh = tmp_path / "new-node" / "mlflow" / "mlflow.db"
    assert registry_backup.restore_registry(str(fresh), bucket, check=True)["action"] == "would_restore"
    assert not fresh.exists()
    got = registry_backup.restore_registry(str(fresh), bucket)
    assert got["action"] == "restored" and got["changed"] is True
    assert got["sha256"] == backup["sha256"] and got["version_id"] == backup["version_id"]
    assert rows(fresh) == {"experiments": EXPERIMENTS, "runs": RUNS, "aliases": [("fraud-detector", "champion", 1)]}
    assert os.listdir(fresh.parent) == ["mlflow.db"]  # no temporary file left
    again = registry_backup.restore_registry(str(fresh), bucket)
    assert again["action"] == "present" and again["changed"] is False


def test_restore_never_overwrites_an_existing_database(bucket, tmp_path):
    old = tmp_path / "old.db"
    make_db(old)
    registry_backup.backup_registry(str(old), bucket)
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"the node's own registry, newer than any backup")
    got = registry_backup.restore_registry(str(db), bucket)
    assert got["action"] == "present" and got["changed"] is False
    assert db.read_bytes() == b"the node's own registry, newer than any backup"


def test_restore_without_a_backup_leaves_the_database_to_the_server(bucket, tmp_path):
    db = tmp_path / "mlflow.db"
    got = registry_backup.restore_registry(str(db), bucket)
    assert got["action"] == "no_backup" and got["changed"] is False and not db.exists()


@pytest.mark.parametrize(
    ("body", "metadata", "words"),
    [
        # Not SQLite at all, stored with a matching sha256 (e.g. uploaded by hand): integrity check refuses it.
        (b"not a database, just text" * 100, True, "not a sound SQLite database"),
        # A valid header with the rest of the pages cut off.
        (None, True, "not a sound SQLite database"),
        # Bytes that differ from the recorded sha256 (damaged in transit or replaced).
        (b"SQLite format 3\x00" + b"\x00" * 4000, False, "does not match its recorded sha256"),
    ],
)
def test_a_damaged_backup_is_refused_and_nothing_is_left_behind(bucket, tmp_path, body, metadata, words):
    if body is None:
        src = tmp_path / "src.db"
        make_db(src)
        conn = sqlite3.connect(src)
        conn.executemany("INSERT INTO runs VALUES (?, 1, 'FINISHED', 0.5)", [(f"x{i}",) for i in range(2000)])
        conn.commit()
        conn.close()
        body = src.read_bytes()[: 3 * 4096]
    sha = hashlib.sha256(body).hexdigest() if metadata else "0" * 64
    bucket.client.put_object(Bucket=BUCKET, Key=KEY, Body=body, Metadata={"sha256": sha})
    target = tmp_path / "node" / "mlflow.db"
    target.parent.mkdir()
    with pytest.raises(JobError) as err:
        registry_backup.restore_registry(str(target), bucket)
    assert words in str(err.value) and f"s3://{BUCKET}/{KEY}" in str(err.value)
    assert "nothing restored" in str(err.value)
    assert os.listdir(target.parent) == []


def test_backup_of_a_missing_database_names_it(bucket, tmp_path):
    with pytest.raises(JobError, match=r"no registry database at .*nothing to back up"):
        registry_backup.backup_registry(str(tmp_path / "missing.db"), bucket)
    assert versions(bucket) == []


def test_command_line_backup_then_restore_with_json_summaries(bucket, tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    make_db(db)
    assert registry_backup.registry_main(["backup", f"--bucket={BUCKET}", f"--db={db}"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["job"] == "registry" and out["command"] == "backup" and out["action"] == "uploaded"
    assert out["changed"] is True and out["key"] == KEY
    assert out["artifacts_destination"] == f"s3://{BUCKET}/models"

    fresh = tmp_path / "fresh" / "mlflow.db"
    assert registry_backup.registry_main(["restore", f"--bucket={BUCKET}", f"--db={fresh}"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["action"] == "restored" and rows(fresh)["runs"] == RUNS


def test_command_line_usage_errors_are_one_line(tmp_path, capsys):
    assert registry_backup.registry_main(["restore", "--bucket=b", "--db=relative.db"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1].startswith("fraud-demo-registry: error: --db (or FRAUD_DEMO_MLFLOW_DB)")
    assert json.loads(out.strip().splitlines()[-1])["failed"] is True


def test_command_line_failure_names_the_missing_bucket(tmp_path, capsys):
    with moto.mock_aws():
        code = registry_backup.registry_main(["restore", "--bucket=nope-no-bucket", f"--db={tmp_path / 'm.db'}"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "bucket nope-no-bucket does not exist" in err.strip().splitlines()[-1]
    assert json.loads(out.strip().splitlines()[-1])["failed"] is True
