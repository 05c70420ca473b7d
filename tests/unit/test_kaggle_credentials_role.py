"""Tests of roles/kaggle_credentials with real ansible-playbook runs.

The "node" is this machine through the local connection, with kaggle_credentials_user = the current user and
kaggle_credentials_home = a temporary directory; the controller side (HOME, KAGGLE_CONFIG_DIR, KAGGLE_*) points at
other temporary directories, so the real ~/.kaggle is never read or written. Every run's output (among them -vvv and
--check --diff runs, and failures) is checked for each fake key and token.

ansible-playbook takes ~3 s a run, so the module runs every scenario once, concurrently, in a module-scoped fixture;
each test then checks its scenario's runs.

Run: .venv/bin/pytest -q tests/unit/test_kaggle_credentials_role.py
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"
ANSIBLE_VAULT = VENV_BIN / "ansible-vault"

USERNAME = "fraud-demo-tester"
KEY = "0123456789abcdef-fake-kaggle-key-5f3c9a1e"
TOKEN = "KGAT_fake-access-token-8d1e2f3a4b5c6d7e"
# Keys of the lower-precedence sources in the precedence test.
ENV_KEY = "fake-env-key-77aa88bb99cc"
JSON_KEY = "fake-json-key-11dd22ee33ff"
SECRETS = (KEY, TOKEN, ENV_KEY, JSON_KEY)
# `-e ansible_distribution=Fedora` changes only the injected variable, not ansible_facts, which the role reads; an
# extra var named ansible_facts replaces the facts (and the role then gathers none).
FEDORA = (
    '{"ansible_facts": {"distribution": "Fedora", "distribution_version": "40", "distribution_major_version": "40"}}'
)

pytestmark = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="needs the project venv (make setup)")


@dataclass
class Run:
    args: tuple[str, ...]
    rc: int
    out: str

    @property
    def text(self) -> str:
        """The output with whitespace runs collapsed: the YAML result format wraps long messages."""
        return " ".join(self.out.split())

    @property
    def changed(self) -> int:
        m = re.search(r"^node\s*:\s*ok=\d+\s+changed=(\d+)", self.out, re.MULTILINE)
        assert m, f"no play recap in:\n{self.out}"
        return int(m.group(1))

    def ok(self) -> Run:
        assert self.rc == 0, f"ansible-playbook {' '.join(self.args)} failed (rc={self.rc}):\n{self.out}"
        return self

    def failed_with(self, *fragments: str) -> str:
        """The task-failure message (the [ERROR] line), after checking that it contains every fragment."""
        assert self.rc != 0, f"expected a failure:\n{self.out}"
        errors = [line for line in self.out.splitlines() if line.startswith("[ERROR]: Task failed")]
        assert len(errors) == 1, f"expected exactly one failed task:\n{self.out}"
        for fragment in fragments:
            assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
        return errors[0]


@dataclass
class Site:
    """A stand-in node home, a controller HOME and a playbook that applies the role, all under one directory."""

    base: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.node_home = self.base / "node-home"
        self.ctrl_home = self.base / "controller-home"
        self.ctrl_kaggle = self.ctrl_home / ".kaggle"
        for d in (self.node_home, self.ctrl_home):
            d.mkdir(parents=True)
        (self.base / "inventory.ini").write_text(
            f"node ansible_connection=local ansible_python_interpreter={sys.executable} ansible_become=false\n"
        )
        play = [
            {
                "name": "Apply kaggle_credentials to a stand-in node",
                "hosts": "node",
                "gather_facts": False,
                "vars": {"kaggle_credentials_user": getpass.getuser(), "kaggle_credentials_home": str(self.node_home)},
                "roles": ["kaggle_credentials"],
            }
        ]
        (self.base / "play.yml").write_text(json.dumps(play, indent=2))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE_", "ANSIBLE_", "PY"))}
        self.env = {
            **base_env,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.ctrl_home),
            "KAGGLE_CONFIG_DIR": str(self.ctrl_kaggle),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_NOCOLOR": "1",
            # Only the ini plugin: the project's list starts with amazon.aws.aws_ec2, slow to load.
            "ANSIBLE_INVENTORY_ENABLED": "ansible.builtin.ini",
            "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-tmp"),
            **self.env,
        }

    @property
    def node_kaggle(self) -> Path:
        return self.node_home / ".kaggle"

    def run(self, *args: str, env: dict[str, str] | None = None) -> Run:
        argv = (str(ANSIBLE_PLAYBOOK), "-i", "inventory.ini", "play.yml", *args)
        proc = subprocess.run(
            argv,
            cwd=self.base,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=180,
            check=False,
        )
        run = Run(tuple(args), proc.returncode, proc.stdout)
        for secret in SECRETS:
            assert secret not in run.text, f"a credential value leaked into the output of {args}:\n{run.out}"
        return run

    def vars_file(self, values: dict[str, str], vault: bool = False) -> tuple[str, ...]:
        """-e arguments for the given variables; with vault=True they are !vault-encrypted strings."""
        path = self.base / "credentials.yml"
        if not vault:
            path.write_text(json.dumps(values))
            return ("-e", f"@{path}")
        password = self.base / "vault-password"
        password.write_text("not-a-real-vault-password\n")
        lines = []
        for name, value in values.items():
            lines.append(
                subprocess.run(
                    [
                        str(ANSIBLE_VAULT),
                        "encrypt_string",
                        "--vault-password-file",
                        str(password),
                        "--stdin-name",
                        name,
                    ],
                    input=value,
                    env=self.env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.rstrip("\n")
            )
        path.write_text("\n".join(lines) + "\n")
        return ("-e", f"@{path}", "--vault-password-file", str(password))

    def controller_json(self, content: str, mode: int = 0o600, directory: Path | None = None) -> Path:
        directory = directory or self.ctrl_kaggle
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / "kaggle.json"
        path.write_text(content)
        path.chmod(mode)
        return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_nothing_written(site: Site) -> None:
    assert not site.node_kaggle.exists(), f"the role wrote {sorted(p.name for p in site.node_kaggle.iterdir())}"


# Every scenario gets its own Site and returns its runs; they all run concurrently in the fixture below.
SCENARIOS: dict[str, Callable[[Site], dict[str, Run]]] = {}


def scenario(func: Callable[[Site], dict[str, Run]]) -> Callable[[Site], dict[str, Run]]:
    SCENARIOS[func.__name__] = func
    return func


@scenario
def vault_vars(site: Site) -> dict[str, Run]:
    creds = site.vars_file({"fraud_demo_kaggle_username": USERNAME, "fraud_demo_kaggle_key": KEY}, vault=True)
    runs = {"check_before": site.run(*creds, "--check", "--diff")}
    assert not site.node_kaggle.exists(), "--check wrote to the node"
    runs["first"] = site.run(*creds, "-vvv")
    runs["second"] = site.run(*creds)
    runs["check_after"] = site.run(*creds, "--check", "--diff", "-vvv")
    return runs


@scenario
def env_token(site: Site) -> dict[str, Run]:
    return {"run": site.run("--diff", "-vvv", env={"KAGGLE_API_TOKEN": TOKEN})}


@scenario
def env_token_file(site: Site) -> dict[str, Run]:
    token_file = site.base / "token.txt"
    token_file.write_text(f"{TOKEN}\n")
    token_file.chmod(0o600)
    return {"run": site.run(env={"KAGGLE_API_TOKEN": str(token_file)})}


@scenario
def controller_token_file(site: Site) -> dict[str, Run]:
    site.ctrl_kaggle.mkdir(mode=0o700)
    token = site.ctrl_kaggle / "access_token"
    token.write_text(f"{TOKEN}\n")
    token.chmod(0o600)
    return {"run": site.run()}


@scenario
def vars_token_and_pair(site: Site) -> dict[str, Run]:
    values = {
        "fraud_demo_kaggle_username": USERNAME,
        "fraud_demo_kaggle_key": KEY,
        "fraud_demo_kaggle_api_token": TOKEN,
    }
    creds = site.vars_file(values)
    return {"run": site.run(*creds), "again": site.run(*creds)}


@scenario
def controller_json(site: Site) -> dict[str, Run]:
    # KAGGLE_CONFIG_DIR elsewhere than ~/.kaggle: the role follows it, as the kaggle client does.
    config_dir = site.base / "kaggle-config"
    site.controller_json(json.dumps({"username": USERNAME, "key": KEY}), directory=config_dir)
    return {"run": site.run(env={"KAGGLE_CONFIG_DIR": str(config_dir)})}


@scenario
def open_permissions(site: Site) -> dict[str, Run]:
    site.controller_json(json.dumps({"username": USERNAME, "key": KEY}), mode=0o644)
    return {"run": site.run()}


@scenario
def precedence(site: Site) -> dict[str, Run]:
    site.controller_json(json.dumps({"username": "json-user", "key": JSON_KEY}))
    env = {"KAGGLE_USERNAME": "env-user", "KAGGLE_KEY": ENV_KEY}
    creds = site.vars_file({"kaggle_credentials_username": USERNAME, "kaggle_credentials_key": KEY})
    runs = {"vars_win": site.run(*creds, env=env)}
    shutil.move(site.node_kaggle / "kaggle.json", site.base / "vars_win.json")
    runs["env_wins"] = site.run(env=env)
    return runs


@scenario
def synthetic(site: Site) -> dict[str, Run]:
    site.controller_json("this is not JSON")  # would fail if the role looked at it
    return {"run": site.run("-e", "fraud_demo_dataset_source=synthetic")}


@scenario
def no_credentials(site: Site) -> dict[str, Run]:
    return {"run": site.run()}


@scenario
def invalid_json(site: Site) -> dict[str, Run]:
    site.controller_json(f'{{"username": "{USERNAME}", "key": "{KEY}",}}')
    return {"run": site.run("-vvv")}


@scenario
def json_without_key(site: Site) -> dict[str, Run]:
    site.controller_json(json.dumps({"username": USERNAME, "secret": KEY}))
    return {"run": site.run()}


@scenario
def json_empty_username(site: Site) -> dict[str, Run]:
    site.controller_json(json.dumps({"username": " ", "key": KEY}))
    return {"run": site.run()}


@scenario
def partial_pair(site: Site) -> dict[str, Run]:
    return {"run": site.run(env={"KAGGLE_KEY": KEY})}


@scenario
def unsupported_os(site: Site) -> dict[str, Run]:
    return {"run": site.run("-e", FEDORA, env={"KAGGLE_USERNAME": USERNAME, "KAGGLE_KEY": KEY})}


@dataclass
class Outcome:
    site: Site
    runs: dict[str, Run]


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Outcome | BaseException]]:
    base = Path(tempfile.mkdtemp(prefix="kaggle-credentials-role-"))

    def play(name: str) -> Outcome | BaseException:
        try:
            site = Site(base / name)
            return Outcome(site, SCENARIOS[name](site))
        except BaseException as e:  # reported by the test of that scenario
            return e

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            yield dict(zip(SCENARIOS, pool.map(play, SCENARIOS), strict=True))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def outcome(request: pytest.FixtureRequest, outcomes: dict[str, Outcome | BaseException]) -> Outcome:
    result = outcomes[request.param]
    if isinstance(result, BaseException):
        raise result
    return result


def scenario_of(name: str):
    return pytest.mark.parametrize("outcome", [name], indirect=True)


@scenario_of("vault_vars")
def test_vault_vars_install_kaggle_json_0600_idempotently(outcome: Outcome) -> None:
    site, runs = outcome.site, outcome.runs
    # --check --diff before the first run: reports the changes, writes nothing (checked in the scenario), shows no
    # secret (checked in Site.run for every run).
    assert runs["check_before"].ok().changed == 2
    assert "kaggle.json with the username and key" in runs["check_before"].text
    first = runs["first"].ok()
    assert first.changed == 2
    assert "no_log: true" in first.text  # -vvv shows the censored result, not the content
    assert "Kaggle credentials from Ansible variables" in first.text
    assert mode(site.node_kaggle) == 0o700
    kaggle_json = site.node_kaggle / "kaggle.json"
    assert mode(kaggle_json) == 0o600
    assert kaggle_json.stat().st_uid == os.getuid()
    assert json.loads(kaggle_json.read_text()) == {"username": USERNAME, "key": KEY}
    assert not (site.node_kaggle / "access_token").exists()
    assert runs["second"].ok().changed == 0
    assert runs["check_after"].ok().changed == 0


@pytest.mark.parametrize("outcome", ["env_token", "env_token_file", "controller_token_file"], indirect=True)
def test_access_token_form_writes_access_token_only(outcome: Outcome) -> None:
    run = outcome.runs["run"].ok()
    assert "the node gets access_token." in run.text
    token = outcome.site.node_kaggle / "access_token"
    assert token.read_text() == f"{TOKEN}\n"
    assert mode(token) == 0o600
    assert mode(outcome.site.node_kaggle) == 0o700
    assert not (outcome.site.node_kaggle / "kaggle.json").exists()


@scenario_of("vars_token_and_pair")
def test_both_forms_from_one_source_install_both(outcome: Outcome) -> None:
    assert outcome.runs["run"].ok().changed == 3
    assert outcome.runs["again"].ok().changed == 0
    assert (outcome.site.node_kaggle / "access_token").read_text() == f"{TOKEN}\n"
    assert json.loads((outcome.site.node_kaggle / "kaggle.json").read_text())["key"] == KEY


@scenario_of("controller_json")
def test_controller_kaggle_json_in_kaggle_config_dir(outcome: Outcome) -> None:
    run = outcome.runs["run"].ok()
    assert "kaggle-config/kaggle.json on the controller" in run.text
    assert "WARNING" not in run.text
    assert json.loads((outcome.site.node_kaggle / "kaggle.json").read_text()) == {"username": USERNAME, "key": KEY}


@scenario_of("open_permissions")
def test_open_controller_kaggle_json_warns_and_still_works(outcome: Outcome) -> None:
    run = outcome.runs["run"].ok()
    path = outcome.site.ctrl_kaggle / "kaggle.json"
    assert f"WARNING: {path} has mode 0644" in run.text
    assert f"chmod 600 {path}" in run.text
    assert mode(outcome.site.node_kaggle / "kaggle.json") == 0o600


@scenario_of("precedence")
def test_variables_win_over_environment_and_environment_over_files(outcome: Outcome) -> None:
    site = outcome.site
    assert "Kaggle credentials from Ansible variables" in outcome.runs["vars_win"].ok().text
    assert json.loads((site.base / "vars_win.json").read_text()) == {"username": USERNAME, "key": KEY}
    assert "Kaggle credentials from the controller's environment" in outcome.runs["env_wins"].ok().text
    assert json.loads((site.node_kaggle / "kaggle.json").read_text()) == {"username": "env-user", "key": ENV_KEY}


@scenario_of("synthetic")
def test_synthetic_dataset_skips_everything(outcome: Outcome) -> None:
    run = outcome.runs["run"].ok()
    assert "Kaggle credentials: skipped (fraud_demo_dataset_source is synthetic" in run.text
    assert "Preflight" not in run.text
    assert outcome.runs["run"].changed == 0
    assert_nothing_written(outcome.site)


@scenario_of("no_credentials")
def test_no_credentials_fail_with_one_message_naming_every_place(outcome: Outcome) -> None:
    site = outcome.site
    outcome.runs["run"].failed_with(
        "No Kaggle API credentials found",
        "fraud_demo_kaggle_username + fraud_demo_kaggle_key",
        "fraud_demo_kaggle_api_token",
        "KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN",
        f"{site.ctrl_kaggle}/kaggle.json",
        "https://www.kaggle.com/settings/api",
        "fraud_demo_dataset_source=synthetic",
    )
    assert_nothing_written(site)


@pytest.mark.parametrize(
    ("outcome", "problem"),
    [
        ("invalid_json", "is not valid JSON (Expecting property name enclosed in double quotes at line 1"),
        ("json_without_key", 'has no "key"'),
        ("json_empty_username", 'has an empty "username"'),
    ],
    indirect=["outcome"],
)
def test_bad_controller_kaggle_json_fails_naming_the_file(outcome: Outcome, problem: str) -> None:
    path = outcome.site.ctrl_kaggle / "kaggle.json"
    message = outcome.runs["run"].failed_with(f"kaggle.json at {path} {problem}")
    assert USERNAME not in message
    assert_nothing_written(outcome.site)


@scenario_of("partial_pair")
def test_key_without_username_fails_clearly(outcome: Outcome) -> None:
    outcome.runs["run"].failed_with("KAGGLE_KEY is set but KAGGLE_USERNAME is empty")
    assert_nothing_written(outcome.site)


@scenario_of("unsupported_os")
def test_unsupported_os_fails_before_anything_else(outcome: Outcome) -> None:
    outcome.runs["run"].failed_with("supports Ubuntu 22.04 and Debian 12; node runs Fedora 40")
    assert_nothing_written(outcome.site)
