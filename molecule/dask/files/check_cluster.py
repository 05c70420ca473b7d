"""Molecule dask: talk to the sandbox's Dask cluster as a client, from the node (run with the jobs' venv python).

check_cluster.py run SCHEDULER CA CERT KEY WORKER...
    with the certificate: run a task on each named worker -> {"workers": {name: address}, "ran_on": {name: name}}
check_cluster.py refused ADDRESS [CA [CERT KEY]]
    one RPC (identity) to a scheduler or worker without a certificate (CA only), with another CA's certificate,
    or over plain TCP (no CA) -> {"refused": true|false, "error": "...", "answer": "..."}
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time

from distributed import Client, get_worker
from distributed.comm import connect
from distributed.security import Security


def worker_name() -> str:
    """Runs on the worker: the name it registered with (its --name)."""
    return str(get_worker().name)


def run_on_workers(scheduler: str, ca: str, cert: str, key: str, names: list[str]) -> dict[str, object]:
    security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    with Client(scheduler, security=security, timeout=30) as client:
        deadline = time.monotonic() + 60
        while True:
            by_name = {str(w["name"]): a for a, w in client.scheduler_info()["workers"].items()}
            if set(names) <= set(by_name) or time.monotonic() > deadline:
                break
            time.sleep(1)
        missing = sorted(set(names) - set(by_name))
        if missing:
            return {"workers": by_name, "missing": missing}
        futures = {n: client.submit(worker_name, workers=[by_name[n]], pure=False) for n in names}
        return {"workers": by_name, "ran_on": {n: f.result(timeout=60) for n, f in futures.items()}}


async def identity(address: str, ca: str | None, cert: str | None, key: str | None) -> dict[str, object]:
    kwargs: dict[str, object] = {}
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False  # as Dask's own clients: the CA is the identity check
        if cert and key:
            ctx.load_cert_chain(cert, key)
        kwargs["ssl_context"] = ctx
    try:
        comm = await connect(address, timeout=10, **kwargs)
        await comm.write({"op": "identity", "reply": True})
        answer = await asyncio.wait_for(comm.read(), 10)
        await comm.close()
        return {"refused": False, "answer": str(answer)[:200]}
    except Exception as error:  # what the server did is the answer: any failure to get one is a refusal
        return {"refused": True, "error": f"{type(error).__name__}: {error}"[:300]}


def main(argv: list[str]) -> int:
    if len(argv) >= 6 and argv[1] == "run":
        print(json.dumps(run_on_workers(argv[2], argv[3], argv[4], argv[5], argv[6:])))
    elif len(argv) in (3, 4, 6) and argv[1] == "refused":
        rest = argv[3:] + [None] * (3 - len(argv[3:]))
        print(json.dumps(asyncio.run(identity(argv[2], rest[0], rest[1], rest[2]))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
