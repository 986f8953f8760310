"""One ADS stream per proxy connection: what SotW and Delta share (`Stream`: the
queue, ordering between types, retrying a rejection, a reconnecting proxy's config)
and State of the World's own bookkeeping (Delta's: `delta.py`). `server.AdsServer`
creates them.

Each stream reads requests in its own task and funnels them, together with
"your snapshot changed" wake-ups, into one queue handled in order by the stream
loop. The nonce of a response is recorded before the write is awaited, so an
ACK that overtakes the write's completion is still matched.

Pending pushes merge: a stream holds at most one "changed" in its queue, however
often its snapshot is replaced meanwhile, and a push always reads the latest
snapshot. A proxy that stops reading (HTTP/2 flow control holds our write) thus
costs one blocked coroutine and its last response, never a growing queue, and
nothing it does is awaited by anyone else: `SnapshotCache.set` only marks streams,
and streams share no lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import grpc

from . import codec
from .codec import Encoded
from .protocol import (
    SEND_AFTER,
    Decision,
    Kind,
    Rejection,
    decide_sotw,
    may_send,
    retry_due,
)
from .snapshot import Snapshot, content_version
from .status import StreamKind
from .types import CLUSTER, ENDPOINT, PUSH_ORDER, WILDCARD_TYPES

if TYPE_CHECKING:
    from .server import AdsServer

log = logging.getLogger("pilotfish_xds.server")

END = object()  # the client closed its side


class _Ended(Exception):
    """The server ended the stream while a write was blocked."""


CHANGED = object()  # the node's snapshot changed


def _push_order(type_urls: Any) -> list[str]:
    rank = {t: i for i, t in enumerate(PUSH_ORDER)}
    return sorted(type_urls, key=lambda t: (rank.get(t, len(rank)), t))


def version_of(snapshot: Snapshot, type_url: str, wanted: Mapping[str, Encoded]) -> str:
    """The version of what a response carries: the snapshot's own when it carries the
    whole type (computed once for every proxy sharing it), else that of the subset."""
    if len(wanted) == len(snapshot.resources(type_url)):
        return snapshot.version(type_url)
    return content_version(wanted.values())


def wanted_of(snapshot: Snapshot, type_url: str, wildcard: bool, names: Any) -> dict[str, Encoded]:
    available = snapshot.resources(type_url)
    if wildcard:
        return dict(available)
    return {n: available[n] for n in sorted(names) if n in available}


@dataclass(frozen=True, slots=True)
class _Retry:
    type_url: str


class Held:
    """What `send` returns when the proxy already holds what it would send."""


HELD = Held()


class Stream:
    """What both protocol variants share: the queue, ordering between types, and
    retrying a rejection once its cause is gone."""

    kind: StreamKind

    def __init__(self, server: AdsServer, context: Any) -> None:
        self.server = server
        self.context = context
        self.node_id = ""
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.in_flight: set[str] = set()  # types with a response not yet answered
        self.owed: set[str] = set()  # types requested before there was anything to send
        self.deferred: dict[str, bool] = {}  # type -> forced: held back by `may_send`
        self.acked: dict[str, str] = {}  # type -> version acknowledged on this stream
        self.rejections: dict[str, Rejection] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._change_queued = False  # a CHANGED is in the queue, not yet handled
        self._write: asyncio.Future[None] | None = None  # handed to gRPC, not yet taken
        self._ending = False

    async def run(self, requests: AsyncIterator[Any]) -> None:
        queue = self.queue
        reader = asyncio.create_task(self._read(requests, queue))
        stream_id = 0
        try:
            first = await queue.get()
            if first is END:
                return
            node = first.node
            if node is None or not node.id:
                await self.context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry node.id"
                )
            if self.server.authenticate is not None:
                metadata = {k: v for k, v in self.context.invocation_metadata() or ()}
                refused = await self.server.authenticate(node.id, metadata)
                if refused is not None:
                    log.warning(
                        "xDS stream from %s refused: it names node %r but %s",
                        self.context.peer(),
                        node.id,
                        refused,
                    )
                    await self.context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
            self.node_id = node.id
            cache, status = self.server.cache, self.server.status
            stream_id = status.stream_opened(self.node_id, self.kind, self.context.peer())
            cache.watch(self.node_id, self.changed)
            cache.stream_opened(self.node_id, _node_dict(node))
            item = first
            while item is not END:
                if item is CHANGED:
                    self._change_queued = False  # a change from now on needs another push
                    await self.push()
                elif isinstance(item, _Retry):
                    await self.retry(item.type_url)
                else:
                    await self.handle(item)
                item = await queue.get()
        except _Ended:
            pass
        finally:
            reader.cancel()
            for timer in self._timers.values():
                timer.cancel()
            if stream_id:
                self.server.cache.unwatch(self.node_id, self.changed)
                self.server.cache.stream_closed(self.node_id)
                self.server.status.stream_closed(self.node_id, stream_id)

    @staticmethod
    async def _read(requests: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        try:
            async for request in requests:
                queue.put_nowait(request)
        except Exception as exc:  # the peer went away mid-read
            log.debug("xDS stream read ended: %r", exc)
        finally:
            queue.put_nowait(END)

    def changed(self) -> None:
        """The node's snapshot was replaced (called by the cache; must not block)."""
        if not self._change_queued:
            self._change_queued = True
            self.queue.put_nowait(CHANGED)

    @property
    def writing(self) -> bool:
        """A response is handed to gRPC and not taken yet (the proxy is not reading)."""
        return self._write is not None

    async def write(self, body: bytes) -> None:
        """Hand one response to gRPC; this waits while the proxy does not read."""
        self._write = asyncio.ensure_future(self.context.write(body))
        try:
            await self._write
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._ending and task is not None and not task.cancelling():
                raise _Ended from None  # `end` gave up on this write, not on the stream
            raise
        finally:
            self._write = None

    def end(self) -> None:
        """Finish as if the proxy had closed the stream; a write the proxy is not
        taking is abandoned (it would otherwise hold the stream open forever)."""
        self._ending = True
        self.queue.put_nowait(END)
        if self._write is not None:
            self._write.cancel()

    def snapshot(self) -> Snapshot | None:
        return self.server.cache.get(self.node_id)

    def record(self, decision: Decision, type_url: str, error: Any) -> None:
        status = self.server.status
        if decision.kind is Kind.ACK:
            status.acked(self.node_id, type_url, decision.version)
        elif decision.kind is Kind.NACK:
            message = error.message if error is not None else ""
            status.nacked(self.node_id, type_url, decision.version, message)
        elif decision.kind is Kind.STALE:
            log.debug("stale request from %s for %s ignored", self.node_id, type_url)

    async def answered(
        self, type_url: str, decision: Decision, rejected: Mapping[str, str], done: bool
    ) -> None:
        """Bookkeeping once the proxy answered a response of ours (`done`: it has
        answered every one of this type); `rejected` is what a NACK refused."""
        if done:
            self.in_flight.discard(type_url)
        if decision.kind is Kind.NACK:
            before = self.rejections.get(type_url)
            self.rejections[type_url] = Rejection(
                content=dict(rejected),
                dependencies={t: self.acked.get(t, "") for t in SEND_AFTER.get(type_url, ())},
                retries=before.retries if before and before.content == rejected else 0,
            )
        elif decision.kind is Kind.ACK:
            self.acked[type_url] = decision.version
            self.rejections.pop(type_url, None)
            for other, rejection in self.rejections.items():
                if type_url in rejection.dependencies and retry_due(rejection, self.acked):
                    self._schedule_retry(other, rejection)
        await self._release()

    async def _release(self) -> None:
        """Offer the types ordering held back, if it no longer does."""
        for waiting in _push_order(list(self.deferred)):
            if may_send(waiting, self.in_flight | self.owed):
                await self.offer(waiting, force=self.deferred.pop(waiting))

    def holds(self, type_url: str, version: str) -> None:
        """The proxy said, on this new stream, that it holds `version` of the type, and
        that is what we would send: taken as sent and acknowledged, nothing written."""
        self.acked[type_url] = version
        self.server.status.holds(self.node_id, type_url, version)

    def _schedule_retry(self, type_url: str, rejection: Rejection) -> None:
        if type_url in self._timers:
            return
        delay = self.server.backoff.delay(rejection.retries)
        if delay is None:
            log.warning(
                "%s still rejects %s after %d retries; it keeps its last accepted config",
                self.node_id,
                type_url,
                rejection.retries,
            )
            return

        def fire() -> None:
            del self._timers[type_url]
            self.queue.put_nowait(_Retry(type_url))

        self._timers[type_url] = asyncio.get_running_loop().call_later(delay, fire)

    async def retry(self, type_url: str) -> None:
        rejection = self.rejections.get(type_url)
        if rejection is None or self.current(type_url, rejection.content) != rejection.content:
            return  # accepted since, or changed (and pushed as a change)
        self.rejections[type_url] = replace(rejection, retries=rejection.retries + 1)
        log.info(
            "offering %s to %s again (retry %d): what it depended on has been acknowledged",
            type_url,
            self.node_id,
            rejection.retries + 1,
        )
        await self.offer(type_url, force=True, refresh=set(rejection.content))

    async def push(self) -> None:
        # Envoy re-warms every cluster it is sent and waits for its endpoints (up to its
        # initial-fetch timeout): after clusters go out, endpoints always follow.
        clusters: set[str] = set()
        for type_url in _push_order(self.subscribed()):
            refresh = clusters if type_url == ENDPOINT else set()
            sent = await self.offer(type_url, refresh=refresh)
            if type_url == CLUSTER:
                clusters = sent

    async def offer(
        self, type_url: str, *, force: bool = False, refresh: set[str] | None = None
    ) -> set[str]:
        """Send what changed of `type_url` (with `force`, even if nothing did; plus the
        names in `refresh`), unless ordering holds it back; return the names sent."""
        # A cluster response still owed counts as unanswered: a listener request that
        # arrives after the snapshot but before the stream's wake-up must not overtake
        # the clusters it names (seen with tens of Envoys starting at once).
        if not may_send(type_url, self.in_flight | self.owed):
            self.deferred[type_url] = self.deferred.get(type_url, False) or force
            return set()
        self.deferred.pop(type_url, None)
        sent = await self.send(type_url, force=force, refresh=refresh or set())
        if sent is None:
            if force:
                self.owed.add(type_url)
            return set()
        self.owed.discard(type_url)
        if sent is HELD:
            await self._release()  # as after an ACK: what waited on this type may go
            return set()
        assert not isinstance(sent, Held)
        self.in_flight.add(type_url)
        return sent

    def subscribed(self) -> list[str]:
        raise NotImplementedError

    def current(self, type_url: str, names: Mapping[str, str]) -> dict[str, str]:
        """The hashes the snapshot now holds for what a response of `type_url` with
        `names` carried (State of the World: the whole type)."""
        raise NotImplementedError

    async def send(
        self, type_url: str, *, force: bool, refresh: set[str]
    ) -> set[str] | Held | None:
        """Write a response if there is something to say; the names it carried, None
        when nothing was written, HELD when the proxy reconnected holding all of it."""
        raise NotImplementedError

    async def handle(self, request: Any) -> None:
        raise NotImplementedError


def _node_dict(node: Any) -> dict[str, Any]:
    metadata = node.metadata.to_dict() if node.metadata is not None else {}
    return {"id": node.id, "cluster": node.cluster, "metadata": metadata}


# --- State of the world ----------------------------------------------------------


@dataclass
class _SotwType:
    names: frozenset[str]
    wildcard: bool
    nonce: str | None = None  # of the last response; None until one is sent
    version: str = ""
    sent: dict[str, str] | None = None  # name -> hash last sent
    held: str = ""  # the version a request without our nonce says the proxy holds


class SotwStream(Stream):
    kind: StreamKind = "sotw"

    def __init__(self, server: AdsServer, context: Any) -> None:
        super().__init__(server, context)
        self.types: dict[str, _SotwType] = {}

    def subscribed(self) -> list[str]:
        return list(self.types)

    async def handle(self, request: Any) -> None:
        type_url: str = request.type_url
        names = frozenset(request.resource_names)
        state = self.types.get(type_url)
        decision = decide_sotw(
            last_nonce=state.nonce if state else None,
            last_names=state.names if state else None,
            nonce=request.response_nonce,
            names=names,
            error=request.error_detail is not None,
            sent_version=state.version if state else "",
            acked_version=request.version_info,
        )
        self.record(decision, type_url, request.error_detail)
        if decision.kind not in (Kind.NEW, Kind.ACK):
            if decision.kind is Kind.NACK and state is not None:
                await self.answered(type_url, decision, state.sent or {}, done=True)
            return  # a NACK keeps the names it was sent for: a later ACK still sees a change
        wildcard = "*" in names or (type_url in WILDCARD_TYPES and not names)
        if state is None:
            state = self.types[type_url] = _SotwType(names, wildcard)
        state.names, state.wildcard = names, wildcard
        if decision.kind is Kind.NEW:
            state.held = request.version_info
        if decision.kind is Kind.ACK:
            await self.answered(type_url, decision, {}, done=True)
        if decision.respond:
            await self.offer(type_url, force=True)

    def current(self, type_url: str, names: Mapping[str, str]) -> dict[str, str]:
        snapshot, state = self.snapshot(), self.types.get(type_url)
        if snapshot is None or state is None:
            return {}
        wanted = wanted_of(snapshot, type_url, state.wildcard, state.names)
        return {n: r.hash for n, r in wanted.items()}

    async def send(
        self, type_url: str, *, force: bool, refresh: set[str]
    ) -> set[str] | Held | None:
        snapshot, state = self.snapshot(), self.types.get(type_url)
        if snapshot is None or state is None:
            return None  # nothing yet: the request is answered when a snapshot is set
        wanted = wanted_of(snapshot, type_url, state.wildcard, state.names)
        hashes = {n: r.hash for n, r in wanted.items()}
        version = version_of(snapshot, type_url, wanted)
        held, state.held = state.held, ""
        if held and held == version and not refresh:
            # A proxy that reconnected (to us, or to another replica: versions are
            # content hashes) already has exactly this: answering would re-send it.
            state.version, state.sent = version, hashes
            self.holds(type_url, version)
            return HELD
        if not (force or refresh) and hashes == state.sent:
            return None
        nonce = self.server.next_nonce()
        state.nonce, state.version, state.sent = nonce, version, hashes
        self.server.status.sent(self.node_id, type_url, version, nonce)
        await self.write(codec.sotw_response(type_url, version, nonce, wanted.values()))
        return set(hashes)
