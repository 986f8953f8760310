"""The ADS server: one stream per proxy connection, SotW and Delta.

Each stream reads requests in its own task and funnels them, together with
"your snapshot changed" wake-ups, into one queue handled in order by the stream
loop. The nonce of a response is recorded before the write is awaited, so an
ACK that overtakes the write's completion is still matched.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest

from . import codec, debug
from .cache import SnapshotCache
from .codec import Encoded
from .protocol import Decision, Kind, decide_delta, decide_sotw
from .snapshot import Snapshot, content_version
from .status import StatusRegistry, StreamKind
from .types import CLUSTER, ENDPOINT, PUSH_ORDER, WILDCARD_TYPES

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
_END = object()  # the client closed its side
_CHANGED = object()  # the node's snapshot changed


def _push_order(type_urls: Any) -> list[str]:
    rank = {t: i for i, t in enumerate(PUSH_ORDER)}
    return sorted(type_urls, key=lambda t: (rank.get(t, len(rank)), t))


def _wanted(snapshot: Snapshot, type_url: str, wildcard: bool, names: Any) -> dict[str, Encoded]:
    available = snapshot.resources(type_url)
    if wildcard:
        return dict(available)
    return {n: available[n] for n in sorted(names) if n in available}


class AdsServer:
    """Serves each node the snapshot `cache` holds for it; records in `status`."""

    def __init__(self, cache: SnapshotCache, status: StatusRegistry) -> None:
        self.cache = cache
        self.status = status
        # Unique across restarts, so an old stream's nonce never matches ours.
        self._nonces = (f"{secrets.token_hex(4)}-{n}" for n in itertools.count(1))

    def next_nonce(self) -> str:
        return next(self._nonces)

    def register(self, server: grpc.aio.Server) -> None:
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._sotw, request_deserializer=DiscoveryRequest.parse
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._delta, request_deserializer=DeltaDiscoveryRequest.parse
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),)
        )

    async def _sotw(self, requests: AsyncIterator[Any], context: Any) -> None:
        await _SotwStream(self, context).run(requests)

    async def _delta(self, requests: AsyncIterator[Any], context: Any) -> None:
        await _DeltaStream(self, context).run(requests)


class _Stream:
    kind: StreamKind

    def __init__(self, server: AdsServer, context: Any) -> None:
        self.server = server
        self.context = context
        self.node_id = ""

    async def run(self, requests: AsyncIterator[Any]) -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(self._read(requests, queue))
        changed = asyncio.Event()
        tasks = [reader]
        stream_id = 0
        try:
            first = await queue.get()
            if first is _END:
                return
            node = first.node
            if node is None or not node.id:
                await self.context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry node.id"
                )
            self.node_id = node.id
            cache, status = self.server.cache, self.server.status
            stream_id = status.stream_opened(self.node_id, self.kind, self.context.peer())
            cache.watch(self.node_id, changed)
            tasks.append(asyncio.create_task(self._watch(changed, queue)))
            cache.stream_opened(self.node_id, _node_dict(node))
            item = first
            while item is not _END:
                if item is _CHANGED:
                    await self.push()
                else:
                    await self.handle(item)
                item = await queue.get()
        finally:
            for task in tasks:
                task.cancel()
            if stream_id:
                self.server.cache.unwatch(self.node_id, changed)
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
            queue.put_nowait(_END)

    @staticmethod
    async def _watch(changed: asyncio.Event, queue: asyncio.Queue[Any]) -> None:
        while True:
            await changed.wait()
            changed.clear()
            queue.put_nowait(_CHANGED)

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

    async def handle(self, request: Any) -> None:
        raise NotImplementedError

    async def push(self) -> None:
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


class _SotwStream(_Stream):
    kind: StreamKind = "sotw"

    def __init__(self, server: AdsServer, context: Any) -> None:
        super().__init__(server, context)
        self.types: dict[str, _SotwType] = {}

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
            return  # a NACK keeps the names it was sent for: a later ACK still sees a change
        wildcard = "*" in names or (type_url in WILDCARD_TYPES and not names)
        if state is None:
            state = self.types[type_url] = _SotwType(names, wildcard)
        state.names, state.wildcard = names, wildcard
        if decision.respond:
            await self.send(type_url, state, force=True)

    async def push(self) -> None:
        # Envoy re-warms every cluster it is sent and waits for its endpoints (up to its
        # 15 s initial-fetch timeout): after clusters go out, endpoints always follow.
        clusters_sent = False
        for type_url in _push_order(self.types):
            force = type_url == ENDPOINT and clusters_sent
            sent = await self.send(type_url, self.types[type_url], force=force)
            clusters_sent |= sent and type_url == CLUSTER

    async def send(self, type_url: str, state: _SotwType, *, force: bool) -> bool:
        snapshot = self.snapshot()
        if snapshot is None:
            return False  # nothing yet: the request is answered when a snapshot is set
        wanted = _wanted(snapshot, type_url, state.wildcard, state.names)
        hashes = {n: r.hash for n, r in wanted.items()}
        if not force and hashes == state.sent:
            return False
        version = content_version(wanted.values())
        nonce = self.server.next_nonce()
        state.nonce, state.version, state.sent = nonce, version, hashes
        self.server.status.sent(self.node_id, type_url, version, nonce)
        await self.context.write(codec.sotw_response(type_url, version, nonce, wanted.values()))
        return True


# --- Delta -----------------------------------------------------------------------

_MAX_PENDING_NONCES = 64


@dataclass
class _DeltaType:
    wildcard: bool
    names: set[str]
    sent: dict[str, str]  # name -> hash the client holds (as far as we know)
    nonces: dict[str, str] = field(default_factory=dict)  # unanswered nonce -> version


class _DeltaStream(_Stream):
    kind: StreamKind = "delta"

    def __init__(self, server: AdsServer, context: Any) -> None:
        super().__init__(server, context)
        self.types: dict[str, _DeltaType] = {}

    async def handle(self, request: Any) -> None:
        type_url: str = request.type_url
        subscribe: list[str] = request.resource_names_subscribe
        unsubscribe: list[str] = request.resource_names_unsubscribe
        state = self.types.get(type_url)
        decision = decide_delta(
            known=state is not None,
            nonce_versions=state.nonces if state else {},
            nonce=request.response_nonce,
            subscribe=subscribe,
            unsubscribe=unsubscribe,
            error=request.error_detail is not None,
        )
        self.record(decision, type_url, request.error_detail)
        if state is None:
            explicit = set(subscribe) - {"*"}
            wildcard = "*" in subscribe or (type_url in WILDCARD_TYPES and not explicit)
            versions: Mapping[str, str] = request.initial_resource_versions
            state = self.types[type_url] = _DeltaType(wildcard, explicit, dict(versions))
        else:
            if decision.kind in (Kind.ACK, Kind.NACK):
                _forget_through(state.nonces, request.response_nonce)
            for name in subscribe:
                if name == "*":
                    state.wildcard = True
                else:
                    state.names.add(name)
                    state.sent.pop(name, None)  # subscribing means the client lacks it
            for name in unsubscribe:
                if name == "*":
                    state.wildcard = False
                else:
                    state.names.discard(name)
                    state.sent.pop(name, None)
        if decision.respond:
            await self.send(type_url, state, force=True)

    async def push(self) -> None:
        # As for SotW: a re-sent cluster waits for its endpoints, so they follow it
        # (our EDS service names are the cluster names).
        clusters: set[str] = set()
        for type_url in _push_order(self.types):
            refresh = clusters if type_url == ENDPOINT else set()
            sent = await self.send(type_url, self.types[type_url], force=False, refresh=refresh)
            if type_url == CLUSTER:
                clusters = sent

    async def send(
        self, type_url: str, state: _DeltaType, *, force: bool, refresh: set[str] | None = None
    ) -> set[str]:
        """Send what changed (plus `refresh`); return the names sent."""
        snapshot = self.snapshot()
        if snapshot is None:
            return set()
        wanted = _wanted(snapshot, type_url, state.wildcard, state.names)
        again = refresh or set()
        changed = [r for n, r in wanted.items() if state.sent.get(n) != r.hash or n in again]
        removed = sorted(n for n in state.sent if n not in wanted)
        if not (force or changed or removed):
            return set()
        version = content_version(wanted.values())
        nonce = self.server.next_nonce()
        state.nonces[nonce] = version
        while len(state.nonces) > _MAX_PENDING_NONCES:
            del state.nonces[next(iter(state.nonces))]
        for name in removed:
            del state.sent[name]
        state.sent.update((r.name, r.hash) for r in changed)
        self.server.status.sent(self.node_id, type_url, version, nonce)
        body = codec.delta_response(type_url, version, nonce, changed, removed)
        await self.context.write(body)
        return {r.name for r in changed}


def _forget_through(nonces: dict[str, str], nonce: str) -> None:
    """Drop `nonce` and every nonce sent before it: they can no longer be acked."""
    for key in list(nonces):
        del nonces[key]
        if key == nonce:
            return


async def serve(
    address: str, cache: SnapshotCache, status: StatusRegistry
) -> tuple[grpc.aio.Server, int]:
    """Start ADS plus the debug service on `host:port` (port 0 picks one)."""
    server = grpc.aio.server()
    AdsServer(cache, status).register(server)
    debug.register(server, cache, status)
    port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"cannot bind xDS server to {address}")
    await server.start()
    return server, port
