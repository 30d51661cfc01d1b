"""Plumbing both services install the same way: JSON logs with a request id, the error envelope for
every error, and Prometheus metrics. No secrets, tokens, query strings or student data are logged here."""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import re
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roster_shared.errors import ApiError, ErrorCode, envelope

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_log = logging.getLogger("http")


# one encoder for every line: json.dumps(..., default=str) builds a new one per call
_encode = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Extra fields come from `logger.info(msg, extra={"fields": {...}})`.

    Formatting the access line was most of its cost (a line per request, at INFO as deployed); the
    timestamp's date and time to the second are formatted once a second."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second: tuple[int, str] = (-1, "")  # one attribute: read and replaced atomically by threads

    def _timestamp(self, created: float) -> str:
        """As `datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`."""
        fraction, whole = math.modf(created)  # rounded as datetime.fromtimestamp rounds
        second, micros = divmod(int(whole) * 1_000_000 + round(fraction * 1_000_000), 1_000_000)
        cached_second, prefix = self._second
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, prefix)
        return f"{prefix}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old.formatter, JsonFormatter):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # no line holds the thread, process or source line, so a record need not look them up (about a
    # quarter of the cost of each access line): the logging HOWTO's "Optimization"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    # uvicorn's access log prints the query string (codes, states); ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class RequestContextMiddleware:
    """Accepts a well-formed `X-Request-ID` or makes one, returns it, logs one line per request
    (method, route path, status, duration; never the query string) and records metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else os.urandom(16).hex()
        token = request_id_var.set(request_id)
        # the handler of unexpected errors runs outside this middleware: it finds the id here
        scope["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], path, status, elapsed)
            if path not in ("/healthz", "/metrics"):
                _log.info(
                    "request",
                    extra={
                        "fields": {
                            "method": scope["method"],
                            "route": path,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                        }
                    },
                )
            request_id_var.reset(token)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Per-app registry, so several apps in one test process do not collide."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.service = service
        # labelled children cached: `.labels()` costs more than the increment on hot routes
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:  # a client can send any token as a method: keep label sets bounded
            method = "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


_HTTP_CODES = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        # the offending value is left out on purpose: it may be student data or a secret
        details.append(
            {
                "field": ".".join(loc[1:]) or ".".join(loc),
                "in": loc[0] if loc else "",
                "message": err.get("msg", ""),
            }
        )
    return details


def _allowed_methods(request: Request, fallback: str) -> str:
    """Every method some route answers at this path (Starlette names only the first route's)."""
    path = request.scope.get("path", "")
    for template, item in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\{(\w+)\\}", r"[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return ", ".join(sorted(method.upper() for method in item if method.upper() in _METHODS))
    return fallback


def log_unexpected(exc: BaseException) -> None:
    """One error line: the exception's type, where it was raised and, for a database error, the SQL
    statement's shape. Never the message: a driver's message quotes the values (student emails)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = [f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}" for frame in frames[-8:]]
    fields: dict[str, Any] = {"error": type(exc).__name__, "where": where}
    statement = getattr(exc, "statement", None)
    if isinstance(statement, str):
        fields["statement"] = " ".join(statement.split())[:300]
    logging.getLogger("errors").error("unhandled error", extra={"fields": fields})


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(exc.to_envelope(), status_code=exc.status_code, headers=headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        fields = ", ".join(d["field"] for d in details if d["field"])
        message = f"Invalid request: check {fields}." if fields else "Invalid request."
        return JSONResponse(envelope(ErrorCode.VALIDATION_ERROR, message, details), status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(
            exc.status_code,
            ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.VALIDATION_ERROR,
        )
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        headers = exc.headers
        if exc.status_code == 405:
            allow = _allowed_methods(request, (headers or {}).get("Allow", ""))
            headers = {**(headers or {}), "Allow": allow}
        return JSONResponse(envelope(code, message), status_code=exc.status_code, headers=headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = str(request.scope.get("request_id") or request_id_var.get())
        token = request_id_var.set(request_id)
        try:
            log_unexpected(exc)
        finally:
            request_id_var.reset(token)
        return JSONResponse(
            envelope(ErrorCode.INTERNAL_ERROR, f"Internal error; quote request id {request_id}."),
            status_code=500,
            headers={"x-request-id": request_id},
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def install_observability(app: FastAPI, service: str) -> Metrics:
    """Error envelope, request ids, access log and `/metrics` in one call."""
    metrics = Metrics(service)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return metrics.response()

    return metrics
