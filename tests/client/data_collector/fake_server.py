"""A faithful stand-in for the server side of the delivery protocol, served over real HTTP.

What the collector talks to through the gateway: the token endpoint (client
credentials), ``POST /api/v1/ingest/ticks`` and ``GET /api/v1/ingest/progress``.
The ingest route judges ticks with data-bridge's own code (``decode_batch`` and
``TickValidator``, at the server's clock, which the test sets), writes accepted ticks
to an in-memory log partitioned like ``market.ticks.v1`` (Kafka's default partitioner)
and answers with a receipt; ``/progress`` reports how far the consumers handled the
log (all of it, unless the test holds them back). ``lose_log()`` is a broker restart:
a new epoch, an empty log. Answers carry a ``Date`` from the server's clock.
"""

from __future__ import annotations

import base64
import email.utils
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.data_bridge.domain.validation import TickValidator
from services.data_bridge.ingest_body import Malformed, decode_batch
from shared.bus.epoch import EPOCH_HEADER
from shared.bus.publish import partition_for
from shared.kit.problems import Problem
from tests.support import bound_socket, serve, url_of

PARTITIONS = 4
CLIENT_ID, SECRET = "hc_collector", "s3cret"


class FakeServer:
    """``async with FakeServer() as server``: serves on ``server.url`` until the block ends."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_ticks: int = 10_000) -> None:
        self.clock = clock
        self.max_ticks = max_ticks
        self.secret = SECRET
        self.validator = TickValidator()
        self.epoch = str(uuid.uuid4())
        self.log: dict[int, list[dict[str, Any]]] = {p: [] for p in range(PARTITIONS)}
        #: Consumers handled everything below this per partition; None: all of the log.
        self.handled: dict[int, int] | None = None
        #: Every tick ever accepted, in order (what the consumers eventually saw across epochs).
        self.accepted: list[dict[str, Any]] = []
        self.token_attempts: list[bool] = []  # one per request to the token endpoint: accepted?
        self.ingest_statuses: list[int] = []
        self.ingest_times: list[float] = []  # monotonic time of each answered ingest request
        self.progress_requests = 0
        #: Answer the next ingest requests with these statuses instead of handling them.
        self.fail_next: list[int] = []
        self.fail_retry_after = "0"
        #: A whole request with a tick this returns True for is refused with 422.
        self.refuse_request_with: Callable[[dict[str, Any]], bool] = lambda tick: False
        self._tokens: set[str] = set()
        self._socket = bound_socket()
        self.url = url_of(self._socket)
        self._app = Starlette(
            routes=[
                Route("/oauth2/token", self._token, methods=["POST"]),
                Route("/api/v1/ingest/ticks", self._ingest, methods=["POST"]),
                Route("/api/v1/ingest/progress", self._progress, methods=["GET"]),
            ]
        )
        self._serving: Any = None

    async def __aenter__(self) -> FakeServer:
        self._serving = serve(self._app, self._socket, lifespan="off", date_header=False)
        await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._serving.__aexit__(*exc)
        self._socket.close()

    def lose_log(self) -> None:
        """The broker restarted with memory storage: a new epoch and an empty log."""
        self.epoch = str(uuid.uuid4())
        self.log = {p: [] for p in range(PARTITIONS)}
        self.handled = None

    def logged(self) -> list[dict[str, Any]]:
        """The ticks in the current log, per symbol in log order."""
        return [t for p in sorted(self.log) for t in self.log[p]]

    def _json(self, body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
        date = email.utils.formatdate(self.clock(), usegmt=True)
        return Response(orjson.dumps(body), status, {"date": date, **(headers or {})}, media_type="application/json")

    async def _token(self, request: Request) -> Response:
        basic = base64.b64decode(request.headers.get("authorization", "Basic ").split(" ", 1)[1] or b"").decode()
        ok = basic == f"{CLIENT_ID}:{self.secret}"
        self.token_attempts.append(ok)
        if not ok:
            return self._json({"error": "invalid_client"}, 401, {"www-authenticate": 'Basic realm="hats"'})
        token = secrets.token_hex(8)
        self._tokens.add(token)
        return self._json({"access_token": token, "token_type": "Bearer", "expires_in": 900}, 200)

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and token in self._tokens

    async def _ingest(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._json({"detail": "invalid token"}, 401, {"www-authenticate": "Bearer"})
        if self.fail_next:
            status = self.fail_next.pop(0)
            self.ingest_statuses.append(status)
            self.ingest_times.append(time.monotonic())
            return self._json({"detail": "unavailable"}, status, {"retry-after": self.fail_retry_after})
        body = await request.body()
        try:
            if any(self.refuse_request_with(t) for t in orjson.loads(body)["ticks"]):
                raise Problem(422, "ticks.0: the server's contract refuses this request")
            _, items = decode_batch(body, self.max_ticks)
        except Problem as problem:
            self.ingest_statuses.append(problem.status)
            return self._json({"detail": problem.detail}, problem.status)
        expected = request.headers.get(EPOCH_HEADER)
        if expected is not None and expected != self.epoch:  # as data-bridge: nothing published
            self.ingest_statuses.append(409)
            return self._json({"detail": "epoch changed"}, 409, {EPOCH_HEADER: self.epoch})
        now_ns = int(self.clock() * 1e9)
        rejected: list[dict[str, Any]] = []
        offsets: dict[str, int] = {}
        for index, tick in enumerate(items):
            if isinstance(tick, Malformed):
                rejected.append({"index": index, "reason": "malformed", "detail": tick.detail})
                continue
            rejection = self.validator.check(tick, now_ns)
            if rejection is not None:
                rejected.append({"index": index, "reason": rejection.reason.value, "detail": rejection.detail})
                continue
            partition = partition_for(tick.symbol.encode(), PARTITIONS)
            record = tick.model_dump(mode="json")
            self.log[partition].append(record)
            self.accepted.append(record)
            offsets[str(partition)] = len(self.log[partition]) - 1
        self.ingest_statuses.append(202)
        self.ingest_times.append(time.monotonic())
        accepted = len(items) - len(rejected)
        receipt = {"epoch": self.epoch, "offsets": offsets}
        return self._json({"accepted": accepted, "rejected": rejected, "receipt": receipt}, 202)

    async def _progress(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._json({"detail": "invalid token"}, 401, {"www-authenticate": "Bearer"})
        self.progress_requests += 1
        handled = self.handled if self.handled is not None else {p: len(log) for p, log in self.log.items()}
        return self._json({"epoch": self.epoch, "done": {str(p): handled.get(p, 0) for p in self.log}}, 200)
