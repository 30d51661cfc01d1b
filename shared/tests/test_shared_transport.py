"""The lean HTTP/1.1 transport against a scripted server on 127.0.0.1: keep-alive reuse, the answer's
framings (Content-Length, chunked, end of connection), an idle connection the server closed, and
httpx's exceptions for timeouts, refused connections and answers cut short."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from roster_shared.transport import LeanTransport

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # False: close the connection


@dataclass
class Server:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


def answer(status: int, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def serve(reply: Reply) -> AsyncIterator[Server]:
    server = Server(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.writers.append(writer)
        while (request := await _read_request(reader)) is not None:
            server.requests.append(request)
            if not await reply(request, writer):
                break
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        for writer in server.writers:
            writer.close()
        listening.close()
        await listening.wait_closed()


def client(timeout: float = 2.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=LeanTransport(), timeout=timeout)


async def test_requests_reuse_one_connection_and_carry_headers_and_body() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        body = request.split(b"\r\n\r\n", 1)[1]
        writer.write(answer(200, body, "Content-Type: application/json", f"Content-Length: {len(body)}"))
        return True

    async with serve(reply) as server, client() as http:
        first = await http.post(f"{server.url}/v1/resolve?x=1", json={"n": 1}, headers={"X-Request-ID": "r1"})
        second = await http.post(f"{server.url}/v1/resolve", json={"n": 2})
    assert (first.status_code, first.json(), second.json()) == (200, {"n": 1}, {"n": 2})
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /v1/resolve?x=1 HTTP/1.1\r\n")
    assert b"\r\nX-Request-ID: r1\r\n" in server.requests[0]


async def test_chunked_and_connection_delimited_answers_are_read_whole() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if request.startswith(b"GET /chunked"):
            writer.write(answer(200, b"4;ext=1\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\nX-T: 1\r\n\r\n",
                                "Transfer-Encoding: chunked"))  # fmt: skip
            return True
        writer.write(answer(200, b"until the end"))
        return False

    async with serve(reply) as server, client() as http:
        chunked = await http.get(f"{server.url}/chunked")
        delimited = await http.get(f"{server.url}/eof")
        after = await http.get(f"{server.url}/chunked")
    assert chunked.json() == after.json() == {"a": 1}
    assert delimited.text == "until the end"
    # the connection-delimited answer used up its connection: a third request needed a new one
    assert server.connections == 2


async def test_connection_close_answer_is_not_reused() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(204, b"", "Connection: close"))
        return False

    async with serve(reply) as server, client() as http:
        assert (await http.get(server.url)).status_code == 204
        assert (await http.get(server.url)).status_code == 204
    assert server.connections == 2


async def test_idle_connection_closed_by_the_server_is_replaced_without_an_error() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"ok", "Content-Length: 2"))
        return True

    async with serve(reply) as server, client() as http:
        assert (await http.get(server.url)).text == "ok"
        server.writers[0].close()  # the server's keep-alive timeout
        await asyncio.sleep(0.05)
        assert (await http.get(server.url)).text == "ok"
    assert server.connections == 2


async def test_reused_connection_closed_before_answering_is_retried_once_on_a_new_one() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 2:
            return False  # reads the request, closes without a byte of answer
        writer.write(answer(200, b"ok", "Content-Length: 2"))
        return True

    async with serve(reply) as server, client() as http:
        assert (await http.get(server.url)).text == "ok"
        assert (await http.get(server.url)).text == "ok"
    assert server.connections == 2
    assert len(server.requests) == 3


async def test_slow_answer_is_a_read_timeout() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(1)
        return False

    async with serve(reply) as server, client(timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(server.url)


async def test_answer_cut_short_is_a_protocol_error() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b'{"partial', "Content-Length: 100"))
        return False

    async with serve(reply) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(server.url)


async def test_not_http_is_a_protocol_error() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        return False

    async with serve(reply) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(server.url)


async def test_refused_connection_is_a_connect_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_json_body_round_trips_through_httpx_client_features() -> None:
    """Base URL, default headers and Basic auth are httpx's; the transport sends what httpx built."""

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        payload = json.dumps({"seen": request.split(b"\r\n")[0].decode()}).encode()
        writer.write(answer(200, payload, f"Content-Length: {len(payload)}"))
        return True

    async with (
        serve(reply) as server,
        httpx.AsyncClient(
            base_url=server.url, transport=LeanTransport(), headers={"User-Agent": "t"}
        ) as http,
    ):
        response = await http.get("/v3.0/me", auth=("id", "secret"))
    assert response.json() == {"seen": "GET /v3.0/me HTTP/1.1"}
    assert b"\r\nAuthorization: Basic aWQ6c2VjcmV0\r\n" in server.requests[0]
    assert b"\r\nUser-Agent: t\r\n" in server.requests[0]


async def test_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"ok", "Content-Length: 2"))
        return True

    async with serve(reply) as server, client() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get(server.url, headers={"Authorization": "Bearer t\r\nX-Injected: 1"})
        assert (await http.get(server.url)).text == "ok"
    assert all(b"X-Injected" not in request for request in server.requests)
    assert len(server.requests) == 1


async def test_connection_that_spoke_while_idle_is_not_reused() -> None:
    """A server may send a 408 on an idle connection before closing it: that is not the next answer."""

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(200, b"ok", "Content-Length: 2"))
        return True

    async with serve(reply) as server, client() as http:
        assert (await http.get(server.url)).text == "ok"
        server.writers[0].write(answer(408, b"", "Content-Length: 0"))  # unsolicited, connection left open
        await asyncio.sleep(0.05)
        assert (await http.get(server.url)).status_code == 200
    assert server.connections == 2


async def test_requests_beyond_the_connection_limit_wait_then_time_out() -> None:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.3)
        writer.write(answer(200, b"ok", "Content-Length: 2"))
        return True

    async with (
        serve(reply) as server,
        httpx.AsyncClient(
            transport=LeanTransport(max_connections=1), timeout=httpx.Timeout(2.0, pool=0.1)
        ) as http,
    ):
        first = asyncio.create_task(http.get(server.url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(server.url)
        assert (await first).text == "ok"
    assert server.connections == 1
