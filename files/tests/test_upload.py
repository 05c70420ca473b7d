"""Tests of the upload job (fraud_demo_jobs.upload) against moto's in-process S3 (``mock_aws``)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import boto3
import botocore.exceptions
import moto
import pytest

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import checksums as ck
from fraud_demo_jobs import transfer as tr
from fraud_demo_jobs import upload as up

# isort: on

BUCKET = "fraud-demo-test-lake"
PREFIX = "raw/ieee-fraud-detection/"
MIB = 1024 * 1024
BIG = 12 * MIB + 12345  # 3 parts of 5 MiB


@pytest.fixture
def s3():
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "a.csv").write_bytes(b"TransactionID,isFraud\n1,0\n2,1\n")
    (src / "b.csv").write_bytes(os.urandom(100_000))
    (src / "notes.txt").write_text("not a csv\n")
    (src / ".fraud-demo-synthetic.json").write_text("{}")
    (src / "big.csv").write_bytes(os.urandom(BIG))
    return src


def run_main(capsys, *args) -> tuple[int, dict, str]:
    code = up.upload_main(list(args))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines, f"no stdout; stderr: {err}"
    return code, json.loads(lines[-1]), err


def base_args(source, *extra) -> list[str]:
    return ["--source", str(source), "--bucket", BUCKET, "--part-size-mb", "5", "--progress", "never", *extra]


def composite(data: bytes, part: int) -> str:
    digests = b"".join(hashlib.sha256(data[i : i + part]).digest() for i in range(0, len(data), part))
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


def keys(s3, prefix=PREFIX) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


# ------------------------------------------------------------------------------------------------ unit


def test_part_size_and_local_checksums(tmp_path):
    assert tr.part_size_for(5 * MIB - 1, 5 * MIB) == 0
    assert tr.part_size_for(5 * MIB, 5 * MIB) == 5 * MIB
    assert tr.part_size_for(10_000 * 8 * MIB + 1, 8 * MIB) > 8 * MIB  # s3transfer raises it: <= 10 000 parts
    data = os.urandom(BIG)
    path = tmp_path / "f"
    path.write_bytes(data)
    lf = tr.LocalFile(name="f", path=str(path), key="k", size=len(data), mtime_ns=0, part_size=5 * MIB)
    tr.hash_file(lf)
    assert lf.sha256 == hashlib.sha256(data).hexdigest()
    assert lf.s3_checksum == base64.b64encode(hashlib.sha256(data).digest()).decode()
    for workers in (1, 2, 3, None):
        assert ck.composite_checksum(str(path), len(data), 5 * MIB, workers) == composite(data, 5 * MIB)
    assert ck.composite_checksum(str(path), len(data), 6 * MIB) == composite(data, 6 * MIB)
    parts = {
        n + 1: base64.b64encode(hashlib.sha256(data[i : i + 5 * MIB]).digest()).decode()
        for n, i in enumerate(range(0, len(data), 5 * MIB))
    }
    assert ck.composite_of(dict(reversed(parts.items()))) == composite(data, 5 * MIB)
    assert ck.remote_parts({"ChecksumSHA256": "x-3", "ETag": '"e"'}) == 3
    assert ck.remote_parts({"ChecksumSHA256": "x", "ETag": '"e-4"'}) == 4  # moto: no suffix on the checksum
    assert ck.remote_parts({"ChecksumSHA256": "x", "ETag": '"e"'}) == 0


def test_prefix_normalisation():
    assert tr.normalize_prefix("/raw/x") == "raw/x/"
    assert tr.normalize_prefix("raw/x/") == "raw/x/"
    assert tr.normalize_prefix("") == ""


# ------------------------------------------------------------------------------------------------ runs


def test_upload_skip_and_change(s3, source, capsys):
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "*.csv"))
    assert code == 0, summary
    assert summary["job"] == "upload" and summary["changed"] is True
    assert summary["bucket"] == BUCKET and summary["prefix"] == PREFIX
    assert summary["files_uploaded"] == 3 and summary["files_skipped"] == 0
    assert summary["bytes_sent"] == sum((source / n).stat().st_size for n in ("a.csv", "b.csv", "big.csv"))
    assert keys(s3) == [PREFIX + n for n in ("a.csv", "b.csv", "big.csv")]  # no notes.txt, no dot file
    for f in summary["files"]:
        data = (source / f["name"]).read_bytes()
        assert f["action"] == "uploaded" and f["bytes"] == len(data)
        # the plain SHA-256 is known (from S3's checksum) for single-part uploads only: no pass before uploading
        assert f["sha256"] == (None if f["name"] == "big.csv" else hashlib.sha256(data).hexdigest())
        obj = s3.get_object(Bucket=BUCKET, Key=PREFIX + f["name"], ChecksumMode="ENABLED")
        assert obj["Body"].read() == data
        assert obj["Metadata"] == {}
        assert obj["ChecksumSHA256"].split("-")[0] == f["checksum_sha256"]
        assert obj["VersionId"] == f["version_id"] and f["version_id"]
        assert obj["ContentType"] == "text/csv"
    big = s3.head_object(Bucket=BUCKET, Key=PREFIX + "big.csv", ChecksumMode="ENABLED")
    assert big["ETag"].endswith('-3"')  # really multipart
    assert big["ChecksumSHA256"].split("-")[0] == composite((source / "big.csv").read_bytes(), 5 * MIB)
    first_versions = {f["name"]: f["version_id"] for f in summary["files"]}

    code, summary, _ = run_main(capsys, *base_args(source, "--include", "*.csv"))
    assert code == 0
    assert summary["changed"] is False and summary["bytes_sent"] == 0 and summary["files_skipped"] == 3
    assert {f["name"]: f["version_id"] for f in summary["files"]} == first_versions
    assert all(f["action"] == "skipped" for f in summary["files"])

    (source / "b.csv").write_bytes(os.urandom(100_000))  # same size, new content
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "*.csv"))
    assert code == 0 and summary["changed"] is True
    actions = {f["name"]: f["action"] for f in summary["files"]}
    assert actions == {"a.csv": "skipped", "b.csv": "uploaded", "big.csv": "skipped"}
    assert summary["bytes_sent"] == 100_000
    new = next(f for f in summary["files"] if f["name"] == "b.csv")
    assert new["version_id"] != first_versions["b.csv"]
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX + "b.csv")["Versions"]
    assert len(versions) == 2
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "b.csv")["Body"].read() == (source / "b.csv").read_bytes()

    data = bytearray((source / "big.csv").read_bytes())  # same size, one byte in the last part changed
    data[-1] ^= 0xFF
    (source / "big.csv").write_bytes(bytes(data))
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "*.csv"))
    assert code == 0 and [f["name"] for f in summary["files"] if f["action"] == "uploaded"] == ["big.csv"]
    got = s3.get_object(Bucket=BUCKET, Key=PREFIX + "big.csv", ChecksumMode="ENABLED")
    assert got["Body"].read() == bytes(data) and got["VersionId"] != first_versions["big.csv"]
    assert got["ChecksumSHA256"].split("-")[0] == composite(bytes(data), 5 * MIB)

    data[0] ^= 0xFF  # same size, first part changed, and a different part size asked for: still detected
    (source / "big.csv").write_bytes(bytes(data))
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "big.csv", "--part-size-mb", "6"))
    assert code == 0 and summary["files"][0]["action"] == "uploaded"
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "big.csv", "--part-size-mb", "7"))
    assert code == 0 and summary["files"][0]["action"] == "skipped" and summary["bytes_sent"] == 0


def test_new_files_are_not_read_before_uploading(s3, source, capsys, monkeypatch):
    def no_pass(*_, **__):
        raise AssertionError("hashed before uploading")

    monkeypatch.setattr(tr, "hash_file", no_pass)
    monkeypatch.setattr(tr, "composite_checksum", no_pass)
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "*.csv"))
    assert code == 0 and summary["files_uploaded"] == 3, summary
    assert {f["name"]: f["checksum_sha256"] for f in summary["files"]}["big.csv"] == composite(
        (source / "big.csv").read_bytes(), 5 * MIB
    )


def test_env_settings_and_unversioned_bucket(s3, source, capsys, monkeypatch):
    s3.create_bucket(Bucket="plain-bucket")
    monkeypatch.setenv("FRAUD_DEMO_BUCKET", "plain-bucket")
    monkeypatch.setenv("FRAUD_DEMO_DATASET", "other-set")
    monkeypatch.setenv("FRAUD_DEMO_UPLOAD_SOURCE", str(source))
    code, summary, _ = run_main(capsys, "--include", "a.csv", "--include", "big.csv", "--part-size-mb", "5")
    assert code == 0, summary
    assert summary["bucket"] == "plain-bucket" and summary["prefix"] == "raw/other-set/"
    assert [f["version_id"] for f in summary["files"]] == [None, None]  # PutObject and multipart alike
    assert s3.get_object(Bucket="plain-bucket", Key="raw/other-set/a.csv")["Body"].read().startswith(b"Trans")


def test_skips_object_uploaded_by_another_tool(s3, source, capsys):
    """No sha256 metadata, but S3's SHA-256 checksum (single-part) equals the file's: skipped."""
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "a.csv", Body=(source / "a.csv").read_bytes(), ChecksumAlgorithm="SHA256")
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "a.csv"))
    assert code == 0 and summary["changed"] is False and summary["files"][0]["action"] == "skipped"


def test_skips_multipart_object_with_other_part_size(s3, source, capsys):
    """Uploaded by another tool with 6 MiB parts (part size from HeadObject PartNumber=1): skipped while the
    content is the same, uploaded once one byte changes."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=6 * MIB, multipart_chunksize=6 * MIB)
    s3.upload_file(
        str(source / "big.csv"), BUCKET, PREFIX + "big.csv", ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=config
    )
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "big.csv"))
    assert code == 0 and summary["files"][0]["action"] == "skipped", summary
    assert summary["files"][0]["checksum_sha256"] == composite((source / "big.csv").read_bytes(), 6 * MIB)

    data = bytearray((source / "big.csv").read_bytes())
    data[7 * MIB] ^= 1
    (source / "big.csv").write_bytes(bytes(data))
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "big.csv"))
    assert code == 0 and summary["files"][0]["action"] == "uploaded" and summary["bytes_sent"] == len(data)
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "big.csv")["Body"].read() == bytes(data)


def test_object_of_previous_version_with_sha256_metadata_only(s3, source, capsys):
    """Objects with only the x-amz-meta-sha256 of earlier versions (no S3 checksum) are compared by it."""
    for name in ("a.csv", "b.csv"):
        s3.put_object(
            Bucket=BUCKET,
            Key=PREFIX + name,
            Body=(source / name).read_bytes(),
            Metadata={"sha256": hashlib.sha256((source / name).read_bytes()).hexdigest()},
        )
    (source / "b.csv").write_bytes(os.urandom(100_000))  # same size, other content than the object's metadata
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "?.csv"))
    assert code == 0
    assert {f["name"]: f["action"] for f in summary["files"]} == {"a.csv": "skipped", "b.csv": "uploaded"}


def test_progress_lines(s3, source, capsys):
    code, _, err = run_main(capsys, *base_args(source, "--include", "big.csv", "--progress", "always"))
    assert code == 0
    lines = [line for line in err.splitlines() if "big.csv" in line]
    assert lines and "MiB/s" in lines[-1] and "(100%)" in lines[-1]


class PartFailure(Exception):
    pass


def _fail_on_part(monkeypatch, part_number: int, action):
    """Make the job's client run ``action()`` when it is about to send UploadPart ``part_number``."""
    real = up.make_client

    def make_client(*args, **kwargs):
        client = real(*args, **kwargs)

        def hook(params, **_):
            if params.get("PartNumber") == part_number:
                action()

        client.meta.events.register("before-parameter-build.s3.UploadPart", hook)
        return client

    monkeypatch.setattr(up, "make_client", make_client)


def test_failure_mid_upload_leaves_nothing(s3, source, capsys, monkeypatch):
    def boom():
        raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.test")

    _fail_on_part(monkeypatch, 2, boom)
    code, summary, err = run_main(capsys, *base_args(source, "--include", "big.csv", "--concurrency", "2"))
    assert code == 1
    assert summary["failed"] is True and "cannot reach the S3 endpoint" in summary["msg"]
    assert "big.csv" in summary["msg"]
    assert err.strip().splitlines()[-1].startswith("fraud-demo-upload: error: ")
    assert keys(s3) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    monkeypatch.undo()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "big.csv"))
    assert code == 0 and summary["files_uploaded"] == 1
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "big.csv")["Body"].read() == (source / "big.csv").read_bytes()


def test_sigterm_aborts_multipart_upload(s3, source, capsys, monkeypatch):
    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # let the main thread take the signal before this part goes out

    _fail_on_part(monkeypatch, 2, sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "big.csv", "--concurrency", "1"))
    assert signal.getsignal(signal.SIGTERM) == previous  # restored
    assert code == 143 and summary["failed"] is True and "SIGTERM" in summary["msg"]
    assert keys(s3) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_stale_multipart_uploads_are_aborted(s3, source, capsys):
    stale = s3.create_multipart_upload(Bucket=BUCKET, Key=PREFIX + "old.csv")["UploadId"]  # moto dates it 2010
    other = s3.create_multipart_upload(Bucket=BUCKET, Key="curated/x.parquet")["UploadId"]
    code, summary, _ = run_main(capsys, *base_args(source, "--include", "a.csv"))
    assert code == 0 and summary["stale_uploads_aborted"] == 1
    left = {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])}
    assert stale not in left and other in left


# ------------------------------------------------------------------------------------------------ failures


def test_missing_source_dir(s3, tmp_path, capsys):
    code, summary, err = run_main(capsys, *base_args(tmp_path / "nope"))
    assert code == 2 and summary["failed"] is True and summary["changed"] is False
    assert "does not exist" in summary["msg"] and "nope" in err


def test_no_files_matched(s3, source, capsys):
    code, summary, err = run_main(capsys, *base_args(source, "--include", "*.parquet"))
    assert code == 2 and summary["failed"] is True
    assert "no files to upload" in summary["msg"] and "*.parquet" in err


def test_missing_bucket(s3, source, capsys):
    code, summary, err = run_main(capsys, "--source", str(source), "--bucket", "no-such-bucket-here")
    assert code == 1 and summary["failed"] is True
    assert "no-such-bucket-here does not exist" in summary["msg"]
    assert len(err.strip().splitlines()) == 1


def test_access_denied(s3, source, capsys, monkeypatch):
    def denied(*_, **__):
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "403", "Message": "Forbidden"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
            "HeadBucket",
        )

    real = up.make_client

    def make_client(*args, **kwargs):
        client = real(*args, **kwargs)
        client.head_bucket = denied
        return client

    monkeypatch.setattr(up, "make_client", make_client)
    code, summary, _ = run_main(capsys, *base_args(source))
    assert code == 1 and BUCKET in summary["msg"] and "IAM role" in summary["msg"]


def test_no_credentials(source, capsys, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, summary, _ = run_main(capsys, *base_args(source))
    assert code == 1 and "no AWS credentials" in summary["msg"]


def test_endpoint_unreachable(source, capsys, monkeypatch):
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, summary, _ = run_main(capsys, *base_args(source, "--endpoint-url", f"http://127.0.0.1:{port}"))
    assert code == 1 and "cannot reach the S3 endpoint" in summary["msg"] and str(port) in summary["msg"]


def test_missing_bucket_setting(source, capsys):
    code, summary, _ = run_main(capsys, "--source", str(source))
    assert code == 2 and "--bucket" in summary["msg"]


# ------------------------------------------------------------------------------------------------ console script


def test_console_script_help_and_failure(tmp_path):
    exe = shutil.which("fraud-demo-upload", path=os.path.dirname(sys.executable))
    assert exe, "fraud-demo-upload is not installed next to this Python (pip install -e files)"
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert res.returncode == 0 and "--part-size-mb" in res.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FRAUD_DEMO_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    res = subprocess.run(
        [exe, "--source", str(tmp_path / "missing"), "--bucket", BUCKET],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert res.returncode == 2
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["job"] == "upload" and summary["failed"] is True and "does not exist" in summary["msg"]
    assert res.stderr.strip().splitlines() == [f"fraud-demo-upload: error: {summary['msg']}"]


def test_console_script_against_moto_server(source):
    """The installed command end to end, in a child process, against an in-process moto server on a free
    loopback port: endpoint from AWS_ENDPOINT_URL, upload, then an unchanged re-run."""
    from moto.server import ThreadedMotoServer

    exe = shutil.which("fraud-demo-upload", path=os.path.dirname(sys.executable))
    assert exe
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_DEMO_")}
        env.update(AWS_ENDPOINT_URL=endpoint, FRAUD_DEMO_BUCKET=BUCKET)
        cmd = [exe, "--source", str(source), "--include", "*.csv", "--part-size-mb", "5", "--progress", "never"]
        results = []
        for _ in range(2):
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120, env=env)
            assert res.returncode == 0, res.stderr
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        first, second = results
        assert first["changed"] is True and first["files_uploaded"] == 3
        assert all(f["version_id"] for f in first["files"])
        assert second["changed"] is False and second["bytes_sent"] == 0 and second["files_skipped"] == 3
        got = client.get_object(Bucket=BUCKET, Key=PREFIX + "big.csv")
        assert got["Body"].read() == (source / "big.csv").read_bytes()
        assert got["ChecksumSHA256"].split("-")[0] == composite((source / "big.csv").read_bytes(), 5 * MIB)
    finally:
        server.stop()
