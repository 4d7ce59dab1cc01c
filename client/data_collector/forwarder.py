"""Sends buffered ticks to the server in order; waits out outages, and never lets one bad tick block the rest.

What the server answers decides each tick's state in the buffer (``buffer.py``):

* 202: the accepted ticks are SENT under the answer's receipt (confirmed later from
  ``/progress``, see ``confirmation.py``); a tick refused for a transient reason (its
  timestamp is ahead of the server's clock: the clocks differ) is sent again later with
  a growing pause; one refused for good (unknown symbol, crossed quote...) is quarantined.
* 409 with a ``Broker-Epoch`` header: the broker log that our unconfirmed ticks went to
  is gone (each request names that log's epoch) and nothing of the batch was published;
  those ticks go back to pending and, being the oldest, are sent again first.
* 400/413/422 for the whole request: the server's contract refuses something in it. The
  batch is split in halves until the refused ticks are isolated and quarantined; the
  rest is delivered. (413 also lowers the batch size for the next requests.)
* anything else (401/403/429/5xx, no answer): nothing changes; tried again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from client.data_collector.buffer import Batch, Receipt, Refusal, TickBuffer, TickStore
from client.server_client import ServerClient
from shared.auth.client import retry_after_s
from shared.bus.epoch import EPOCH_HEADER

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/ingest/ticks"
#: Pause between attempts while the server cannot take anything: doubles from the first to the last.
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.25, 5.0
#: A server's ``Retry-After`` (429, 503) is honoured up to this.
MAX_RETRY_AFTER_S = 60.0
#: Reasons the server refuses a tick today but may take it later (services/data_bridge/domain/validation.py).
#: ``timestamp_in_future``: the tick is more than 60 s ahead of the server's clock, so the clocks differ.
TRANSIENT_REASONS = frozenset({"timestamp_in_future"})
#: Whole-request refusals that mean "something in this batch breaks the contract": split to find it.
SPLIT_STATUSES = frozenset({400, 413, 422})


class Forwarder:
    """The delivery loop (``run``) and what it knows about the server, for status and readiness."""

    def __init__(
        self,
        server: ServerClient,
        buffer: TickBuffer,
        *,
        batch_size: int,
        source: str = "data-collector",
        clock: Callable[[], float] = time.time,
        retry_first_s: float = 5.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self._server, self._buffer = server, buffer
        self._batch, self._source, self._clock = batch_size, source, clock
        self._retry_first_s, self._retry_max_s = retry_first_s, retry_max_s
        self.accepted = 0
        self.refused_transient = 0
        self.quarantined = 0
        self.reachable = True
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        self._retry_after_s = 0.0
        #: Set when ticks were buffered (sources) or put back to pending (confirmation).
        self.wake = asyncio.Event()
        #: Set when ticks were sent: the confirmation loop has something to confirm.
        self.sent = asyncio.Event()

    async def run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while True:
            self.wake.clear()  # before reading: ticks buffered after the read set it again
            batch = await self._buffer.call(TickStore.pending, self._batch)
            if not batch.seqs:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                continue
            if await self._deliver(batch):
                backoff = FIRST_BACKOFF_S
            else:
                await asyncio.sleep(max(backoff, self._retry_after_s))
                backoff, self._retry_after_s = min(backoff * 2, MAX_BACKOFF_S), 0.0

    async def _deliver(self, batch: Batch) -> bool:
        """Send ``batch`` and record the outcome; False if the server could not take it now (nothing changed)."""
        epoch = await self._buffer.call(TickStore.unconfirmed_epoch)
        response = await self._post(batch.ticks, {EPOCH_HEADER: epoch} if epoch else None)
        if response is None:
            return False
        if response.status_code == 202:
            try:
                await self._record(batch, response.json())
            except (ServerProtocolError, ValueError, KeyError, TypeError) as exc:
                return self._failed(f"{type(exc).__name__}: {exc}")
            return True
        if response.status_code == 409 and response.headers.get(EPOCH_HEADER):
            # The broker log our unconfirmed ticks went to is gone, and nothing of this batch was
            # published: the lost ticks go back to pending and, being older, are sent first.
            lost = await self._buffer.call(TickStore.lose_other_epochs, response.headers[EPOCH_HEADER])
            log.warning("the server's broker log changed: %d sent requests are sent again first", lost)
            return True
        if response.status_code in SPLIT_STATUSES:
            return await self._isolate(batch, response)
        self._retry_after_s = min(retry_after_s(response) or 0.0, MAX_RETRY_AFTER_S)
        return self._failed(f"HTTP {response.status_code}: {response.text[:300]}")

    async def _isolate(self, batch: Batch, response: httpx.Response) -> bool:
        if len(batch.seqs) == 1:
            refusal = Refusal(batch.seqs[0], f"http_{response.status_code}", response.text[:500])
            log.error("the server refuses tick %s as a whole request; quarantined: %s", batch.ticks[0], refusal.detail)
            await self._buffer.call(TickStore.record_outcome, [], None, [], {}, [refusal])
            self.quarantined += 1
            return True
        if response.status_code == 413 and len(batch.seqs) // 2 < self._batch:
            self._batch = max(1, len(batch.seqs) // 2)
            log.warning("the server takes fewer ticks per request; batches of %d from now on", self._batch)
        half = len(batch.seqs) // 2
        first, second = Batch(batch.seqs[:half], batch.ticks[:half]), Batch(batch.seqs[half:], batch.ticks[half:])
        return await self._deliver(first) and await self._deliver(second)

    async def _post(self, ticks: list[dict[str, Any]], headers: dict[str, str] | None) -> httpx.Response | None:
        try:
            response = await self._server.post(INGEST_PATH, {"source": self._source, "ticks": ticks}, headers)
        except httpx.HTTPError as exc:  # token troubles (NoCredentials, TokenRequestFailed) are HTTPErrors too
            # Unreachable, or no token to be had: keep everything buffered and retry.
            self._failed(f"{type(exc).__name__}: {exc}")
            return None
        if response.status_code == 202 or response.status_code in SPLIT_STATUSES:
            if not self.reachable:
                log.info("server reachable again after %.1fs", self._clock() - (self.unreachable_since or 0))
            self.reachable, self.unreachable_since, self.last_error = True, None, None
        return response

    async def _record(self, batch: Batch, body: dict[str, Any]) -> None:
        refused = {int(r["index"]): r for r in body.get("rejected", [])}
        accepted = [seq for index, seq in enumerate(batch.seqs) if index not in refused]
        retry: list[Refusal] = []
        quarantine: list[Refusal] = []
        for index, item in refused.items():
            refusal = Refusal(batch.seqs[index], str(item["reason"]), str(item.get("detail", "")))
            (retry if refusal.reason in TRANSIENT_REASONS else quarantine).append(refusal)
        retry_at: dict[int, float] = {}
        if retry:
            attempts = await self._buffer.call(TickStore.attempts, [r.seq for r in retry])
            now = self._clock()
            retry_at = {
                r.seq: now + min(self._retry_first_s * 2 ** attempts.get(r.seq, 0), self._retry_max_s) for r in retry
            }
            log.info(
                "the server refused %d ticks for now (%s: %s); sent again later",
                len(retry),
                retry[0].reason,
                retry[0].detail,
            )
        if quarantine:
            log.error(
                "the server refused %d ticks for good; quarantined (first: %s: %s)",
                len(quarantine),
                quarantine[0].reason,
                quarantine[0].detail,
            )
        await self._buffer.call(
            TickStore.record_outcome, accepted, _receipt(body.get("receipt")), retry, retry_at, quarantine
        )
        self.accepted += len(accepted)
        self.refused_transient += len(retry)
        self.quarantined += len(quarantine)
        if accepted:
            self.sent.set()

    def _failed(self, error: str) -> bool:
        if self.reachable:
            log.warning("cannot deliver to the server (%s); buffering on disk", error)
            self.unreachable_since = self._clock()
        self.reachable, self.last_error = False, error
        return False


def _receipt(body: Any) -> Receipt:
    """The receipt of a 202 (``ServerProtocolError`` without one: nothing could ever confirm those ticks)."""
    if not isinstance(body, dict) or "epoch" not in body:
        raise ServerProtocolError(f"a 202 without a receipt: {body!r:.200}")
    return Receipt(str(body["epoch"]), {int(p): int(o) for p, o in body.get("offsets", {}).items()})


class ServerProtocolError(Exception):
    """The server answered outside the delivery protocol; the ticks stay pending."""
