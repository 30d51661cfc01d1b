"""Text input is text: one ASGI middleware refuses, for every route, a path, query or JSON body value that
holds a character PostgreSQL cannot store (NUL, or a lone UTF-16 surrogate) with 422 and the error
envelope naming the field, before any route or database sees it. Without it such a value reaches the
database driver, which fails with a 500 on PostgreSQL (and stores it as-is on SQLite)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roster_shared.errors import ErrorCode, envelope

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "must not contain NUL or unpaired surrogate characters"
# a JSON body that is larger than this is left to the route (none of the JSON routes take one this big)
MAX_JSON_BODY = 1024 * 1024


def unstorable(value: str) -> bool:
    return _UNSTORABLE.search(value) is not None


def _path_fields(app: Any, path: str) -> list[str]:
    """Names of the path parameters that hold an unstorable character ("path" when no route matches).
    Routes are looked up in the OpenAPI document: routing has not happened yet."""
    templates = app.openapi().get("paths", {}) if hasattr(app, "openapi") else {}
    for template in templates:
        pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
        match = re.fullmatch(pattern, path)
        if match is not None:
            names = [name for name, value in match.groupdict().items() if unstorable(value)]
            return names or ["path"]
    return ["path"]


def _query_fields(query_string: bytes) -> list[str]:
    if not query_string:
        return []
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return sorted(
        {name if not unstorable(name) else "query" for name, value in pairs if unstorable(name + value)}
    )


def _json_strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(field, text) for every key and string value, the field dotted as in validation errors."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            field = f"{where}.{key}" if where else str(key)
            yield field, str(key)
            yield from _json_strings(item, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_strings(item, f"{where}.{index}" if where else str(index))


def _body_fields(body: bytes) -> list[str]:
    # NUL and surrogates can only be in valid JSON as \u escapes: no escape, nothing to look at
    if b"\\u" not in body:
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return []  # the route's own validation answers a malformed body
    return sorted({field or "body" for field, text in _json_strings(document, "") if unstorable(text)})


def _refusal(location: str, fields: list[str]) -> JSONResponse:
    details = [{"field": field, "in": location, "message": MESSAGE} for field in fields]
    message = f"Invalid request: check {', '.join(fields)}."
    return JSONResponse(envelope(ErrorCode.VALIDATION_ERROR, message, details), status_code=422)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = bytes(value).split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class TextInputGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if unstorable(scope.get("path", "")):
            await _refusal("path", _path_fields(scope.get("app"), scope["path"]))(scope, receive, send)
            return
        fields = _query_fields(scope.get("query_string", b""))
        if fields:
            await _refusal("query", fields)(scope, receive, send)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, replay = await read_body(receive)
        fields = _body_fields(body) if body is not None else []
        if fields:
            await _refusal("body", fields)(scope, receive, send)
            return
        await self.app(scope, replay, send)


async def read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (None past MAX_JSON_BODY, not held in memory, or when the client went away before
    its end), and a `receive` that hands what was read to the app again, then goes on as the original
    does."""
    chunks: list[bytes] = []
    messages: list[Message] = []
    size = 0
    complete = False
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_JSON_BODY:
            break
        if not message.get("more_body", False):
            complete = True
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return (b"".join(chunks) if complete else None), replay
