"""The ADS server: one stream per proxy connection, SotW and Delta (`streams`), TLS
and per-stream authentication when asked, and the debug service next to it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DiscoveryRequest

from . import debug
from .cache import SnapshotCache
from .delta import DeltaStream
from .protocol import (
    Backoff,
)
from .status import StatusRegistry
from .streams import SotwStream, Stream

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
Authenticator = Callable[[str, Mapping[str, str]], Awaitable[str | None]]
"""(node id, the stream's request metadata) → why the stream is refused, or None.
Asynchronous: in a cluster it may ask the API server (TokenReview)."""


class AdsServer:
    """Serves each node the snapshot `cache` holds for it; records in `status`.
    With `authenticate`, a stream is served only once its caller has proven it is
    the node it names: a proxy gets its own config (and key), never another's."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: StatusRegistry,
        backoff: Backoff | None = None,
        authenticate: Authenticator | None = None,
    ) -> None:
        self.cache = cache
        self.status = status
        self.backoff = backoff or Backoff()
        self.authenticate = authenticate
        self._streams: dict[Stream, asyncio.Future[None]] = {}
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
        await self._serve(SotwStream(self, context), requests)

    async def _delta(self, requests: AsyncIterator[Any], context: Any) -> None:
        await self._serve(DeltaStream(self, context), requests)

    async def _serve(self, stream: Stream, requests: AsyncIterator[Any]) -> None:
        done = asyncio.get_running_loop().create_future()
        self._streams[stream] = done
        try:
            await stream.run(requests)
        finally:
            del self._streams[stream]
            done.set_result(None)

    def streams(self) -> list[Stream]:
        """The streams open now (for status and tests)."""
        return list(self._streams)

    async def end_streams(self, within: float = 5.0) -> None:
        """Tell every stream to finish (as if its proxy had closed it) and wait for them."""
        waiting = list(self._streams.values())
        for stream in list(self._streams):
            stream.end()
        if waiting:
            await asyncio.wait(waiting, timeout=within)


class XdsServer:
    """A running ADS (plus debug) server. `stop` ends every stream first, so each RPC
    finishes normally instead of being aborted mid-handler (grpc logs those as
    unhandled CancelledErrors)."""

    def __init__(self, grpc_server: grpc.aio.Server, ads: AdsServer) -> None:
        self.grpc = grpc_server
        self.ads = ads

    async def stop(self, grace: float | None = None) -> None:
        await self.ads.end_streams()
        await self.grpc.stop(grace)


async def serve(
    address: str,
    cache: SnapshotCache,
    status: StatusRegistry,
    backoff: Backoff | None = None,
    *,
    credentials: grpc.ServerCredentials | None = None,
    authenticate: Authenticator | None = None,
) -> tuple[XdsServer, int]:
    """Start ADS plus the debug service on `host:port` (port 0 picks one); over TLS
    with `credentials`, each stream checked by `authenticate`."""
    server = grpc.aio.server()
    ads = AdsServer(cache, status, backoff, authenticate)
    ads.register(server)
    debug.register(server, cache, status)
    if credentials is not None:
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"cannot bind xDS server to {address}")
    await server.start()
    return XdsServer(server, ads), port
