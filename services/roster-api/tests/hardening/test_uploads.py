"""Uploads complete or not at all: a multipart body without its closing boundary, a malformed one, or a
raw body shorter than its Content-Length is a 400 with the envelope and leaves no import and no file;
a client that disconnects mid-upload is one log line, not a 500; partial files of dead processes go."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi.testclient import TestClient

from roster_api.importing import partials
from roster_api.main import create_app
from roster_api.settings import Settings

BOUNDARY = "----hardening-boundary"
ROWS = "".join(
    f"student,s{i},,Given{i},Family{i},student{i}@school.example.org,5,sch1,School One\r\n" for i in range(40)
)
CSV = "role,person_id,class_id,first_name,last_name,email,grade,school_id,school_name\r\n" + ROWS


def _multipart(csv: str, *, close: bool = True) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="roster.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    )
    tail = f"\r\n--{BOUNDARY}--\r\n" if close else ""
    return (head + csv + tail).encode()


@pytest.fixture
def writer(create_district: Callable[..., dict[str, Any]], make_key: Callable[..., str]) -> dict[str, str]:
    create_district("d1", licenses={"rocketlit": {"seats": 100}})
    return {"Authorization": f"Bearer {make_key('roster:write', 'roster:read', district='d1')}"}


def _nothing_kept(client: TestClient, headers: dict[str, str], settings: Settings) -> None:
    listed = client.get("/v1/districts/d1/imports", headers=headers).json()
    assert listed["total"] == 0
    uploads = settings.data_dir / "uploads"
    assert [p.name for p in uploads.rglob("*") if p.is_file()] == []


def _post(client: TestClient, headers: dict[str, str], body: bytes, content_type: str, **extra: str) -> Any:
    return client.post(
        "/v1/districts/d1/imports",
        content=body,
        headers={**headers, "Content-Type": content_type, **extra},
    )


def test_a_whole_multipart_upload_is_accepted(client: TestClient, writer: dict[str, str]) -> None:
    response = _post(client, writer, _multipart(CSV), f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 202, response.text


def test_a_multipart_body_without_its_closing_boundary_is_refused(
    client: TestClient, writer: dict[str, str], roster_settings: Settings
) -> None:
    body = _multipart(CSV, close=False)[: -len(CSV) // 20]  # 95 % of the rows, and no closing boundary
    response = _post(client, writer, body, f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert "closing boundary" in error["message"]
    assert error["details"][0]["field"] == "file"
    _nothing_kept(client, writer, roster_settings)


@pytest.mark.parametrize(
    "body",
    [
        b"--"
        + BOUNDARY.encode()
        + b"\r\nnot a header line at all\r\n\r\nx\r\n--"
        + BOUNDARY.encode()
        + b"--\r\n",
        b"--" + BOUNDARY.encode() + b"X\r\n",
        b"\x00\x01garbage",
    ],
)
def test_a_malformed_multipart_body_is_a_400(
    client: TestClient, writer: dict[str, str], roster_settings: Settings, body: bytes
) -> None:
    response = _post(client, writer, body, f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    _nothing_kept(client, writer, roster_settings)


def test_a_raw_body_shorter_than_its_content_length_is_refused(
    client: TestClient, writer: dict[str, str], roster_settings: Settings
) -> None:
    body = CSV.encode()
    response = _post(client, writer, body[:-100], "text/csv", **{"Content-Length": str(len(body))})
    assert response.status_code == 400, response.text
    assert "Content-Length" in response.json()["error"]["message"]
    _nothing_kept(client, writer, roster_settings)


def test_a_nul_in_the_multipart_file_name_is_refused(client: TestClient, writer: dict[str, str]) -> None:
    body = _multipart(CSV).replace(b'filename="roster.csv"', b'filename="ros\x00ter.csv"')
    response = _post(client, writer, body, f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "filename"


async def test_a_client_that_disconnects_mid_upload_is_logged_not_a_500(
    roster_settings: Settings,
    make_key: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(roster_settings)
    key = make_key("admin")
    async with LifespanManager(app):
        created = await _call(
            app, "POST", "/v1/districts", key, [b'{"id": "d1", "name": "D"}'], "application/json"
        )
        assert created[0] == 201
        body = _multipart(CSV)
        caplog.clear()
        status, _ = await _call(
            app,
            "POST",
            "/v1/districts/d1/imports",
            key,
            [body[:200], body[200:400]],
            f"multipart/form-data; boundary={BOUNDARY}",
            disconnect=True,
            length=len(body),
        )
        listed = await _call(app, "GET", "/v1/districts/d1/imports", key, [b""], "")
    assert status == 400
    assert b'"total":0' in listed[1]
    assert not [p for p in (roster_settings.data_dir / "uploads").rglob("*") if p.is_file()]
    lines = [r for r in caplog.records if r.levelno >= logging.INFO and r.name == "roster_api.uploads"]
    assert [r.getMessage() for r in lines] == ["upload abandoned: the client disconnected"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def _call(
    app: Any,
    method: str,
    path: str,
    key: str,
    chunks: list[bytes],
    content_type: str,
    *,
    disconnect: bool = False,
    length: int | None = None,
) -> tuple[int, bytes]:
    """One request through the ASGI interface; with `disconnect`, the client goes away after the chunks."""
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"content-type", content_type.encode())]
    headers.append((b"content-length", str(length if length is not None else sum(map(len, chunks))).encode()))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": headers,
        "server": ("test", 80),
        "client": ("127.0.0.1", 5000),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": disconnect or i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _partial(data_dir: Path, name: str, age: float) -> Path:
    directory = data_dir / "uploads" / "d1"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".{name}.part"
    path.write_bytes(b"role,email\nstudent,a@x.org\n")
    old = time.time() - age
    os.utime(path, (old, old))
    return path


def test_dead_partials_go_and_live_ones_stay(tmp_path: Path) -> None:
    dead = _partial(tmp_path, "imp_dead", age=60)
    young = _partial(tmp_path, "imp_young", age=0)
    live = _partial(tmp_path, "imp_live", age=60)
    with live.open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the uploading request does
        assert partials.remove_dead_partials(tmp_path) == 1
        assert not dead.exists()
        assert young.exists()
        assert live.exists()
    assert partials.remove_dead_partials(tmp_path, grace_seconds=0) == 2


def test_serve_start_removes_the_partials_of_a_dead_process(roster_settings: Settings) -> None:
    dead = _partial(roster_settings.data_dir, "imp_killed", age=30)
    with TestClient(create_app(roster_settings)):
        assert not dead.exists()
