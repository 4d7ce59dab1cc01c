"""The proxy's upstream client against a scripted HTTP/1.1 server: pooling, framing, timeouts, retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from services.api_gateway.upstream import (
    HIGH_WATER,
    Origin,
    UpstreamClosed,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from tests.support import bound_socket

Handler = Callable[[int, int, bytes, asyncio.StreamWriter], "asyncio.Future | None"]


class Scripted:
    """A raw HTTP server: ``answer(connection_no, request_no_on_it, head, writer)`` writes the answer."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_no, n = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                n += 1
                self.requests.append(head + body)
                keep = await self.answer(conn_no, n, head, writer)
                await writer.drain()
                if keep is False:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def scripted(answer) -> AsyncIterator[tuple[Scripted, Origin]]:
    handler = Scripted(answer)
    sock = bound_socket()
    server = await asyncio.start_server(handler, sock=sock)
    host, port = sock.getsockname()[:2]
    try:
        yield handler, Origin("http", host, port)
    finally:
        server.close()
        await server.wait_closed()


def pool(**overrides) -> UpstreamPool:
    options = {"connect_timeout_s": 1.0, "read_timeout_s": 2.0, "keepalive_s": 4.0, "max_connections": 16}
    return UpstreamPool(**{**options, **overrides})


def get(path: str = "/x", method: str = "GET") -> list[bytes]:
    return [f"{method} {path} HTTP/1.1\r\nhost: upstream\r\n\r\n".encode()]


def ok(body: bytes = b"hello", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_keep_alive_connections_are_reused_and_answers_read_whole():
    async def answer(conn, n, head, writer):
        writer.write(ok(f"c{conn} r{n}".encode(), "X-Upstream: yes\r\n"))

    async with scripted(answer) as (server, origin):
        p = pool()
        for n in (1, 2, 3):
            response = await p.request(origin, get())
            assert response.status == 200 and response.content_length == 5
            assert (b"X-Upstream", b"yes") in response.raw_headers
            assert await response.read() == f"c1 r{n}".encode()
            response.release()
        assert server.connections == 1
        await p.aclose()


async def test_a_connection_idle_past_keepalive_is_not_reused():
    async def answer(conn, n, head, writer):
        writer.write(ok(b"x"))

    async with scripted(answer) as (server, origin):
        p = pool(keepalive_s=0.05)
        for _ in range(2):
            response = await p.request(origin, get())
            await response.read()
            response.release()
            await asyncio.sleep(0.1)
        assert server.connections == 2
        await p.aclose()


async def test_a_safe_method_is_retried_once_when_a_reused_connection_closes_unanswered():
    async def answer(conn, n, head, writer):
        if n == 2:  # the service drops the connection instead of answering its second request
            return False
        writer.write(ok(b"fine"))

    async with scripted(answer) as (server, origin):
        p = pool()
        first = await p.request(origin, get(), retry=True)
        await first.read()
        first.release()
        again = await p.request(origin, get(), retry=True)
        assert await again.read() == b"fine"
        again.release()
        assert server.connections == 2
        # Not safe to repeat: the caller hears of it.
        with pytest.raises(UpstreamClosed):
            await p.request(origin, get(method="POST"), retry=False)
        await p.aclose()


async def test_chunked_and_until_close_bodies():
    async def answer(conn, n, head, writer):
        if b"/chunked" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return None
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        return False

    async with scripted(answer) as (_server, origin):
        p = pool()
        response = await p.request(origin, get("/chunked"))
        assert response.content_length is None and await response.read() == b"hello world"
        assert response.keep_alive
        response.release()
        response = await p.request(origin, get("/eof"))
        assert await response.read() == b"until the end" and not response.keep_alive
        response.release()
        await p.aclose()


async def test_head_204_and_interim_answers_have_no_body():
    async def answer(conn, n, head, writer):
        if head.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 12054\r\n\r\n")
        elif b"/empty" in head:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok(b"final"))

    async with scripted(answer) as (server, origin):
        p = pool()
        head = await p.request(origin, get(method="HEAD"), head_only=True)
        assert head.status == 200 and head.content_length == 12054 and await head.read() == b""
        head.release()  # not reused: llhttp cannot be told that answer had no body
        empty = await p.request(origin, get("/empty"))
        assert empty.status == 204 and await empty.read() == b""
        empty.release()
        final = await p.request(origin, get("/hints"))
        assert final.status == 200 and await final.read() == b"final"
        final.release()
        assert server.connections == 2
        await p.aclose()


async def test_timeouts_and_refusals():
    async def answer(conn, n, head, writer):
        if b"/slow-body" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await asyncio.sleep(5)

    async with scripted(answer) as (_server, origin):
        p = pool(read_timeout_s=0.2)
        started = asyncio.get_running_loop().time()
        with pytest.raises(UpstreamTimeout):
            await p.request(origin, get("/slow"))
        response = await p.request(origin, get("/slow-body"))
        with pytest.raises(UpstreamTimeout):
            await response.read()
        response.release()
        assert asyncio.get_running_loop().time() - started < 1.0
        await p.aclose()
    down = bound_socket()  # reserved, nobody listening
    host, port = down.getsockname()[:2]
    with pytest.raises(UpstreamUnreachable):
        await pool().request(Origin("http", host, port), get())
    down.close()


async def test_a_large_body_streams_with_back_pressure():
    size = 8 * HIGH_WATER
    body = bytes(range(256)) * (size // 256)

    async def answer(conn, n, head, writer):
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n".encode())
        for i in range(0, size, 65536):
            writer.write(body[i : i + 65536])
            await writer.drain()

    async with scripted(answer) as (_server, origin):
        p = pool()
        response = await p.request(origin, get())
        await asyncio.sleep(0.3)  # let the service write while nobody reads: reading must pause
        assert response._buffered <= HIGH_WATER + 256 * 1024
        received = bytearray()
        while chunk := await response.read_chunk():
            received += chunk
        assert bytes(received) == body
        response.release()
        await p.aclose()


async def test_requests_beyond_max_connections_wait_for_one():
    gate = asyncio.Event()

    async def answer(conn, n, head, writer):
        await gate.wait()
        writer.write(ok(b"x"))

    async with scripted(answer) as (server, origin):
        p = pool(max_connections=1)

        async def one() -> bytes:
            response = await p.request(origin, get())
            try:
                return await response.read()
            finally:
                response.release()

        tasks = [asyncio.create_task(one()) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert server.connections == 1
        gate.set()
        assert await asyncio.gather(*tasks) == [b"x"] * 3
        await p.aclose()
