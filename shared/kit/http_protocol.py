"""uvicorn's httptools protocol with the writes of one event-loop turn sent together.

uvicorn writes a response's status line and headers (``http.response.start``) and its
body (``http.response.body``) with one ``transport.write`` each, and uvloop sends each
at once: two ``write`` syscalls per response, and on loopback each one also runs the
receiver's TCP processing and wake-up. Here the connection's transport is wrapped so
that what is written during one turn of the event loop goes out in a single vectored
write (``writelines``, no copy) at the end of that turn: headers and body of an ASGI
app that sends both without waiting in between, as most responses are sent, leave in
one syscall. Anything that reaches ``FLUSH_BYTES`` is sent at once, so a large or
streamed body keeps uvicorn's flow control (pause/resume writing) as it was.

Used by ``hats serve`` (``shared.kit.runner``): ``uvicorn.Config(..., http=CoalescingHttpToolsProtocol)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared import compat

#: A pending batch at least this large is written at once instead of at the end of the turn.
FLUSH_BYTES = 64 * 1024


class CoalescingTransport:
    """Wraps an ``asyncio.Transport``: ``write`` collects, one ``writelines`` per loop turn sends.

    ``close``, ``write_eof``, ``abort`` and ``set_protocol`` settle what is pending first
    (``abort`` drops it, as the transport would); everything else is the transport's own.
    """

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        pending = self._pending
        if not pending:
            self._loop.call_soon(self.flush)
        pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is pending now (a no-op when nothing is; the scheduled call then finds nothing)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._size = 0
        transport = self._transport
        if transport.is_closing():
            return  # the transport would drop it too (and count a lost write)
        if len(pending) == 1:
            transport.write(pending[0])
        else:
            transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._size = 0
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: uvicorn's httptools protocol writing through a :class:`CoalescingTransport` (``hats serve`` uses it).
CoalescingHttpToolsProtocol = compat.httptools_protocol_with_transport(CoalescingTransport)


__all__ = ["FLUSH_BYTES", "CoalescingHttpToolsProtocol", "CoalescingTransport"]
