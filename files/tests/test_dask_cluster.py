"""The Dask cluster client (dask_cluster): mutual TLS, the expected workers, the worker-loss watchdog."""

from __future__ import annotations

import signal
import socket
import ssl
import time

import psutil
import pytest
from dask_kit import kill, make_ca, make_host_cert, running_cluster, start_worker, wait_listening
from distributed import Client
from fraud_demo_jobs import dask_cluster as DC
from fraud_demo_jobs.errors import JobError
from jobs_lake import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("dask"), free_port(), ["w1"]) as c:
        yield c


def _client(cluster, **kw):
    tls = cluster["tls"]
    return DC.connect(cluster["scheduler"], tls["ca"], tls["cert"], tls["key"], **kw)


def test_a_client_with_the_cluster_certificate_connects_over_tls(cluster):
    with _client(cluster) as client:
        workers = DC.wait_for_expected_workers(client, {"w1": "127.0.0.1"}, timeout=10)
        assert list(workers.values()) == ["w1"]
        assert all(addr.startswith("tls://127.0.0.1:") for addr in workers)
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_a_client_without_a_certificate_is_refused(cluster):
    # Encryption alone (trusting the CA, no client certificate) is not enough: the scheduler requires one from its
    # CA and drops the connection (TLS 1.3: the "certificate required" alert, or EOF, on the first read). The same
    # socket with the certificate stays open (Dask's handshake, or silence until the read times out).
    def first_read(with_cert: bool) -> str:
        ctx = ssl.create_default_context(cafile=cluster["tls"]["ca"])
        ctx.check_hostname = False
        if with_cert:
            ctx.load_cert_chain(cluster["tls"]["cert"], cluster["tls"]["key"])
        host, port = cluster["scheduler"].removeprefix("tls://").split(":")
        try:
            with socket.create_connection((host, int(port)), timeout=3) as raw, ctx.wrap_socket(raw) as s:
                return "open" if s.recv(1024) else "closed"
        except TimeoutError:
            return "open"
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return "closed"

    assert first_read(with_cert=False) == "closed"
    assert first_read(with_cert=True) == "open"


def test_a_plain_connection_is_refused(cluster):
    # Nor does the scheduler speak to a client without TLS at all.
    with pytest.raises((OSError, TimeoutError)):
        Client(cluster["scheduler"].replace("tls://", "tcp://"), timeout=3, set_as_default=False)


def test_a_certificate_from_another_ca_is_refused_with_the_fix(cluster, tmp_path):
    other = make_host_cert(tmp_path, make_ca(tmp_path, "someone-else"), "intruder")
    with pytest.raises(JobError) as e:
        DC.connect(cluster["scheduler"], other["ca"], other["cert"], other["key"], timeout=3)
    msg = str(e.value)
    assert "refused the TLS handshake" in msg and other["cert"] in msg and other["ca"] in msg
    assert "re-run playbooks/train.yml" in msg


def test_an_expired_certificate_is_refused_with_the_fix(cluster, tmp_path):
    expired = make_host_cert(tmp_path, cluster["ca"], "stale", expired=True)
    expired["ca"] = cluster["tls"]["ca"]
    with pytest.raises(JobError) as e:
        DC.connect(cluster["scheduler"], expired["ca"], expired["cert"], expired["key"], timeout=3)
    assert "refused the TLS handshake" in str(e.value) and "regenerates expired certificates" in str(e.value)


def test_missing_tls_files_are_named_before_connecting(cluster, tmp_path):
    with pytest.raises(JobError) as e:
        DC.connect(cluster["scheduler"], cluster["tls"]["ca"], str(tmp_path / "gone.pem"), cluster["tls"]["key"])
    assert f"--dask-tls-cert {tmp_path / 'gone.pem'}" in str(e.value) and "playbooks/train.yml" in str(e.value)


def test_an_unreachable_scheduler_says_so(cluster):
    address = f"tls://127.0.0.1:{free_port()}"
    t = time.monotonic()
    with pytest.raises(JobError) as e:
        DC.connect(address, cluster["tls"]["ca"], cluster["tls"]["cert"], cluster["tls"]["key"], timeout=2)
    assert f"the Dask scheduler {address} is unreachable within 2 s" in str(e.value)
    assert time.monotonic() - t < 20


def test_a_plain_tcp_address_is_rejected(cluster):
    with pytest.raises(JobError, match="must be a tls:// address"):
        DC.connect("tcp://127.0.0.1:8786", cluster["tls"]["ca"], cluster["tls"]["cert"], cluster["tls"]["key"])


def test_too_few_workers_names_the_missing_one(cluster):
    with _client(cluster) as client, pytest.raises(JobError) as e:
        DC.wait_for_expected_workers(client, {"w1": "127.0.0.1", "w9": "127.0.9.9"}, timeout=1)
    assert "1 of 2 expected Dask workers did not join" in str(e.value)
    assert "w9 (127.0.9.9)" in str(e.value) and "w1" not in str(e.value).split(":", 2)[-1]


def test_peak_rss_per_worker(cluster):
    with _client(cluster) as client:
        workers = DC.wait_for_expected_workers(client, {"w1": "127.0.0.1"}, timeout=10)
        (peak,) = DC.peak_rss(client, workers)
    # A Python process with distributed imported holds tens of MB; a worker well under 4 GB here.
    assert peak["name"] == "w1" and 20 < peak["peak_rss_mb"] < 4096


def test_a_worker_lost_while_watched_fails_naming_it(cluster):
    port_log = cluster["tmp"] / "worker-w2.log"
    w2 = start_worker(cluster["tls"], cluster["scheduler"], "w2", port_log)
    try:
        wait_listening(w2, port_log, "Registered to:")
        with _client(cluster) as client:
            workers = DC.wait_for_expected_workers(client, {"w1": "a", "w2": "b"}, timeout=20)
            w1_before = _by_name(client)["w1"][0]
            started = time.monotonic()
            # Stands in for a LightGBM ring waiting for its lost peer (up to LightGBM's socket time-out, 2 h).
            ring = client.submit(time.sleep, 600, workers=[a for a, n in workers.items() if n == "w1"], pure=False)
            while _by_name(client)["w1"][1] == 0:
                assert time.monotonic() - started < 30, "the task never started on w1"
                time.sleep(0.2)
            with DC.WorkerWatch(client, workers) as watch, pytest.raises(JobError) as e:
                kill(w2, signal.SIGKILL)
                DC.run_watched(client, watch, "training", ring.result)
        assert time.monotonic() - started < 90
        msg = str(e.value)
        assert msg.startswith("Dask worker w2 (tls://127.0.0.1:") and "left the cluster during training" in msg
        # The survivor does not keep running the failed run's task (the next run's tasks would queue behind it):
        # it was restarted, a new process under the same name, with nothing to do.
        with _client(cluster) as client:
            deadline = time.monotonic() + 60
            while (now := _by_name(client).get("w1")) is None or now[0] == w1_before or now[1]:
                assert time.monotonic() < deadline, _by_name(client)
                time.sleep(0.5)
            w1 = [a for a, n in DC.worker_names(client).items() if n == "w1"]
            assert client.submit(int, "1", workers=w1, pure=False).result(timeout=30) == 1  # its thread is free
    finally:
        kill(w2)


def _scheduler_workers(client) -> dict[str, tuple[str, str, int]]:
    """Address -> (name, its process's server id, how many tasks it is running or has queued), per the scheduler."""
    return client.run_on_scheduler(
        lambda dask_scheduler: {
            a: (str(w.name), w.server_id, len(w.processing)) for a, w in dask_scheduler.workers.items()
        }
    )


def _by_name(client) -> dict[str, tuple[str, int]]:
    return {name: (sid, busy) for name, sid, busy in _scheduler_workers(client).values()}


def _server_ids(client) -> dict[str, str]:
    return {a: sid for a, (_, sid, _) in _scheduler_workers(client).items()}


def test_a_worker_restarted_at_the_same_address_counts_as_lost(cluster):
    # The worker service's ports are fixed, so a worker process its nanny (or systemd) restarts comes back at the
    # same address within seconds, and a task lost with it may run again there: the watch must still call it lost.
    log = cluster["tmp"] / "worker-w3.log"
    w3 = start_worker(cluster["tls"], cluster["scheduler"], "w3", log, port=free_port())
    try:
        wait_listening(w3, log, "Registered to:")
        with _client(cluster) as client:
            workers = DC.wait_for_expected_workers(client, {"w3": "127.0.0.1"}, timeout=20)
            (address,) = workers
            with DC.WorkerWatch(client, workers) as watch:
                first = _server_ids(client)[address]
                (process,) = [p for p in psutil.Process(w3.pid).children() if "spawn_main" in " ".join(p.cmdline())]
                process.kill()  # the worker process only: its nanny starts another one on the same port
                deadline = time.monotonic() + 60
                while _server_ids(client).get(address, first) == first:
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.2)
                while not watch.lost and time.monotonic() < deadline:  # the scheduler's remove-worker event
                    time.sleep(0.2)
                assert watch.lost == {address: "w3"}
                watch.lost.clear()  # as if the event had been missed: asking the scheduler must find it too
                watch.check()
                assert watch.lost == {address: "w3"}
                assert address in _server_ids(client)  # back, at the same address
    finally:
        kill(w3)
