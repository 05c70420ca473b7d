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
