"""Tests of the ingestion job (fraud_demo_jobs.ingest) against moto: in-process (``mock_aws``) for S3, CloudWatch
Logs and metrics, and a moto server behind a killable loopback proxy for the fault test."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import moto
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "fakes"))
# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import curate, synthetic
from fraud_demo_jobs import ieee_schema as S
from fraud_demo_jobs import ingest as ing
from fraud_demo_jobs import manifest as mf
from killable_proxy import KillableProxy  # tests/fakes, shared with the sandbox fault test

# isort: on

BUCKET = "fraud-demo-test-lake"
DATASET = "ieee-fraud-detection"
RAW = f"raw/{DATASET}/"
LOG_GROUP = "fraud-demo-logs"
ROWS = 4000
FILES = [t.file for t in S.TABLES]


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    synthetic.generate(str(out), rows=ROWS, seed=7)
    return out


@pytest.fixture
def raw(generated, tmp_path):
    """A private, editable copy of the generated files."""
    d = tmp_path / "raw"
    d.mkdir()
    for f in FILES:
        shutil.copy(generated / f, d / f)
    return d


@pytest.fixture
def aws():
    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("logs", region_name="us-east-1").create_log_group(logGroupName=LOG_GROUP)
        yield s3


@pytest.fixture
def moto_endpoint():
    """A moto server on a free loopback port, for the job run as a child process. moto's backends are global to
    this process (shared with ``mock_aws``), so it starts from a reset state."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    try:
        yield endpoint
    finally:
        server.stop()


def put_raw(s3, d, names=FILES) -> dict[str, str]:
    """Upload files as the dataset stage does; returns file -> VersionId."""
    return {f: s3.put_object(Bucket=BUCKET, Key=RAW + f, Body=(d / f).read_bytes()).get("VersionId") for f in names}


def run(capsys, tmp_path, *extra) -> tuple[int, dict, str]:
    code = ing.ingest_main(["--bucket", BUCKET, "--work-dir", str(tmp_path / "work"), *extra])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines, f"no stdout; stderr: {err}"
    return code, json.loads(lines[-1]), err


def keys(s3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def get_json(s3, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def read_parquet(s3, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def read_quarantine(s3, key: str) -> pa.Table:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    names = body.split(b"\n", 1)[0].decode().replace('"', "").split(",")
    return pcsv.read_csv(
        io.BytesIO(body),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names if n != "_line"}, strings_can_be_null=True
        ),
    )


def count_rows(path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1


def edit_csv(path, edits: dict[int, dict[str, str]], replace: dict[int, str] | None = None, append=()) -> list[str]:
    """Set fields of data lines (1-based physical line numbers, header = 1); replace whole lines; append lines."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    for ln, fields in edits.items():
        cells = lines[ln - 1].split(",")
        for col, value in fields.items():
            cells[header.index(col)] = value
        lines[ln - 1] = ",".join(cells)
    for ln, text in (replace or {}).items():
        lines[ln - 1] = text
    lines += list(append)
    path.write_text("\n".join(lines) + "\n")
    return lines


def ids_of(path, line_numbers) -> list[int]:
    lines = path.read_text().splitlines()
    return [int(lines[ln - 1].split(",", 1)[0]) for ln in line_numbers]


# ------------------------------------------------------------------------------------------------ contract


def test_contract_matches_the_documented_dataset():
    tt = S.BY_NAME["train_transaction"]
    assert len(tt.columns) == 394 and tt.names[:5] == [
        "TransactionID",
        "isFraud",
        "TransactionDT",
        "TransactionAmt",
        "ProductCD",
    ]
    assert tt.names[-1] == "V339"
    assert len(S.BY_NAME["test_transaction"].columns) == 393
    assert len(S.BY_NAME["train_identity"].columns) == 41
    assert S.normalise(S.BY_NAME["test_identity"], ["TransactionID", "id-01", "DeviceType"]) == [
        "TransactionID",
        "id_01",
        "DeviceType",
    ]
    assert S.normalise(S.BY_NAME["train_identity"], ["id-01"]) == ["id-01"]  # only test_identity is hyphenated
    assert S.fingerprint() == S.fingerprint()
    assert len(S.fingerprint()) == 64


def test_generated_files_satisfy_the_contract_locally(generated, tmp_path):
    state = S.KeyState()
    for spec in S.TABLES:
        res = curate.curate_file(spec, str(generated / spec.file), str(tmp_path), state)
        assert res.rows_quarantined == 0, (spec.name, res.reasons)
        assert res.rows_valid == res.rows_in == count_rows(generated / spec.file)
        table = pq.read_table(res.parquet_path)
        assert table.column_names == spec.names
        assert table.num_rows == res.rows_valid
        for col in spec.columns:
            assert table.schema.field(col.name).type == S.ARROW_TYPES[col.kind], col.name


# ------------------------------------------------------------------------------------------------ happy path


def test_curates_versions_logs_and_reruns_unchanged(aws, raw, tmp_path, capsys):
    s3 = aws
    vids = put_raw(s3, raw)

    code, first, err = run(capsys, tmp_path)
    assert code == 0, err
    assert first["changed"] is True and first["action"] == "created"
    version = first["version"]
    prefix = f"curated/{DATASET}/{version}/"
    assert first["curated_prefix"] == prefix
    assert keys(s3, prefix) == sorted([prefix + "manifest.json"] + [f"{prefix}{t.name}.parquet" for t in S.TABLES])
    assert keys(s3, f"quarantine/{DATASET}/") == []  # the generated data is clean

    manifest = get_json(s3, prefix + "manifest.json")
    assert manifest["version"] == version and manifest["dataset"] == DATASET
    by_file = {src["file"]: src for src in manifest["source"]}
    for f in FILES:
        assert by_file[f]["key"] == RAW + f
        assert by_file[f]["version_id"] == vids[f]
        assert by_file[f]["sha256"] == hashlib.sha256((raw / f).read_bytes()).hexdigest()
        assert by_file[f]["size"] == (raw / f).stat().st_size
    assert manifest["schema"]["fingerprint"] == S.fingerprint()
    assert manifest["code_version"] == mf.code_version()
    assert manifest["run"]["started_at"] <= manifest["run"]["finished_at"]
    total = sum(count_rows(raw / f) for f in FILES)
    assert manifest["rows"] == {"in": total, "valid": total, "quarantined": 0}
    assert 0.01 < manifest["fraud_rate"] < 0.08
    for t in manifest["tables"]:
        table = read_parquet(s3, t["key"])
        assert table.num_rows == t["rows_valid"] == count_rows(raw / f"{t['name']}.csv")
        body = s3.get_object(Bucket=BUCKET, Key=t["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == t["sha256"]
    test_identity = read_parquet(s3, prefix + "test_identity.parquet")
    assert "id_01" in test_identity.column_names and "id-01" not in test_identity.column_names
    assert test_identity.schema.field("TransactionID").type == pa.int64()
    assert test_identity.schema.field("id_01").type == pa.float64()
    assert test_identity.schema.field("DeviceType").type == pa.string()
    assert get_json(s3, f"curated/{DATASET}/latest") == {
        "dataset": DATASET,
        "version": version,
        "manifest": prefix + "manifest.json",
    }

    # One log stream per run, JSON events; metrics in our namespace.
    logs = boto3.client("logs", region_name="us-east-1")
    assert first["log_stream"] == f"ingest/{first['run_id']}"
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=first["log_stream"])["events"]
    parsed = [json.loads(e["message"]) for e in events]
    names = [p["event"] for p in parsed]
    assert names[0] == "started" and names[-1] == "finished"
    assert names.count("validated") == 5 and "published" in names
    assert all(p["run_id"] == first["run_id"] and p["dataset"] == DATASET for p in parsed)
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    metrics = {m["MetricName"] for m in cw.list_metrics(Namespace="FraudDemo")["Metrics"]}
    assert {"RowsIn", "RowsValid", "RowsQuarantined", "FraudRate", "DurationSeconds", "VersionCreated"} <= metrics
    dims = cw.list_metrics(Namespace="FraudDemo", MetricName="RowsIn")["Metrics"][0]["Dimensions"]
    assert {d["Name"]: d["Value"] for d in dims} == {"Dataset": DATASET, "Stage": "ingest"}

    # Same raw versions: nothing new, changed=false, no object written.
    before = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    code, again, err = run(capsys, tmp_path)
    assert code == 0, err
    assert again["changed"] is False and again["action"] == "unchanged" and again["version"] == version
    assert again["rows"] == manifest["rows"]
    assert s3.list_object_versions(Bucket=BUCKET)["Versions"] == before
    assert not (tmp_path / "work" / version).exists()  # scratch cleaned after publishing


def test_check_mode_only_reads(aws, raw, tmp_path, capsys):
    s3 = aws
    put_raw(s3, raw)
    code, check, err = run(capsys, tmp_path, "--check")
    assert code == 0, err
    assert check["action"] == "would_create" and check["changed"] is True
    assert keys(s3, "curated/") == [] and keys(s3, "quarantine/") == []
    assert (
        boto3.client("logs", region_name="us-east-1").describe_log_streams(logGroupName=LOG_GROUP)["logStreams"] == []
    )
    assert run(capsys, tmp_path)[1]["action"] == "created"
    code, check, err = run(capsys, tmp_path, "--check")
    assert code == 0 and check["action"] == "unchanged" and check["changed"] is False


def test_changed_raw_file_makes_a_new_version_and_rollback_promotes(aws, raw, tmp_path, capsys):
    s3 = aws
    put_raw(s3, raw)
    first = run(capsys, tmp_path)[1]
    edit_csv(raw / "sample_submission.csv", {2: {"isFraud": "0.9"}})
    put_raw(s3, raw, ["sample_submission.csv"])
    code, second, err = run(capsys, tmp_path)
    assert code == 0, err
    assert second["action"] == "created" and second["version"] != first["version"]
    assert get_json(s3, f"curated/{DATASET}/latest")["version"] == second["version"]
    assert read_parquet(s3, second["tables"]["sample_submission"]["key"])["isFraud"][0].as_py() == 0.9
    # The first version is untouched and still complete.
    assert get_json(s3, first["manifest_key"])["version"] == first["version"]

    # Roll the raw file back (delete its newest version): the first version comes back as latest, rebuilt from nothing.
    newest = s3.list_object_versions(Bucket=BUCKET, Prefix=RAW + "sample_submission.csv")["Versions"][0]
    s3.delete_object(Bucket=BUCKET, Key=newest["Key"], VersionId=newest["VersionId"])
    code, third, err = run(capsys, tmp_path)
    assert code == 0, err
    assert third["action"] == "promoted" and third["changed"] is True and third["version"] == first["version"]
    assert get_json(s3, f"curated/{DATASET}/latest")["version"] == first["version"]
    assert run(capsys, tmp_path)[1]["action"] == "unchanged"


# ------------------------------------------------------------------------------------------------ bad rows


def test_bad_rows_are_quarantined_with_their_line_and_reason(aws, raw, tmp_path, capsys):
    s3 = aws
    tt = raw / "train_transaction.csv"
    orig = tt.read_text().splitlines()
    dup_of = int(orig[6].split(",", 1)[0])  # line 7's TransactionID, reused on line 8
    edits = {
        2: {"card4": "amex"},
        3: {"TransactionAmt": "-5.0"},
        4: {"isFraud": "2"},
        5: {"TransactionID": ""},
        8: {"TransactionID": str(dup_of)},
        9: {"C1": "abc"},
        10: {"card1": "12.5"},
        12: {"ProductCD": ""},
    }
    short = ",".join(orig[10].split(",")[:10])  # line 11 cut to 10 fields
    lost_ids = ids_of(tt, [2, 3, 4, 5, 8, 9, 10, 11, 12])  # their rows are quarantined: identity rows are orphans
    edit_csv(tt, edits, replace={11: short})
    expected = {
        2: "card4: isin",
        3: "TransactionAmt: greater_than(0)",
        4: "isFraud: isin",
        5: "TransactionID: empty",
        8: "TransactionID: duplicate, seen earlier in the file",
        9: "C1: not a number",
        10: "card1: not an integer",
        11: "expected 394 fields, found 10",
        12: "ProductCD: empty",
    }

    ti = raw / "train_identity.csv"
    id_lines = ti.read_text().splitlines()
    header = id_lines[0].split(",")
    orphan = id_lines[1].split(",")
    orphan[0] = "99999999"
    edit_csv(ti, {2: {"id_34": "match_status:9"}}, append=[",".join(orphan)])
    identity_ids = [int(line.split(",", 1)[0]) for line in id_lines[1:]]
    orphans = [i for i in identity_ids if i in lost_ids]
    assert header[0] == "TransactionID"
    put_raw(s3, raw)

    code, out, err = run(capsys, tmp_path)
    assert code == 0, err
    t = out["tables"]["train_transaction"]
    assert t["rows_in"] == len(orig) - 1
    assert t["rows_quarantined"] == len(expected)
    assert t["rows_valid"] == t["rows_in"] - len(expected)
    q = read_quarantine(s3, t["quarantine_key"])
    assert q["_line"].to_pylist() == sorted(expected)  # in line order, the unsplittable row among the others
    got = dict(zip(q["_line"].to_pylist(), q["_reason"].to_pylist(), strict=True))
    assert set(got) == set(expected)
    for line, reason in expected.items():
        assert reason in got[line], (line, got[line])
    assert "(got 'amex')" in got[2]
    raw_text = dict(zip(q["_line"].to_pylist(), q["_raw"].to_pylist(), strict=True))
    assert raw_text[11] == short and raw_text[2] is None
    assert q["C1"].to_pylist()[q["_line"].to_pylist().index(9)] == "abc"  # the offending value, as written
    curated = read_parquet(s3, t["key"])
    assert curated.num_rows == t["rows_valid"]
    assert curated.column("C1").type == pa.float64() and curated.column("card1").type == pa.int64()
    assert not set(lost_ids) & set(curated.column("TransactionID").to_pylist())
    assert curated.column("TransactionID").to_pylist().count(dup_of) == 1

    i = out["tables"]["train_identity"]
    qi = read_quarantine(s3, i["quarantine_key"])
    reasons = dict(zip(qi["TransactionID"].to_pylist(), qi["_reason"].to_pylist(), strict=True))
    assert "TransactionID: not a valid row of train_transaction" in reasons["99999999"]
    assert "id_34: str_matches" in reasons[id_lines[1].split(",", 1)[0]]
    assert {int(k) for k in reasons} == {99999999, int(id_lines[1].split(",", 1)[0]), *orphans}
    assert i["rows_quarantined"] == len(reasons)
    manifest = get_json(s3, out["manifest_key"])
    tt_manifest = next(x for x in manifest["tables"] if x["name"] == "train_transaction")
    assert tt_manifest["text_columns"] == ["C1", "card1"]
    assert tt_manifest["reasons"]["card4: isin(['visa', 'mastercard', 'american express', 'discover'])"] == 1
    assert manifest["rows"]["quarantined"] == sum(x["rows_quarantined"] for x in manifest["tables"])


# ------------------------------------------------------------------------------------------------ broken files


def _drop_column(path, name):
    table = pcsv.read_csv(
        path, read_options=pcsv.ReadOptions(), convert_options=pcsv.ConvertOptions(strings_can_be_null=True)
    )
    pcsv.write_csv(table.drop_columns([name]), path, pcsv.WriteOptions(quoting_style="none"))


def _swap_columns(path, a, b):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    ia, ib = header.index(a), header.index(b)
    out = []
    for line in lines:
        cells = line.split(",")
        cells[ia], cells[ib] = cells[ib], cells[ia]
        out.append(",".join(cells))
    path.write_text("\n".join(out) + "\n")


BROKEN = {
    "missing column": (lambda p: _drop_column(p, "id_05"), "missing column(s) id_05"),
    "unexpected column": (
        lambda p: p.write_text(
            "\n".join(line + (",extra" if i == 0 else ",1") for i, line in enumerate(p.read_text().splitlines())) + "\n"
        ),
        "unexpected column(s) extra",
    ),
    "reordered columns": (lambda p: _swap_columns(p, "id_01", "id_02"), "out of order"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-25]), "truncated"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "compressed": (lambda p: p.write_bytes(gzip.compress(p.read_bytes())), "compressed"),
    "binary": (lambda p: p.write_bytes(bytes(range(256)) * 40), "binary"),
    "too many bad rows": (
        lambda p: edit_csv(p, {ln: {"DeviceType": "tablet"} for ln in range(2, count_rows(p) // 3)}),
        "over the 5.0% allowed by --max-bad-fraction",
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_file_fails_the_job_and_publishes_nothing(aws, raw, tmp_path, capsys, kind):
    s3 = aws
    breaker, message = BROKEN[kind]
    breaker(raw / "train_identity.csv")
    put_raw(s3, raw)
    code, out, err = run(capsys, tmp_path)
    assert code == 1
    assert out["failed"] is True and out["changed"] is False
    assert out["msg"].startswith("train_identity.csv: ")
    assert message in out["msg"], out["msg"]
    assert err.strip().splitlines()[-1] == f"fraud-demo-ingest: error: {out['msg']}"
    assert keys(s3, "curated/") == [] and keys(s3, "quarantine/") == []


def _identity_with_bad_rows(path, rows: int, bad: int) -> None:
    """Keep the first ``rows`` data lines of an identity file and put a DeviceType outside its domain on ``bad``
    of them (the rest stay valid: their TransactionIDs are rows of the full transaction file)."""
    lines = path.read_text().splitlines()[: rows + 1]
    assert len(lines) == rows + 1
    path.write_text("\n".join(lines) + "\n")
    edit_csv(path, {ln: {"DeviceType": "tablet"} for ln in range(2, 2 + bad)})


def test_bad_row_limit_is_strictly_greater_than_exactly_5pct_passes_one_more_row_fails(aws, raw, tmp_path, capsys):
    """The rule is bad/rows > --max-bad-fraction: 20 bad rows of 400 (exactly 5 %) pass, 21 (5.25 %) fail."""
    s3 = aws
    ti = raw / "train_identity.csv"
    _identity_with_bad_rows(ti, rows=400, bad=20)
    put_raw(s3, raw)
    code, out, err = run(capsys, tmp_path, "--max-bad-fraction", "0.05")
    assert code == 0, err
    t = out["tables"]["train_identity"]
    assert (t["rows_in"], t["rows_valid"], t["rows_quarantined"]) == (400, 380, 20)

    _identity_with_bad_rows(ti, rows=400, bad=21)
    put_raw(s3, raw, ["train_identity.csv"])
    code, out, err = run(capsys, tmp_path, "--max-bad-fraction", "0.05")
    assert code == 1
    assert out["msg"].startswith(
        "train_identity.csv: 21 of 400 rows are bad (5.2%, over the 5.0% allowed by --max-bad-fraction); "
        "most common: DeviceType: isin(['desktop', 'mobile']) (21 rows)."
    ), out["msg"]
    assert "raise --max-bad-fraction" in out["msg"]
    assert get_json(s3, f"curated/{DATASET}/latest")["version"] != out["version"]  # the 5 % version stays latest


def test_missing_raw_file_and_log_group_are_named(aws, raw, tmp_path, capsys):
    s3 = aws
    put_raw(s3, raw, FILES[:-1])
    code, out, _ = run(capsys, tmp_path)
    assert code == 1 and f"missing raw file(s) in s3://{BUCKET}/: {RAW}sample_submission.csv" in out["msg"]
    assert "playbooks/dataset.yml" in out["msg"]
    put_raw(s3, raw, FILES[-1:])
    code, out, _ = run(capsys, tmp_path, "--log-group", "no-such-group")
    assert code == 1 and "log group no-such-group does not exist: run playbooks/provision.yml" in out["msg"]
    assert keys(s3, "curated/") == []
    code, out, _ = run(capsys, tmp_path, "--max-bad-fraction", "2")
    assert code == 2 and "--max-bad-fraction" in out["msg"]


def test_help_describes_the_job():
    exe = shutil.which("fraud-demo-ingest", path=os.path.dirname(sys.executable))
    assert exe
    res = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert res.returncode == 0
    assert "--max-bad-fraction" in res.stdout and "Validate, version and curate" in res.stdout


# ------------------------------------------------------------------------------------------------ fault


def test_emulator_dying_mid_publish_leaves_no_partial_version_and_a_rerun_converges(raw, tmp_path, moto_endpoint):
    endpoint = moto_endpoint
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1").create_log_group(logGroupName=LOG_GROUP)
    put_raw(s3, raw)
    raw_before = s3.list_object_versions(Bucket=BUCKET, Prefix="raw/")["Versions"]

    # Client->server traffic is a few KB of requests until the curated Parquet bodies start to go up.
    proxy = KillableProxy(("127.0.0.1", int(endpoint.rsplit(":", 1)[1])), kill_after=200_000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_DEMO_")}
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", AWS_MAX_ATTEMPTS="2")
    cmd = [sys.executable, "-m", "fraud_demo_jobs.ingest", "--bucket", BUCKET, "--work-dir", str(tmp_path / "w")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300, env=env)
    assert proxy.dead.is_set(), res.stderr
    assert res.returncode == 1, res.stderr
    failed = json.loads(res.stdout.strip().splitlines()[-1])
    assert failed["failed"] is True and "cannot reach" in failed["msg"], failed
    assert res.stderr.count("validated:") == 5  # it died while publishing, after validating everything
    version = failed["version"]

    # No complete version, latest not moved, raw data untouched.
    prefix = f"curated/{DATASET}/{version}/"
    assert prefix + "manifest.json" not in keys(s3, prefix)
    assert keys(s3, f"curated/{DATASET}/latest") == []
    assert s3.list_object_versions(Bucket=BUCKET, Prefix="raw/")["Versions"] == raw_before
    for f in FILES:
        assert s3.get_object(Bucket=BUCKET, Key=RAW + f)["Body"].read() == (raw / f).read_bytes()

    # The emulator is back (no proxy): the re-run converges on the same version, complete and clean.
    env["AWS_ENDPOINT_URL"] = endpoint
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout.strip().splitlines()[-1])
    assert done["action"] == "created" and done["version"] == version
    manifest = get_json(s3, prefix + "manifest.json")
    assert keys(s3, prefix) == sorted([prefix + "manifest.json"] + [t["key"] for t in manifest["tables"]])
    for t in manifest["tables"]:
        body = s3.get_object(Bucket=BUCKET, Key=t["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == t["sha256"]
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert get_json(s3, f"curated/{DATASET}/latest")["version"] == version
    assert s3.list_object_versions(Bucket=BUCKET, Prefix="raw/")["Versions"] == raw_before


def test_sigterm_mid_validation_publishes_nothing_and_the_rerun_resumes(raw, tmp_path, moto_endpoint):
    """A stopped job (SIGTERM while validating): exit 143 with one message, nothing under curated/ or quarantine/,
    the local scratch of the version kept, and the next run completes the same version."""
    endpoint = moto_endpoint
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)  # unversioned, as a user's own bucket may be: VersionId "null"
    put_raw(s3, raw)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_DEMO_")}
    env.update(AWS_ENDPOINT_URL=endpoint)
    work = tmp_path / "w"
    cmd = [sys.executable, "-m", "fraud_demo_jobs.ingest", "--bucket", BUCKET, "--work-dir", str(work)]
    proc = subprocess.Popen(
        [*cmd, "--no-cloudwatch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "downloaded:" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(seen) + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["failed"] is True and summary["msg"].startswith("terminated (SIGTERM)")
    assert keys(s3, "curated/") == [] and keys(s3, "quarantine/") == []
    assert (work / summary["version"] / "raw" / "train_transaction.csv").exists()  # kept for the next run
    assert not list(work.rglob("*.part"))  # no half-written local output either

    res = subprocess.run([*cmd, "--no-cloudwatch"], capture_output=True, text=True, check=False, env=env)
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout.strip().splitlines()[-1])
    assert done["action"] == "created" and done["version"] == summary["version"]
    assert done["phase_seconds"]["download"] < 5
