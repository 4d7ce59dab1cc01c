"""Confirms sent ticks from the server's ``/progress``, and sends again what a lost broker log took with it.

The delivery protocol (docs/architecture.md, "Collector: end-to-end delivery"): a 202
carries a receipt ``{epoch, offsets}``; ``GET /api/v1/ingest/progress`` answers
``{epoch, done}`` where ``done[p]`` is the first offset of partition ``p`` not yet
handled by every consumer that must handle a tick before the client may forget it.
A receipt is confirmed when its epoch is the current one and every offset in it is
below ``done``; a receipt of another epoch was written to a broker log that no longer
exists, so its ticks go back to pending and are sent again (their ids are
deterministic: every consumer drops the duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from client.data_collector.buffer import Receipt, StoredReceipt, TickBuffer, TickStore
from client.data_collector.forwarder import Forwarder
from client.server_client import ServerClient

log = logging.getLogger(__name__)

PROGRESS_PATH = "/api/v1/ingest/progress"


@dataclass(frozen=True)
class Progress:
    """What the server has handled for good: the broker epoch and, per partition, the first offset not yet."""

    epoch: str
    done: dict[int, int]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Progress:
        return cls(str(body["epoch"]), {int(p): int(n) for p, n in body.get("done", {}).items()})

    def confirms(self, receipt: Receipt) -> bool:
        return receipt.epoch == self.epoch and all(o < self.done.get(p, 0) for p, o in receipt.offsets.items())

    def lost(self, receipt: Receipt) -> bool:
        """The receipt names another broker log: it will never be confirmed, its ticks must be sent again."""
        return receipt.epoch != self.epoch


class Confirmer:
    """The confirmation loop (``run``): polls ``/progress`` only while some receipt is unconfirmed."""

    def __init__(self, server: ServerClient, buffer: TickBuffer, forwarder: Forwarder, *, interval_s: float) -> None:
        self._server, self._buffer, self._forwarder = server, buffer, forwarder
        self._interval_s = interval_s
        self.confirmed_receipts = 0
        self.lost_receipts = 0
        self.epoch: str | None = None
        self.last_error: str | None = None

    async def run(self) -> None:
        while True:
            self._forwarder.sent.clear()  # before reading: a receipt recorded after the read sets it again
            receipts = await self._buffer.call(TickStore.receipts)
            if receipts:
                await self.confirm(receipts)
                await asyncio.sleep(self._interval_s)
            else:
                # Nothing to confirm: no request to the server until the forwarder sends something.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._forwarder.sent.wait(), 5.0)

    async def confirm(self, receipts: list[StoredReceipt]) -> None:
        """Ask the server how far it got and settle ``receipts`` accordingly (nothing if it cannot say)."""
        progress = await self._progress()
        if progress is None:
            return
        confirmed = [r.id for r in receipts if progress.confirms(r.receipt)]
        lost = [r.id for r in receipts if progress.lost(r.receipt)]
        if not confirmed and not lost:
            return
        await self._buffer.call(TickStore.settle, confirmed, lost)
        self.confirmed_receipts += len(confirmed)
        self.lost_receipts += len(lost)
        if lost:
            log.warning(
                "the server's broker log changed (epoch %s): %d sent requests were lost with the old one; "
                "their ticks are sent again",
                progress.epoch,
                len(lost),
            )
            self._forwarder.wake.set()

    async def _progress(self) -> Progress | None:
        try:
            response = await self._server.get(PROGRESS_PATH)
            response.raise_for_status()
            progress = Progress.from_json(response.json())
        except (httpx.HTTPError, ValueError, KeyError) as exc:  # token troubles are HTTPErrors too
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        self.epoch, self.last_error = progress.epoch, None
        return progress
