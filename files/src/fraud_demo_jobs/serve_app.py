"""The scoring service's HTTP API (FastAPI): ``POST /predict``, ``GET /health``, ``GET /version``.

``/predict`` is an ``async def`` that does its CPU work inline (validate, features, predict: well under a
millisecond for one row), so a request never waits for a thread-pool hop; the event loop stays responsive
because no request holds it for long (a batch is capped by --max-batch-rows). Order of checks, each with its
status: bearer token (401, with ``WWW-Authenticate``), a served model (503 with the reason), body size before
reading it all (413: Content-Length, then the streamed bytes), JSON (400), batch size (413), the contract (422,
every problem with its row, field and rule). Anything else is a bug: 500 with the request id, logged with the
traceback; the service keeps serving. Every response carries ``X-Request-ID``; every request is one log line
(``serve_sink``).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .serve_input import InputError, parse_predict_body
from .serve_model import ModelHolder
from .serve_sink import ServeSink

LOG_KEY = "fraud_demo.request"  # the ASGI scope's entry for this request's log fields
REALM = 'Bearer realm="fraud-demo-scoring"'


@dataclass(frozen=True)
class AppSettings:
    token: str | None  # None: no authentication (only with --no-auth)
    max_body_bytes: int
    max_batch_rows: int
    service_code_version: str


class _BodyTooLarge(Exception):
    pass


def json_response(status: int, doc: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(doc).encode(), status, headers=headers, media_type="application/json")


def error_response(status: int, error: str, problems: list | None = None, **extra) -> Response:
    headers = extra.pop("headers", None)
    return json_response(status, {"error": error, "problems": problems or [], **extra}, headers)


class RequestLog:
    """Pure ASGI middleware (no per-request task or copy of the body): a request id, the X-Request-ID header,
    and one log line with status and latency when the response has gone out."""

    def __init__(self, app, sink: ServeSink):
        self.app, self.sink = app, sink

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = {"request_id": uuid.uuid4().hex, "path": scope["path"], "method": scope["method"], "rows": 0}
        scope[LOG_KEY] = info
        status = [500]

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", info["request_id"].encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            rows = info.pop("rows")
            self.sink.request(info, status[0], (time.perf_counter() - started) * 1000.0, rows)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (``_BodyTooLarge``) as soon as it is known to exceed ``limit`` bytes: from Content-Length
    before reading anything, else while streaming (chunked bodies, lying headers)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _BodyTooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def token_problem(header: str | None, token: str) -> str | None:
    """None when ``Authorization`` carries the token; else what is wrong (constant-time comparison)."""
    if not header:
        return "missing bearer token: send Authorization: Bearer <token>"
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("latin-1"), token.encode()):
        return "invalid bearer token"
    return None


def create_app(holder: ModelHolder, sink: ServeSink, settings: AppSettings) -> FastAPI:
    app = FastAPI(title="fraud-demo scoring", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestLog, sink=sink)
    log = holder.events

    @app.get("/health")
    async def health() -> Response:
        return json_response(200, holder.status())

    @app.get("/version")
    async def version() -> Response:
        served = holder.current
        if served is None:
            return error_response(503, "no model is served", reason=holder.status()["reason"])
        doc = {**served.model.lineage.as_dict(), "loaded_at": served.loaded_at}
        doc["service_code_version"] = settings.service_code_version
        return json_response(200, doc)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        info = request.scope[LOG_KEY]
        if settings.token is not None:
            problem = token_problem(request.headers.get("authorization"), settings.token)
            if problem is not None:
                challenge = REALM if problem.startswith("missing") else f'{REALM}, error="invalid_token"'
                return error_response(401, problem, headers={"WWW-Authenticate": challenge})
        served = holder.current
        if served is None:
            return error_response(503, f"no model is served: {holder.status()['reason']}")
        info["model_version"] = served.version
        try:
            body = await read_body(request, settings.max_body_bytes)
        except _BodyTooLarge:
            return error_response(413, f"the body is larger than the limit of {settings.max_body_bytes} bytes")
        try:
            rows, batch = parse_predict_body(body, settings.max_batch_rows)
        except InputError as e:
            return error_response(e.status, e.message, e.problems)
        try:
            return _scored(served, rows, batch, info, sink)
        except Exception as e:  # a bug or a model fault, not the user's input: say so, keep serving
            log("request_failed", level=logging.ERROR, request_id=info["request_id"], error=f"{type(e).__name__}: {e}")
            traceback.print_exc()
            return error_response(500, "internal error while scoring", request_id=info["request_id"])

    return app


def _scored(served, rows: list[dict], batch: bool, info: dict, sink: ServeSink) -> Response:
    scores = served.predict_records(rows)
    lineage = served.model.lineage
    rid = info["request_id"]
    info["rows"] = len(rows)
    if sink.wants_sample():
        meta = {"request_id": rid, "model_version": lineage.model_version}
        meta |= {"dataset_version": lineage.dataset_version, "scored_at": time.time()}
        sink.sample(rows, scores, meta)
    head = {"request_id": rid, "model_version": lineage.model_version, "dataset_version": lineage.dataset_version}
    if not batch:
        info["score"] = p = float(scores[0])
        return json_response(200, {**head, "TransactionID": rows[0].get("TransactionID"), "fraud_probability": p})
    pairs = zip(rows, scores, strict=True)
    preds = [{"TransactionID": r.get("TransactionID"), "fraud_probability": float(p)} for r, p in pairs]
    return json_response(200, {**head, "predictions": preds})
