"""Real parts for the notice tests: an SMTP server in-process (aiosmtpd, plain, STARTTLS or TLS with a
self-signed certificate made here), an HTTP receiver on a free port whose answers a test scripts (a
status per request, or "hang"), and a TCP port that accepts and never speaks (a slow SMTP server)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from roster_api.main import create_app
from roster_api.settings import Settings
from roster_harness import free_port

# --- SMTP -------------------------------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool


def _encrypted(server: Any) -> bool:
    """After STARTTLS or on an smtps port, the connection's transport is TLS."""
    return server.transport.get_extra_info("ssl_object") is not None


@dataclass
class MailSink:
    """The aiosmtpd handler: keeps every message it accepts."""

    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, _encrypted(server))
        )
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1; the client trusts it as its CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(cert_path, key_path)


@dataclass
class SmtpServer:
    sink: MailSink
    port: int


def _smtp(**kwargs: Any) -> Iterator[SmtpServer]:
    # aiosmtpd logs every command, addresses included: that is the test server's log, not ours
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = MailSink()
    port = free_port()
    loop = asyncio.new_event_loop()  # ours, so that it is closed (aiosmtpd leaves its own open)
    controller = Controller(sink, loop=loop, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer(sink, port)
    finally:
        controller.stop()
        loop.close()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Plain SMTP, no STARTTLS offered."""
    yield from _smtp()


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[SmtpServer]:
    """Offers STARTTLS and refuses mail before it."""
    yield from _smtp(tls_context=certificate.server_context(), require_starttls=True)


@pytest.fixture
def smtps_server(certificate: Certificate) -> Iterator[SmtpServer]:
    """TLS from the first byte."""
    yield from _smtp(ssl_context=certificate.server_context())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections and never answers: an SMTP server that hangs before its greeting."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


# --- HTTP receiver ---------------------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan: list[int | str] = []  # answers in order ("hang" = never answer); then 200
        self.deliveries: list[Delivery] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/roster?token=do-not-log"

    def next_answer(self) -> int | str:
        with self.lock:
            return self.plan.pop(0) if self.plan else 200


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.deliveries.append(Delivery(dict(self.headers.items()), body))
        answer = self.server.next_answer()
        if answer == "hang":
            self.server.release.wait(10)
            return
        assert isinstance(answer, int)
        self.send_response(answer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- the app ---------------------------------------------------------------------------------------


@pytest.fixture
def start_app(roster_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """Starts the app (and so its notice sender) with notice settings of the test's choosing; short
    backoff and timeouts, so that retries take milliseconds."""
    stack = ExitStack()

    def start(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "smtp_from": "roster@rocketlit.example",
            "notice_backoff_seconds": 0.01,
            "notice_timeout_seconds": 2.0,
            "notice_max_attempts": 3,
        }
        settings = roster_settings.model_copy(update=values | overrides)
        return stack.enter_context(TestClient(create_app(settings), raise_server_exceptions=False))

    yield start
    stack.close()
