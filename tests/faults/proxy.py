"""A TCP proxy a test can cut and restore: the network path to a real server, failing for real.

``async with TcpProxy(target) as proxy`` listens on a free loopback port (``proxy.port``)
and forwards every connection to ``target``, byte for byte: ``127.0.0.1:target`` for a port,
the unix socket at ``target`` for a path (the embedded PostgreSQL listens on one only). ``cut()`` stops
listening (a new connection is refused) and resets the connections in flight, as a server
that went away or a network path that broke would; ``restore()`` listens again on the same port.
No library on PyPI does this in process without a server of its own (toxiproxy's is a Go binary).
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.support import free_port


class TcpProxy:
    """A byte-level forwarder to ``target`` (a loopback port or a unix socket path) that can be cut and restored."""

    def __init__(self, target: int | str, port: int = 0) -> None:
        self.target = target
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        """Listen (again): new connections are forwarded."""
        if self._server is None:
            # reuse_address (asyncio's default on Unix): the port was ours a moment ago.
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones (both directions), at once."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._links):
            writer.transport.abort()  # RST, not a clean close: a peer mid-request sees it fail
        self._links.clear()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before a cut, handed to us just after it
            client_writer.transport.abort()
            return
        # Held from the first moment: a cut while the upstream connection opens must reset this
        # one too (else it lives on: a path that was meant to be broken carries requests).
        self._links.add(client_writer)
        server_writer: asyncio.StreamWriter | None = None
        try:
            try:
                server_reader, server_writer = await self._open()
            except OSError:
                client_writer.transport.abort()
                return
            if client_writer not in self._links:  # cut meanwhile
                server_writer.transport.abort()
                client_writer.transport.abort()
                return
            self._links.add(server_writer)
            await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
        finally:
            self._links.discard(client_writer)
            if server_writer is not None:
                self._links.discard(server_writer)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        return await asyncio.open_connection("127.0.0.1", self.target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
