"""Delivers buffered ticks to the server in order; waits out outages without losing anything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from client.data_collector.buffer import TickBuffer
from client.data_collector.server import NoCredentials, ServerClient, TokenRequestFailed

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0


class Forwarder:
    def __init__(
        self, server: ServerClient, buffer: TickBuffer, *, batch_size: int, source: str = "data-collector"
    ) -> None:
        self._server, self._buffer = server, buffer
        self._batch, self._source = batch_size, source
        self.delivered = 0
        self.rejected = 0
        self.reachable = True
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        self.wake = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.25
        while True:
            pending = self._buffer.pending(self._batch)
            if not pending.seqs:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                continue
            if await self._send(pending.ticks):
                self._buffer.mark_delivered(pending.seqs)
                self.delivered += len(pending.seqs)
                backoff = 0.25
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _send(self, ticks: list[dict]) -> bool:
        try:
            response = await self._server.post("/api/v1/ingest/ticks", {"source": self._source, "ticks": ticks})
        except (httpx.HTTPError, TokenRequestFailed, NoCredentials) as exc:
            # Unreachable, or the token endpoint refused us: keep everything buffered and retry.
            return self._failed(f"{type(exc).__name__}: {exc}")
        if response.status_code == 202:
            body = response.json()
            if body["rejected"]:
                self.rejected += len(body["rejected"])
                log.warning(
                    "server rejected %d of %d ticks, first: %s", len(body["rejected"]), len(ticks), body["rejected"][0]
                )
            if not self.reachable:
                log.info("server reachable again after %.1fs", time.time() - (self.unreachable_since or 0))
            self.reachable, self.unreachable_since, self.last_error = True, None, None
            return True
        # 5xx/429: the server is there but cannot take them now. 4xx on a whole batch means
        # we sent something the server's contract refuses: keep it (never drop data) and say so.
        return self._failed(f"HTTP {response.status_code}: {response.text[:300]}")

    def _failed(self, error: str) -> bool:
        if self.reachable:
            log.warning("cannot deliver to the server (%s); buffering on disk", error)
            self.unreachable_since = time.time()
        self.reachable, self.last_error = False, error
        return False
