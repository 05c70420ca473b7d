"""End to end on the sandbox, the path real users take: Kaggle -> raw/ -> ingest, through the real kaggle client.

`site.yml -e fraud_demo_dataset_source=kaggle`: kaggle_credentials writes the controller's KAGGLE_USERNAME and
KAGGLE_KEY to the node, the kaggle_dataset module downloads the competition's zip with the kaggle package of the
node's venv from the fake Kaggle API (tests/fakes/fake_kaggle.py on localhost:80; the node shares the host's
network), fraud-demo-upload lands the five CSVs under raw/, fraud-demo-ingest curates them. The zip holds the
five files with the real names, columns, dtypes and row proportions (the generator at 1,000 train rows).

The kaggle client talks to http://localhost only with KAGGLE_API_ENVIRONMENT=LOCALHOST in its environment. For
this test the node's sessions get that one variable, and nothing else changes: /etc/environment (pam_env, read by
sshd at each new connection; Ansible runs the module without sudo when become_user is the SSH user) and a sudo
env_file (sudo resets the environment when become_user is another user). The playbooks get a private SSH
ControlPath directory, so no connection opened before the change is reused. All of it, and the node's
downloaded copy, is removed afterwards.

Run (wall times and PLAY RECAP lines are printed):
    .venv/bin/pytest -s tests/sandbox/test_kaggle_source.py
"""

import os
import sys
from pathlib import Path

import pytest
from conftest import on_node, one_line
from curatedstate import check_curated, get_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
import fake_kaggle as fk

pytestmark = [pytest.mark.sandbox, pytest.mark.sandbox_node]

COMPETITION = "ieee-fraud-detection"
KEY = "fake-kaggle-key-e2e-3b9d0c71a5f2"
# The stages up to ingest (1,000 rows are too few for the train stage's time split; test_ml.py runs it).
KAGGLE = ["-e", "fraud_demo_dataset_source=kaggle", "--skip-tags", "train,deploy,monitor"]
TRAIN_ROWS = 1000
ENV_FILE = "/etc/fraud-demo-fake-kaggle.env"
SUDOERS = "/etc/sudoers.d/fraud-demo-fake-kaggle"
VARIABLE = "KAGGLE_API_ENVIRONMENT=LOCALHOST"
# The node's copy of the files (fraud_demo_data_dir/raw/<dataset>): removed first, so that the run downloads.
NODE_COPY = f"/opt/fraud-demo/data/raw/{COMPETITION}"


@pytest.fixture
def kaggle_api(sandbox_env, tmp_path):
    """The fake Kaggle API on localhost:80 serving the real-shaped zip; the node's sessions sent to it."""
    if os.geteuid() != 0:
        pytest.skip("the kaggle client's LOCALHOST environment is http://localhost:80; binding port 80 needs root")
    archive = fk.ieee_competition_zip(rows=TRAIN_ROWS).read_bytes()
    try:
        server = fk.FakeKaggle(port=80, key=KEY)
    except OSError as e:
        pytest.fail(f"cannot listen on 127.0.0.1:80 for the fake Kaggle API (something else holds it?): {e}")
    server.competitions[COMPETITION] = archive
    server.start()
    on_node(
        f"rm -rf {NODE_COPY} && echo {VARIABLE} >> /etc/environment && echo {VARIABLE} > {ENV_FILE} && "
        f'echo "Defaults env_file={ENV_FILE}" > {SUDOERS} && chmod 0440 {SUDOERS}'
    )
    env = {"KAGGLE_USERNAME": "fakeuser", "KAGGLE_KEY": KEY, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")}
    try:
        seen = on_node("sudo -u nobody printenv KAGGLE_API_ENVIRONMENT")
        assert seen == "LOCALHOST", f"sudo on the node did not pass KAGGLE_API_ENVIRONMENT ({seen!r})"
        yield server, fk.zip_members(archive), env
    finally:
        # Also the downloaded copy: the synthetic source's generator refuses a directory of files it did not write.
        on_node(f'sed -i "/^{VARIABLE}$/d" /etc/environment; rm -f {SUDOERS} {ENV_FILE}; rm -rf {NODE_COPY}')
        server.stop()


def timed(playbook, env):
    """Run site.yml with the Kaggle source and print its wall time and PLAY RECAP lines."""
    run = playbook("site.yml", *KAGGLE, env=env)
    recap = run.output[run.output.rfind("PLAY RECAP") :].strip()
    print(f"\nsite.yml -e fraud_demo_dataset_source=kaggle: {run.seconds:.1f} s wall, rc={run.rc}\n{recap}")
    return run


def test_kaggle_source_downloads_lands_and_ingests_once(aws, names, playbook, kaggle_api):
    server, files, env = kaggle_api
    # What the zip holds, counted here: bytes per file and data rows (lines minus the header).
    sizes = {name: len(data) for name, data in files.items()}
    rows = {name.removesuffix(".csv"): data.count(b"\n") - 1 for name, data in files.items()}
    assert set(files) == set(fk.IEEE_FILES)
    assert rows["train_transaction"] == TRAIN_ROWS

    first = timed(playbook, env)
    assert first.rc == 0, first
    assert first.changed > 0, first
    # The real client fetched the zip: the download API, then the signed URL it redirects to.
    assert f"/download/competitions/{COMPETITION}/{COMPETITION}.zip" in server.paths()

    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=names.bucket, Prefix=f"raw/{COMPETITION}/")["Contents"]
    assert {o["Key"].removeprefix(f"raw/{COMPETITION}/"): o["Size"] for o in listed} == sizes

    pointer = get_json(s3, names.bucket, f"curated/{COMPETITION}/latest")
    manifest = get_json(s3, names.bucket, pointer["manifest"])
    assert manifest["version"] == pointer["version"]
    assert {t["name"]: t["rows_in"] for t in manifest["tables"]} == rows
    assert {t["name"]: t["rows_quarantined"] for t in manifest["tables"]} == dict.fromkeys(rows, 0)
    assert manifest["rows"]["quarantined"] == 0
    assert check_curated(aws, names.bucket)[2] == []
    assert f"version {pointer['version']}, created and promoted to latest" in one_line(first.output), first

    server.reset("ok")
    again = timed(playbook, env)
    assert again.rc == 0, again
    assert again.changed == 0, again
    assert server.requests == []  # intact files on the node: Kaggle is not asked again
    assert "0 bytes sent, 5 unchanged and skipped" in one_line(again.output), again
    assert get_json(s3, names.bucket, f"curated/{COMPETITION}/latest") == pointer
