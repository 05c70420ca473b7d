"""A small fake of the Kaggle API, enough for the real kaggle 2.x (and 1.7) client to download data files.

With ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` the kaggle package sends ``POST /api/v1/<Service>/<Method>`` (JSON body)
to ``http://localhost`` (port 80, not configurable in the client). This server answers:

- ``competitions.CompetitionApiService/DownloadDataFiles`` and ``datasets.DatasetApiService/DownloadDataset`` with
  a 302 redirect to a signed-looking download URL (``/download/...?...&Signature=...``), like Kaggle does;
- ``GET /download/...`` with the zip (Content-Length, Last-Modified, ETag, ``Accept-Ranges: bytes``, Range
  requests answered with 206);
- ``security.OAuthService/IntrospectToken`` for access-token authentication (kaggle 2.x);
- ``competitions.CompetitionApiService/ListDataFiles`` (not used by the module, for completeness);
- kaggle 1.7's REST spelling of the downloads: ``GET /api/v1/competitions/data/download-all/<competition>`` and
  ``GET /api/v1/datasets/download/<owner>/<slug>``.

Errors use Kaggle's JSON shape ``{"code": 403, "message": "..."}``. The behaviour is chosen server-side with
``FakeKaggle.scenario`` (no request header is needed, so the real client can be used unchanged):

``ok``, ``401``, ``403`` (rules not accepted), ``404``, ``500``, ``truncated`` (every download sends half of the
bytes announced by Content-Length, then closes), ``truncated_once`` (only the first download is truncated),
``corrupt`` (a zip whose member fails its CRC check, with a correct Content-Length).

What it serves is up to the caller (``FakeKaggle.competitions`` / ``.datasets``: name -> zip bytes). Two sets of
files: ``ieee_csvs()``, five tiny 6-column CSVs under the competition's file names (fast, for the module's
tests), and ``ieee_competition_zip()``, the competition's zip with files of the real names, columns, dtypes
and row proportions, made by the project's generator at a small size and cached under ``.cache/fake-kaggle/``.

Request targets in absolute form (``POST http://localhost/api/v1/...``, as sent through an HTTP proxy) are
handled like origin-form ones. Run ``python fake_kaggle.py --help`` to start the server by hand (port 80 needs
root).
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import io
import json
import os
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
SIGNATURE = "FAKE-SIGNED-URL-SECRET-0123456789"
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "fake-kaggle"

IEEE_FILES = (
    "sample_submission.csv",
    "test_identity.csv",
    "test_transaction.csv",
    "train_identity.csv",
    "train_transaction.csv",
)


def ieee_csvs(rows: int = 20) -> dict[str, bytes]:
    """Tiny 6-column CSVs under the IEEE-CIS Fraud Detection file names (not the real columns)."""
    files = {}
    header_tx = "TransactionID,isFraud,TransactionDT,TransactionAmt,ProductCD,card1\n"
    header_id = "TransactionID,id_01,id_02,DeviceType\n"
    for name in IEEE_FILES:
        lines = []
        for i in range(rows):
            tid = 2987000 + i
            if name == "sample_submission.csv":
                lines.append(f"{tid},0.5\n")
            elif "identity" in name:
                lines.append(f"{tid},{-5.0 * (i % 3)},{70787.0 + i},{'mobile' if i % 2 else 'desktop'}\n")
            else:
                lines.append(f"{tid},{int(i % 7 == 0)},{86400 + i * 60},{12.5 + i},W,{1000 + i}\n")
        header = (
            "TransactionID,isFraud\n"
            if name == "sample_submission.csv"
            else (header_id if "identity" in name else header_tx)
        )
        files[name] = (header + "".join(lines)).encode()
    return files


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2019, 7, 15, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def ieee_competition_zip(rows: int = 1000, seed: int = 7, cache_dir: Path = CACHE_DIR) -> Path:
    """Path of ``ieee-fraud-detection.zip`` holding the five files of the real shape, ``rows`` train transactions.

    Like Kaggle's: the five CSVs at the zip's root, deflated. The files come from ``fraud_demo_jobs.synthetic``
    (rows >= its MIN_ROWS); the zip is cached per rows, seed and generator version, written atomically.
    """
    from fraud_demo_jobs import synthetic  # the jobs package from files/ (make setup installs it in .venv)

    version = getattr(synthetic, "GENERATOR_VERSION", "0")
    path = cache_dir / f"ieee-fraud-detection-rows{rows}-seed{seed}-gen{version}.zip"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        synthetic.generate(scratch, rows=rows, seed=seed)
        files = {name: (Path(scratch) / name).read_bytes() for name in IEEE_FILES}
        partial = Path(scratch) / path.name
        partial.write_bytes(make_zip(files))
        os.replace(partial, path)
    return path


def zip_members(data: bytes) -> dict[str, bytes]:
    """The files of a zip archive, by name."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def corrupt_zip(files: dict[str, bytes]) -> bytes:
    """A structurally valid zip whose first member's data fails the CRC check."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in sorted(files.items()):
            z.writestr(zipfile.ZipInfo(name, date_time=(2019, 7, 15, 12, 0, 0)), data)
    raw = bytearray(buf.getvalue())
    first = min(files)
    offset = raw.index(files[first])  # stored, so the member's bytes appear as is
    raw[offset] ^= 0xFF
    return bytes(raw)


class FakeKaggle:
    """Owns the HTTP server, the data it serves and a log of the requests it received."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 80,
        username: str = "fakeuser",
        key: str = "fake-kaggle-key-0123456789abcdef",
        token: str | None = None,
    ):
        self.username = username
        self.key = key
        self.token = token
        self.scenario = "ok"
        self.competitions: dict[str, bytes] = {}
        self.datasets: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.last_modified = email.utils.formatdate(time.time() - 3600, usegmt=True)
        self._downloads = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------------------------
    def start(self) -> FakeKaggle:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-kaggle", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self, scenario: str = "ok") -> None:
        with self._lock:
            self.scenario = scenario
            self.requests.clear()
            self._downloads = 0

    @property
    def base_url(self) -> str:
        return "http://localhost" if self.port == 80 else f"http://localhost:{self.port}"

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    # -- request handling -----------------------------------------------------------------------------------
    def _authorized(self, headers) -> bool:
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return user == self.username and key == self.key
        if auth.startswith("Bearer ") and self.token:
            return auth[7:] == self.token
        return False

    def _archive(self, kind: str, name: str) -> bytes | None:
        table = self.competitions if kind == "competitions" else self.datasets
        return table.get(name)


def _make_handler(fake: FakeKaggle):
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeKaggle/1.0"

        def log_message(self, format, *args):
            pass

        def _record(self, body=None) -> str:
            path = urlsplit(self.path).path  # origin-form, or absolute-form when used as a proxy
            with fake._lock:
                fake.requests.append(
                    {"method": self.command, "path": path, "range": self.headers.get("Range"), "body": body}
                )
            return path

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code: int, message: str):
            self._send(code, json.dumps({"code": code, "message": message}).encode())

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            path = self._record(body)
            service, _, method = path.removeprefix("/api/v1/").partition("/")
            if service == "security.OAuthService" and method == "IntrospectToken":
                active = bool(fake.token) and body.get("token") == fake.token
                answer = {"active": active, "username": fake.username if active else ""}
                return self._send(200, json.dumps(answer).encode())
            if service == "competitions.CompetitionApiService":
                kind, name = "competitions", body.get("competitionName", "")
            elif service == "datasets.DatasetApiService":
                kind, name = "datasets", f"{body.get('ownerSlug', '')}/{body.get('datasetSlug', '')}"
            else:
                kind, name = "", ""
            return self._api(kind, name, method)

        def _api(self, kind: str, name: str, method: str):
            """Authenticate, apply the scenario, answer ListDataFiles or redirect a download to its URL."""
            if fake.scenario == "401" or not fake._authorized(self.headers):
                return self._error(401, "Unauthenticated")
            if fake.scenario == "500":
                return self._error(500, "Internal server error")
            if method not in ("ListDataFiles", "DownloadDataFiles", "DownloadDataset") or not kind:
                return self._error(404, f"Unknown method {method}")
            if fake.scenario == "404" or fake._archive(kind, name) is None:
                return self._error(404, "Not found")
            if fake.scenario == "403":
                if kind == "competitions":
                    return self._error(403, RULES_MESSAGE)
                return self._error(403, "Permission denied")
            if method == "ListDataFiles":
                files = [{"name": n, "totalBytes": 0} for n in IEEE_FILES]
                return self._send(200, json.dumps({"files": files}).encode())
            slug = name.split("/")[-1]
            location = (
                f"{fake.base_url}/download/{kind}/{name}/{slug}.zip"
                f"?GoogleAccessId=fake&Expires=9999999999&Signature={SIGNATURE}"
            )
            return self._send(302, b"", "text/html", {"Location": location})

        def do_GET(self):
            path = self._record()
            # kaggle 1.7's kagglesdk uses REST paths for the same methods.
            if path.startswith("/api/v1/competitions/data/download-all/"):
                return self._api("competitions", path.rsplit("/", 1)[-1], "DownloadDataFiles")
            if path.startswith("/api/v1/datasets/download/"):
                return self._api("datasets", "/".join(path.split("/")[5:7]), "DownloadDataset")
            parts = path.split("/")
            if len(parts) < 5 or parts[1] != "download":
                return self._error(404, "Not found")
            kind, name = parts[2], "/".join(parts[3:-1])
            data = fake._archive(kind, name)
            if data is None:
                return self._error(404, "Not found")
            with fake._lock:
                fake._downloads += 1
                first = fake._downloads == 1
            if fake.scenario == "corrupt":
                data = _corrupted_copy(data)
            headers = {
                "Last-Modified": fake.last_modified,
                "Accept-Ranges": "bytes",
                "ETag": f'"{hashlib.sha256(data).hexdigest()[:32]}"',
            }
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and rng[6:].endswith("-") and rng[6:-1].isdigit():
                start = int(rng[6:-1])
                if start >= len(data):
                    return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
            status = 206 if start else 200
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            truncate = fake.scenario == "truncated" or (fake.scenario == "truncated_once" and first)
            self.send_response(status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if truncate:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def _corrupted_copy(data: bytes) -> bytes:
    """Re-pack the archive's members stored (uncompressed) and flip a data byte, keeping the zip readable."""
    return corrupt_zip(zip_members(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--scenario", default="ok")
    parser.add_argument("--username", default="fakeuser")
    parser.add_argument("--key", default="fake-kaggle-key-0123456789abcdef")
    parser.add_argument("--rows", type=int, default=1000, help="train transactions in the competition's files")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tiny", action="store_true", help="serve five tiny 6-column CSVs instead")
    args = parser.parse_args()
    fake = FakeKaggle(port=args.port, username=args.username, key=args.key)
    fake.scenario = args.scenario
    archive = make_zip(ieee_csvs()) if args.tiny else ieee_competition_zip(args.rows, args.seed).read_bytes()
    fake.competitions["ieee-fraud-detection"] = archive
    print(f"fake Kaggle API on {fake.base_url} (scenario {fake.scenario}); Ctrl-C to stop", flush=True)
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
