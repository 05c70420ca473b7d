"""Integration tests of library/kaggle_dataset.py against a fake Kaggle API, with the real kaggle client.

The module runs the way Ansible runs it: in its own Python process, arguments as JSON, result as JSON on stdout
(plus one run through the `ansible` CLI). The kaggle client is pointed at the fake with
KAGGLE_API_ENVIRONMENT=LOCALHOST, which means http://localhost:80, so these tests need root (or another way to
bind port 80) and skip otherwise.

Run: .venv/bin/pytest -q tests/unit/test_kaggle_dataset.py
Against kaggle 1.7 (the Ubuntu 22.04 / Python 3.10 pin), with its wheel unpacked into /tmp/k17/x:
     KAGGLE_DATASET_TEST_PYTHONPATH=/tmp/k17/x .venv/bin/pytest -q tests/unit/test_kaggle_dataset.py
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ansible.module_utils
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "library" / "kaggle_dataset.py"
MODULE_UTILS = ROOT / "module_utils"
sys.path.insert(0, str(ROOT / "tests" / "fakes"))
# The module imports its parts as ansible.module_utils.fraud_demo_*: Ansible ships them from ansible.cfg's
# module_utils directory inside the module's payload. ansible.module_utils is a regular package, so a test
# process sees them once that directory is on the package's __path__ (here, and in BOOT for the subprocess).
if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))
BOOT = (
    "import runpy, sys, ansible.module_utils; ansible.module_utils.__path__.append(sys.argv[1]); "
    "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)

import fake_kaggle as fk
from ansible.module_utils.fraud_demo_kaggle_errors import describe_error, sanitize

KEY = "fake-kaggle-key-5f3c9a1e7d2b4068"
TOKEN = "KGAT_fake-access-token-8d1e2f3a4b5c6d7e"
COMPETITION = "ieee-fraud-detection"
MANIFEST = ".kaggle_dataset_manifest.json"
LEGACY_KAGGLE = os.environ.get("KAGGLE_DATASET_TEST_PYTHONPATH", "")
# kaggle 2.x calls RPC-style methods; kaggle 1.7's kagglesdk spells the same calls as REST paths.
DOWNLOAD_API = {
    "competition": f"/api/v1/competitions/data/download-all/{COMPETITION}"
    if LEGACY_KAGGLE
    else "/api/v1/competitions.CompetitionApiService/DownloadDataFiles",
    "dataset": "/api/v1/datasets/download/someone/fraud-sample"
    if LEGACY_KAGGLE
    else "/api/v1/datasets.DatasetApiService/DownloadDataset",
}
SECRETS = (KEY, TOKEN, fk.SIGNATURE, base64.b64encode(f"fakeuser:{KEY}".encode()).decode())


@pytest.fixture(scope="module")
def fake():
    if os.geteuid() != 0:
        pytest.skip("the kaggle client's LOCALHOST environment is http://localhost:80; binding port 80 needs root")
    try:
        server = fk.FakeKaggle(port=80, key=KEY, token=TOKEN)
    except OSError as e:
        pytest.skip(f"cannot listen on 127.0.0.1:80 for the fake Kaggle API: {e}")
    server.start()
    csvs = fk.ieee_csvs()
    server.csvs = csvs
    server.competitions[COMPETITION] = fk.make_zip(csvs)
    server.datasets["someone/fraud-sample"] = fk.make_zip({"transactions.csv": csvs["train_transaction.csv"]})
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path, fake):
    """A clean HOME with ~/.kaggle/kaggle.json (mode 0600) and no KAGGLE_* or proxy variables from outside."""
    fake.reset("ok")
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    write_kaggle_json(home / ".kaggle", KEY)
    variables = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
    }
    if LEGACY_KAGGLE:  # e.g. an unpacked kaggle-1.7.4.5 wheel, to run the suite against the kaggle 1.7 API
        variables["PYTHONPATH"] = LEGACY_KAGGLE
    return variables


def write_kaggle_json(directory: Path, key: str) -> None:
    path = directory / "kaggle.json"
    path.write_text(json.dumps({"username": "fakeuser", "key": key}))
    path.chmod(0o600)


def run(env, dest, check=False, diff=False, **args):
    """Run the module like Ansible does; return (result, stdout + stderr)."""
    payload = {
        "ANSIBLE_MODULE_ARGS": {
            "dest": str(dest),
            "retries": 0,
            "timeout": 10,
            **args,
            "_ansible_check_mode": check,
            "_ansible_diff": diff,
        }
    }
    proc = subprocess.run(
        [sys.executable, "-c", BOOT, str(MODULE_UTILS), str(MODULE), json.dumps(payload)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    try:
        result = json.loads(proc.stdout)  # stdout must be exactly the module's JSON: nothing printed by kaggle
    except ValueError:
        pytest.fail(f"module stdout is not JSON:\n{output}")
    for secret in SECRETS:
        assert secret not in output
    assert result.get("failed", False) == (proc.returncode != 0)
    return result, output


def final_names(dest: Path) -> set[str]:
    return {p.name for p in dest.iterdir()} - {".kaggle_dataset.lock"} if dest.exists() else set()


def assert_installed(dest: Path, fake):
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["source"] == {"type": "competition", "name": COMPETITION}
    assert manifest["downloaded_at"].endswith("Z")
    assert sorted(f["file"] for f in manifest["files"]) == sorted(fake.csvs)
    for entry in manifest["files"]:
        data = (dest / entry["file"]).read_bytes()
        assert data == fake.csvs[entry["file"]]
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["archive"]["file"] == f"{COMPETITION}.zip"
    assert (dest / f"{COMPETITION}.zip").read_bytes() == fake.competitions[COMPETITION]
    assert not [n for n in os.listdir(dest) if n.startswith(".kaggle_dataset-tmp-")]
    return manifest


def test_download_then_rerun_downloads_nothing(env, fake, tmp_path):
    dest = tmp_path / "data"
    result, _ = run(env, dest)
    assert result["changed"] is True and result["downloaded"] is True
    assert fake.paths() == [
        DOWNLOAD_API["competition"],
        f"/download/competitions/{COMPETITION}/{COMPETITION}.zip",
    ]
    assert_installed(dest, fake)
    assert {f["file"] for f in result["files"]} == set(fake.csvs)

    fake.reset("ok")
    result, _ = run(env, dest, diff=True)
    assert result["changed"] is False and result["downloaded"] is False
    assert fake.requests == []  # not even the download API was called
    assert result["diff"]["before"] == result["diff"]["after"]


def test_same_size_change_is_caught_by_checksum_and_restored_from_archive(env, fake, tmp_path):
    dest = tmp_path / "data"
    run(env, dest)
    target = dest / "train_transaction.csv"
    original = target.read_bytes()
    mtime_ns = target.stat().st_mtime_ns
    target.write_bytes(b"t" + original[1:])  # same size and inode: only the sha256 can tell
    os.utime(target, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
    (dest / "test_identity.csv").unlink()
    fake.reset("ok")
    result, _ = run(env, dest, diff=True)
    assert result["changed"] is True and result["downloaded"] is False
    assert sorted(result["restored"]) == ["test_identity.csv", "train_transaction.csv"]
    assert fake.requests == []
    assert target.read_bytes() == original
    assert_installed(dest, fake)

    # Without the kept archive the same damage means a new download.
    (dest / f"{COMPETITION}.zip").unlink()
    target.write_bytes(b"x" * len(original))
    result, _ = run(env, dest)
    assert result["changed"] is True and result["downloaded"] is True
    assert_installed(dest, fake)


def test_force_downloads_again(env, fake, tmp_path):
    dest = tmp_path / "data"
    run(env, dest)
    fake.reset("ok")
    result, _ = run(env, dest, force=True)
    assert result["changed"] is True and result["downloaded"] is True
    assert len(fake.requests) == 2
    assert_installed(dest, fake)


def test_check_mode_changes_nothing(env, fake, tmp_path):
    dest = tmp_path / "data"
    result, _ = run(env, dest, check=True, diff=True)
    assert result["changed"] is True and result["downloaded"] is True
    assert "Would download" in result["msg"]
    assert not dest.exists() and fake.requests == []

    run(env, dest)
    fake.reset("ok")
    result, _ = run(env, dest, check=True)
    assert result["changed"] is False and fake.requests == []

    (dest / "sample_submission.csv").unlink()
    before = sorted(os.listdir(dest))
    result, _ = run(env, dest, check=True, diff=True)
    assert result["changed"] is True and result["restored"] == ["sample_submission.csv"]
    assert sorted(os.listdir(dest)) == before and fake.requests == []
    assert "sample_submission.csv" in result["diff"]["before"]


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("401", ["HTTP 401", "settings/api", "kaggle.json"]),
        (
            "403",
            [
                "accept the rules at https://www.kaggle.com/competitions/ieee-fraud-detection/rules then re-run",
                fk.RULES_MESSAGE,
            ],
        ),
        ("404", ["HTTP 404", "not found", "competition option"]),
        ("500", ["HTTP 500", "Re-run later"]),
    ],
)
def test_http_errors_have_one_clear_message(env, fake, tmp_path, scenario, expected):
    dest = tmp_path / "data"
    fake.reset(scenario)
    result, _ = run(env, dest)
    assert result["failed"] is True
    for text in expected:
        assert text in result["msg"]
    assert final_names(dest) == set()


def test_unknown_competition_is_404(env, fake, tmp_path):
    result, _ = run(env, tmp_path / "data", competition="no-such-competition")
    assert result["failed"] and "'no-such-competition' was not found (HTTP 404" in result["msg"]


def test_wrong_key_is_rejected_without_leaking_it(env, fake, tmp_path):
    write_kaggle_json(Path(env["HOME"]) / ".kaggle", KEY[::-1])
    result, output = run(env, tmp_path / "data")
    assert result["failed"] and "HTTP 401" in result["msg"]
    assert KEY[::-1] not in output


def test_truncated_download_leaves_no_final_file_and_next_run_recovers(env, fake, tmp_path):
    dest = tmp_path / "data"
    fake.reset("truncated")
    result, _ = run(env, dest)
    assert result["failed"] is True
    assert "truncated" in result["msg"] and "re-run" in result["msg"]
    assert final_names(dest) == set()  # no half file under a final name, no temporary directory left

    fake.reset("ok")
    result, _ = run(env, dest)
    assert result["changed"] is True
    assert_installed(dest, fake)


def test_truncated_once_is_retried_and_resumed(env, fake, tmp_path):
    dest = tmp_path / "data"
    fake.reset("truncated_once")
    result, _ = run(env, dest, retries=1)
    assert result["changed"] is True, result["msg"]
    assert len([p for p in fake.paths() if p.startswith("/download/")]) == 2
    assert_installed(dest, fake)


def test_interrupted_run_is_recovered(env, fake, tmp_path):
    dest = tmp_path / "data"
    stale = dest / ".kaggle_dataset-tmp-killed"
    stale.mkdir(parents=True)
    (stale / f"{COMPETITION}.zip").write_bytes(b"PK\x03\x04 partial")
    result, _ = run(env, dest)
    assert result["changed"] is True
    assert ".kaggle_dataset-tmp-killed" in result["removed"]
    assert_installed(dest, fake)


def test_corrupt_zip_is_refused(env, fake, tmp_path):
    dest = tmp_path / "data"
    fake.reset("corrupt")
    result, _ = run(env, dest)
    assert result["failed"] is True
    assert "corrupt" in result["msg"] and "CRC" in result["msg"]
    assert final_names(dest) == set()


def test_no_credentials(env, fake, tmp_path):
    (Path(env["HOME"]) / ".kaggle" / "kaggle.json").unlink()
    result, _ = run(env, tmp_path / "data")
    assert result["failed"] is True
    for text in ("No Kaggle credentials", "kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        assert text in result["msg"]
    assert fake.requests == []


def test_credentials_from_environment_and_config_dir(env, fake, tmp_path):
    (Path(env["HOME"]) / ".kaggle" / "kaggle.json").unlink()
    result, _ = run(dict(env, KAGGLE_USERNAME="fakeuser", KAGGLE_KEY=KEY), tmp_path / "a")
    assert result["changed"] is True

    conf = tmp_path / "conf"
    conf.mkdir()
    write_kaggle_json(conf, KEY)
    result, _ = run(env, tmp_path / "b", config_dir=str(conf))
    assert result["changed"] is True


@pytest.mark.skipif(bool(LEGACY_KAGGLE), reason="access tokens (KAGGLE_API_TOKEN) need kaggle 2.x")
def test_access_token(env, fake, tmp_path):
    (Path(env["HOME"]) / ".kaggle" / "kaggle.json").unlink()
    result, _ = run(dict(env, KAGGLE_API_TOKEN=TOKEN), tmp_path / "data")
    assert result["changed"] is True, result["msg"]
    assert "/api/v1/security.OAuthService/IntrospectToken" in fake.paths()


def test_dataset_without_extract(env, fake, tmp_path):
    dest = tmp_path / "data"
    result, _ = run(env, dest, dataset="someone/fraud-sample", extract=False)
    assert result["changed"] is True
    assert final_names(dest) == {MANIFEST, "fraud-sample.zip"}
    assert fake.paths()[0] == DOWNLOAD_API["dataset"]
    fake.reset("ok")
    result, _ = run(env, dest, dataset="someone/fraud-sample", extract=False)
    assert result["changed"] is False and fake.requests == []
    # Switching the source replaces the files the old manifest listed.
    result, _ = run(env, dest)
    assert result["changed"] is True and "fraud-sample.zip" in result["removed"]
    assert "fraud-sample.zip" not in final_names(dest)


def test_competition_and_dataset_are_mutually_exclusive(env, tmp_path):
    result, _ = run(env, tmp_path / "data", competition="x", dataset="a/b")
    assert result["failed"] and "mutually exclusive" in result["msg"]


@pytest.fixture
def small_fs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to provoke ENOSPC: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full(env, fake, tmp_path, small_fs):
    fake.competitions["big"] = fk.make_zip({"train_transaction.csv": b"0,1,2,3\n" * 65536})  # 512 KiB, zip ~1 KiB
    try:
        result, _ = run(env, small_fs / "data", competition="big")
    finally:
        del fake.competitions["big"]
    assert result["failed"] is True
    assert "No space left on device" in result["msg"] and "Free disk space" in result["msg"]
    assert final_names(small_fs / "data") == set()


def test_through_ansible_cli(env, fake, tmp_path):
    ansible = shutil.which("ansible", path=str(Path(sys.executable).parent)) or shutil.which("ansible")
    if not ansible:
        pytest.skip("ansible CLI not found")
    dest = tmp_path / "data"
    cli_env = dict(
        env,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    cmd = [
        ansible,
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-M",
        str(ROOT / "library"),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        "kaggle_dataset",
        "-a",
        json.dumps({"dest": str(dest), "retries": 0}),
    ]
    for extra, expect in ((["--check", "--diff"], "CHANGED"), ([], "CHANGED"), (["--diff"], "SUCCESS")):
        proc = subprocess.run(
            cmd + extra, env=cli_env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert f"localhost | {expect}" in output
        for secret in SECRETS:
            assert secret not in output
    assert_installed(dest, fake)


def test_error_mapping_for_older_kaggle_exceptions():
    """kaggle < 1.7 raised kaggle.rest.ApiException (status, body) instead of requests.HTTPError."""

    class ApiException(Exception):
        def __init__(self, status, body):
            super().__init__(f"({status})")
            self.status, self.body = status, body

    source = {"type": "competition", "name": COMPETITION}
    ctx = {"dest": "/data", "credentials": "kaggle.json"}
    msg = describe_error(ApiException(403, json.dumps({"code": 403, "message": fk.RULES_MESSAGE})), source, ctx)
    assert f"accept the rules at https://www.kaggle.com/competitions/{COMPETITION}/rules then re-run" in msg
    assert "HTTP 401" in describe_error(ApiException(401, "Unauthorized"), source, ctx)
    msg = describe_error(OSError(errno.ENOSPC, "No space left on device"), source, ctx)
    assert "No space left on device" in msg
    assert "Signature" not in sanitize("GET https://storage.example/x.zip?Signature=abc failed")
    assert sanitize(f"key {KEY} here", [KEY]) == "key ******** here"
