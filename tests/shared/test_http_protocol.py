"""hats serve's uvicorn protocol sends what one loop turn wrote in one write, and nothing else changes."""

from __future__ import annotations

import asyncio
import hashlib
from typing import ClassVar

import httpx
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from shared.kit.http_protocol import FLUSH_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport
from tests.support import serve


class Recorder:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes]]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", [bytes(data)]))

    def writelines(self, chunks) -> None:
        self.calls.append(("writelines", [bytes(c) for c in chunks]))

    def close(self) -> None:
        self.calls.append(("close", []))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", []))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return default


async def test_writes_of_one_turn_leave_together_at_its_end():
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"body")
    assert raw.calls == [] and transport.get_write_buffer_size() == 8
    await asyncio.sleep(0)
    assert raw.calls == [("writelines", [b"head", b"body"])]
    transport.write(b"alone")
    await asyncio.sleep(0)
    assert raw.calls[-1] == ("write", [b"alone"])


async def test_large_writes_close_and_abort():
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"h")
    transport.write(b"x" * FLUSH_BYTES)  # past the threshold: out at once (flow control as before)
    assert raw.calls == [("writelines", [b"h", b"x" * FLUSH_BYTES])]
    transport.write(b"last words")
    transport.close()  # pending bytes go before the close
    assert raw.calls[-2:] == [("write", [b"last words"]), ("close", [])]
    await asyncio.sleep(0)
    assert raw.calls[-1] == ("close", [])  # the scheduled flush found nothing left
    aborted = Recorder()
    transport = CoalescingTransport(aborted, asyncio.get_running_loop())
    transport.write(b"dropped")
    transport.abort()
    await asyncio.sleep(0)
    assert aborted.calls == [("abort", [])]
    assert transport.get_extra_info("peername", "nobody") == "nobody"  # the rest is the transport's


class CountingProtocol(CoalescingHttpToolsProtocol):
    """Counts the writes that reach the real transport."""

    writes: ClassVar[list[int]] = []

    def connection_made(self, transport):
        real_write, real_writelines = transport.write, transport.writelines

        class Counted:
            def __getattr__(self, name):
                return getattr(transport, name)

            def write(self, data):
                CountingProtocol.writes.append(1)
                real_write(data)

            def writelines(self, chunks):
                chunks = list(chunks)
                CountingProtocol.writes.append(len(chunks))
                real_writelines(chunks)

        super().connection_made(Counted())


async def small(request):
    return Response(b"x" * 12_000, media_type="application/json")


async def big(request):
    async def chunks():
        for i in range(40):
            yield bytes([i]) * 50_000

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def test_served_responses_are_intact_and_a_small_one_is_one_write():
    app = Starlette(routes=[Route("/small", small), Route("/big", big)])
    CountingProtocol.writes.clear()
    async with serve(app, lifespan="off", http=CountingProtocol) as url, httpx.AsyncClient(base_url=url) as http:
        for _ in range(3):  # keep-alive: the same connection serves them all
            assert (await http.get("/small")).content == b"x" * 12_000
        assert CountingProtocol.writes == [2, 2, 2]  # one vectored write each: head and body
        response = await http.get("/big")
    expected = b"".join(bytes([i]) * 50_000 for i in range(40))
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(expected).digest()
