"""The fault tests' TCP proxy: it forwards, a cut resets what is open and refuses what comes, a restore
forwards again on the same port; to a TCP port and to a unix socket alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.proxy import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def echo_server(kind: str, tmp_path: Path) -> AsyncIterator[int | str]:
    if kind == "tcp":
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        target: int | str = server.sockets[0].getsockname()[1]
    else:
        target = str(tmp_path / "echo.sock")
        server = await asyncio.start_unix_server(_echo, target)
    async with server:
        yield target


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.readexactly(len(payload))
    finally:
        writer.close()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_a_cut_resets_open_connections_refuses_new_ones_and_a_restore_forwards_again(kind, tmp_path):
    async with echo_server(kind, tmp_path) as target, TcpProxy(target) as proxy:
        assert await roundtrip(proxy.port, b"hello") == b"hello"
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"open")
        assert await reader.readexactly(4) == b"open"  # a connection in use when the path breaks

        await proxy.cut()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            writer.write(b"more")
            await writer.drain()
            await reader.readexactly(4)
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await roundtrip(proxy.port, b"refused")

        await proxy.restore()
        assert await roundtrip(proxy.port, b"again") == b"again"
