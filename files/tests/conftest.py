"""Shared fixtures of the jobs' tests."""

import os

import pytest


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """Dummy credentials and region, and nothing from the user's AWS or fraud-demo environment."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "FRAUD_DEMO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, request):
    """A lake (jobs_lake: moto, a curated version, an MLflow server) with one model trained by fraud-demo-train
    (version 1, champion), and the job's summary: one per test module that asks for it."""
    from jobs_lake import running_lake, train_model

    with running_lake(tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))) as lake:
        yield lake, train_model(lake)
