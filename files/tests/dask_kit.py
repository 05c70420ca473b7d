"""A Dask cluster for the jobs' tests, run as the playbooks run it: ``dask scheduler`` and ``dask worker``
processes (mutual TLS, encryption required) on 127.0.0.1, with certificates from a throwaway CA made here."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DASK = Path(sys.executable).parent / "dask"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def make_ca(directory: Path, cn: str = "fraud-demo-dask-ca") -> tuple:
    """A self-signed CA: (key, cert), written as ca.pem (+ ca.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, directory / "ca.key")
    return key, cert


def make_host_cert(directory: Path, ca: tuple, name: str, expired: bool = False) -> dict[str, str]:
    """A host certificate signed by ``ca`` for server and client use: {"ca", "cert", "key"} paths."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired else (now, now)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(minutes=5))
        .not_valid_after(end if expired else now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, directory / f"{name}.key")
    paths = {"ca": directory / "ca.pem", "cert": directory / f"{name}.pem", "key": directory / f"{name}.key"}
    return {k: str(v) for k, v in paths.items()}


def tls_args(tls: dict[str, str]) -> list[str]:
    return ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key", tls["key"]]


def dask_env() -> dict[str, str]:
    """The processes' environment: encryption required, and this test's AWS settings (s3fs on the workers)."""
    return {**os.environ, "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True", "PYTHONUNBUFFERED": "1"}


def start_scheduler(tls: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    cmd = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--protocol", "tls", "--no-dashboard"]
    return _spawn([*cmd, *tls_args(tls)], log)


def start_worker(
    tls: dict[str, str], scheduler: str, name: str, log: Path, nthreads: int = 1, port: int | None = None
) -> subprocess.Popen:
    """A nanny and its worker process; ``port`` fixes the worker's port (as the worker service does)."""
    cmd = [str(DASK), "worker", scheduler, "--name", name, "--host", "127.0.0.1", "--nthreads", str(nthreads)]
    cmd += ["--worker-port", str(port)] if port else []
    # The preload imports the jobs package (pandas, pyarrow, LightGBM) at the worker's start, not in its first task.
    cmd += ["--no-dashboard", "--memory-limit", "0", "--preload", "fraud_demo_jobs.dask_train"]
    return _spawn([*cmd, *tls_args(tls)], log)


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    out = open(log, "w")  # the process's log, open for its lifetime
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dask_env(), start_new_session=True)


def kill(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process and its children (a worker's nanny and its worker process)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_listening(proc: subprocess.Popen, log: Path, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@contextlib.contextmanager
def running_cluster(tmp: Path, port: int, workers: list[str]) -> Iterator[dict]:
    """A TLS scheduler on 127.0.0.1:port and the named workers (each its own nanny + process):
    {"scheduler", "tls", "procs": {name: Popen}, "ca"}."""
    ca = make_ca(tmp / "tls")
    tls = make_host_cert(tmp / "tls", ca, "node")
    address = f"tls://127.0.0.1:{port}"
    procs: dict[str, subprocess.Popen] = {}
    sched = start_scheduler(tls, port, tmp / "scheduler.log")
    try:
        wait_listening(sched, tmp / "scheduler.log", "Scheduler at:")
        for name in workers:
            procs[name] = start_worker(tls, address, name, tmp / f"worker-{name}.log")
        for name in workers:
            wait_listening(procs[name], tmp / f"worker-{name}.log", "Registered to:")
        yield {"scheduler": address, "tls": tls, "procs": procs, "ca": ca, "tmp": tmp}
    finally:
        for proc in procs.values():
            kill(proc)
        kill(sched)
