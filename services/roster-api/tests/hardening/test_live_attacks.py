"""Hostile clients against a real `roster-api serve` (uvicorn), SQLite and PostgreSQL: a multipart upload
cut off by a client that goes away, a NUL in parameters, a `kill -9` of the server mid-upload (its
partial file is gone after the restart); then a privacy scan of the server's log and data dir."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from . import live

BOUNDARY = "live-attack-boundary"
EMAILS = [f"student{n}.private@attack.example.org" for n in range(300)]
CSV = "student_email,student_first_name\n" + "".join(f"{email},Kid\n" for email in EMAILS)
EMAIL_RE = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _multipart() -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="roster.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    )
    return (head + CSV + f"\r\n--{BOUNDARY}--\r\n").encode()


def _open_upload(url: str, key: str, body: bytes, send: int) -> socket.socket:
    """A raw HTTP/1.1 upload that announces the whole body and sends only `send` bytes of it."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
    head = (
        f"POST /v1/districts/d1/imports HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:send])
    return sock


def _files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "uploads").rglob("*") if p.is_file()] if data_dir.exists() else []


def _wait_for(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_hostile_clients_against_a_live_server(
    database_url: str, make_key: Callable[..., str], tmp_path: Path
) -> None:
    admin = make_key("admin", name="attack-admin")
    headers = {"Authorization": f"Bearer {admin}"}
    data_dir = tmp_path / "data"
    env = live.env_for(database_url, data_dir, ROSTER_RUN_WORKER="false")
    log = tmp_path / "serve.log"
    body = _multipart()
    with live.serving(env, [log]) as (server,):
        assert (
            httpx.post(
                server.url + "/v1/districts", json={"id": "d1", "name": "D1"}, headers=headers
            ).status_code
            == 201
        )
        # a client that goes away mid-upload: one log line, nothing kept, no 500
        sock = _open_upload(server.url, admin, body, len(body) * 95 // 100)
        sock.close()
        _wait_for(lambda: b"upload abandoned" in log.read_bytes(), 30)
        assert httpx.get(server.url + "/v1/districts/d1/imports", headers=headers).json()["total"] == 0
        assert _files(data_dir) == []
        # NUL in a query and a path parameter (student emails in the value): 422, not a 500
        for path in (
            f"/v1/districts/d1/students?email={EMAILS[0]}%00",
            f"/v1/districts/{EMAILS[1]}%00/students",
        ):
            assert httpx.get(server.url + path, headers=headers).status_code == 422
        # kill -9 while an upload is half received: the partial file stays behind...
        sock = _open_upload(server.url, admin, body, len(body) // 2)
        _wait_for(lambda: any(p.name.endswith(".part") for p in _files(data_dir)), 30)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        sock.close()
        assert [p.name.endswith(".part") for p in _files(data_dir)] == [True]
    # ... until the next start
    with live.serving(env, [log]) as (server,):
        assert _files(data_dir) == []
        assert httpx.get(server.url + "/v1/districts/d1/imports", headers=headers).json()["total"] == 0

    text = log.read_bytes()
    assert b'"status": 500' not in text
    assert b"Traceback" not in text
    assert EMAIL_RE.findall(text) == []
    assert admin.encode() not in text
    assert b"rk_" not in text
    for file in data_dir.rglob("*"):
        if file.is_file():
            content = file.read_bytes()
            assert admin.encode() not in content, file
            assert EMAIL_RE.findall(content) == [], file
