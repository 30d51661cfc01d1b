"""A lean HTTP/1.1 keep-alive transport for httpx: the gateway's outbound calls (Clever, roster-api) are
small JSON requests and answers, and httpcore's general machinery (anyio streams, h11 events, a socket
readability syscall on every pooled connection at every request, headers and body written apart) costs
the gateway about as much CPU as its own work. Here a request is one write, the answer is read whole,
and an idle connection the peer closed is noticed by the event loop (its reader is at EOF) at no cost.

Timeouts come from the client (`httpx.Timeout`), failures are httpx's exceptions, redirects and cookies
stay with the `httpx.AsyncClient` around it. No proxy support: the gateway calls Clever and roster-api
directly (docs/design.md, "Services"); TLS trust is httpx's default (certifi, or `SSL_CERT_FILE`)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import SupportsIndex

import httpx

# under uvicorn's 5 s keep-alive, so a reused connection is not one the server is closing right now
IDLE_SECONDS = 4.0
MAX_IDLE_PER_ORIGIN = 32
MAX_CONNECTIONS_PER_ORIGIN = 100
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
CLOSE_WAIT_SECONDS = 1.0

_UNSAFE = re.compile(rb"[\r\n\0]")

Origin = tuple[str, str, int, str]  # scheme, host, port, TLS server name


class _Reader(asyncio.StreamReader):
    """Notes whether the peer spoke while the connection sat idle (an unsolicited 408 before it closes,
    say): such a connection is not reused, or that would be read as the next request's answer."""

    idle = False
    spoke_while_idle = False

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if self.idle:
            self.spoke_while_idle = True
        super().feed_data(data)


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: _Reader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def park(self) -> None:
        self.reader.idle = True
        self.idle_since = time.monotonic()

    def take(self, now: float) -> bool:
        """Out of the pool for a request, if still open at both ends, silent while idle, and not idle long
        enough for the server to be closing it."""
        self.reader.idle = False
        return (
            not self.reader.at_eof()
            and not self.reader.spoke_while_idle
            and not self.writer.is_closing()
            and now - self.idle_since < IDLE_SECONDS
        )

    def close(self) -> None:
        self.writer.close()


class _Answer:
    __slots__ = ("body", "headers", "reason", "reusable", "status")

    def __init__(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes, reusable: bool
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.reusable = reusable


class _StaleConnection(Exception):
    """A reused connection closed before any byte of the answer: the server never read the request."""


class LeanTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=LeanTransport())`: keep-alive connections per origin, last used first."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_connections: int = MAX_CONNECTIONS_PER_ORIGIN
    ) -> None:
        self._ssl_context = ssl_context
        self._limit = max_connections
        self._idle: dict[Origin, list[_Connection]] = {}
        # as httpx's default pool: at most this many requests in flight per origin, the rest wait up to
        # the pool timeout (a burst of logins must not open hundreds of connections to Clever)
        self._slots: dict[Origin, asyncio.Semaphore] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        # httpcore's `sni_hostname` extension: the name a certificate is checked against, if not the host
        sni = str(request.extensions.get("sni_hostname") or url.host)
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80), sni)
        message = _serialize(request, await request.aread())
        slots = self._slots.get(origin) or self._slots.setdefault(origin, asyncio.Semaphore(self._limit))
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout(f"all {self._limit} connections to the origin busy") from exc
        try:
            answer = await self._send(origin, message, request.method, timeouts)
        finally:
            slots.release()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
            request=request,
        )

    async def _send(
        self, origin: Origin, message: bytes, method: str, timeouts: dict[str, float | None]
    ) -> _Answer:
        """On a pooled connection if one is usable, else (or if it turns out stale) on a new one."""
        connection = self._checkout(origin)
        answer = None
        if connection is not None:
            try:
                answer = await _exchange(connection, message, method, timeouts)
            except _StaleConnection:
                connection.close()
            except BaseException:
                connection.close()
                raise
        if answer is None:
            connection = await self._connect(origin, timeouts)
            try:
                answer = await _exchange(connection, message, method, timeouts)
            except _StaleConnection as exc:
                connection.close()
                raise httpx.RemoteProtocolError("server closed the connection without answering") from exc
            except BaseException:  # cancelled or failed half-way: the connection's state is unknown
                connection.close()
                raise
        assert connection is not None
        if answer.reusable:
            self._checkin(origin, connection)
        else:
            connection.close()
        return answer

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.take(now):
                return connection
            connection.close()
        return None

    def _checkin(self, origin: Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.park()
        idle.append(connection)

    async def _connect(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        scheme, host, port, sni = origin
        context = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()  # certifi's roots, as httpx's default
            context = self._ssl_context
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=MAX_HEAD_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        with _mapped(httpx.ConnectTimeout, httpx.ConnectError):
            async with asyncio.timeout(timeouts.get("connect")):
                transport, _ = await loop.create_connection(
                    lambda: protocol, host, port, ssl=context, server_hostname=sni if context else None
                )
        return _Connection(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def aclose(self) -> None:
        """Closes the pooled connections and waits (briefly) until they are: a connection only asked to
        close is closed by the event loop later, and a loop that ends first (`asyncio.run`) leaves its
        socket open until garbage collection."""
        connections = [connection for idle in self._idle.values() for connection in idle]
        self._idle.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await connection.writer.wait_closed()


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    """Request line, headers (httpx has set Host and Content-Length) and body, for one write. A header
    with a line break (say an access token from an upstream's answer) would split the request: refused,
    as h11 refuses it."""
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if _UNSAFE.search(name) or _UNSAFE.search(value):
            raise httpx.LocalProtocolError("line break or NUL in a request header")
        lines += [name, b": ", value, b"\r\n"]
    lines += [b"\r\n", body]
    return b"".join(lines)


async def _exchange(
    connection: _Connection, message: bytes, method: str, timeouts: dict[str, float | None]
) -> _Answer:
    with _mapped(httpx.WriteTimeout, httpx.WriteError):
        connection.writer.write(message)
        async with asyncio.timeout(timeouts.get("write")):
            await connection.writer.drain()
    with _mapped(httpx.ReadTimeout, httpx.ReadError):
        async with asyncio.timeout(timeouts.get("read")):
            return await _read_answer(connection.reader, method)


async def _read_answer(reader: asyncio.StreamReader, method: str) -> _Answer:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except ConnectionResetError as exc:
        raise _StaleConnection from exc
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _StaleConnection from exc
        raise httpx.RemoteProtocolError("connection closed in the middle of the answer's head") from exc
    except asyncio.LimitOverrunError as exc:
        raise httpx.RemoteProtocolError("answer head too large") from exc
    status, reason, headers = _parse_head(head)
    fields = {name.lower(): value for name, value in headers}
    keep_alive = b"close" not in fields.get(b"connection", b"").lower()
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return _Answer(status, reason, headers, b"", keep_alive)
    try:
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            body = await _read_chunked(reader)
        elif b"content-length" in fields:
            length = _length(fields[b"content-length"])
            body = await reader.readexactly(length)
        else:  # delimited by the end of the connection
            body = await _read_to_end(reader)
            keep_alive = False
    except asyncio.IncompleteReadError as exc:
        raise httpx.RemoteProtocolError("connection closed in the middle of the answer's body") from exc
    if len(body) > MAX_BODY_BYTES:
        raise httpx.RemoteProtocolError("answer body too large")
    return _Answer(status, reason, headers, body, keep_alive)


def _parse_head(head: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    status_line, *header_lines = head[:-4].split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError("not an HTTP/1.x status line")
    headers = []
    for line in header_lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed header line")
        headers.append((name, value.strip()))
    return int(code), reason, headers


def _length(value: bytes) -> int:
    if not value.isdigit() or int(value) > MAX_BODY_BYTES:
        raise httpx.RemoteProtocolError("bad or too large Content-Length")
    return int(value)


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(64 * 1024):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise httpx.RemoteProtocolError("answer body too large")
        parts.append(chunk)
    return b"".join(parts)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise httpx.RemoteProtocolError("bad chunk size") from exc
        total += size
        if size < 0 or total > MAX_BODY_BYTES:
            raise httpx.RemoteProtocolError("answer body too large")
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise httpx.RemoteProtocolError("chunk not followed by CRLF")


@contextmanager
def _mapped(on_timeout: type[httpx.TimeoutException], on_error: type[httpx.TransportError]) -> Iterator[None]:
    """asyncio's timeouts and socket errors as the httpx exceptions callers already handle."""
    try:
        yield
    except TimeoutError as exc:
        raise on_timeout(str(exc) or on_timeout.__name__) from exc
    except (OSError, asyncio.LimitOverrunError) as exc:
        raise on_error(str(exc) or type(exc).__name__) from exc
