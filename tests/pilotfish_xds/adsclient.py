"""An in-process ADS client on a real grpc.aio channel, for tests and benchmarks.

It speaks the protocol by hand, request by request, so tests can send exactly
what Envoy would (ACKs, NACKs, stale nonces) and see exactly what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import betterproto2
import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.google.protobuf import Struct
from envoy_data_plane.google.rpc import Status

from pilotfish_xds import wire
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.protocol import Backoff
from pilotfish_xds.server import XdsServer, serve
from pilotfish_xds.status import StatusRegistry


@dataclass
class Running:
    """A server started by `pilotfish_xds.server.serve` (see conftest's `xds`)."""

    address: str
    cache: SnapshotCache
    status: StatusRegistry
    server: XdsServer


@contextlib.asynccontextmanager
async def running(
    cache: SnapshotCache | None = None, backoff: Backoff | None = None
) -> AsyncIterator[Running]:
    """An ADS server on a free loopback port, stopped on exit."""
    cache, status = cache or SnapshotCache(), StatusRegistry()
    server, port = await serve("127.0.0.1:0", cache, status, backoff)
    try:
        yield Running(f"127.0.0.1:{port}", cache, status, server)
    finally:
        await server.stop(grace=None)


_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"


class _Client:
    method = ""
    response_class: Any = None

    def __init__(
        self,
        address: str,
        node_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        tls: tuple[bytes, str] | None = None,
        token: str | None = None,
    ):
        """`tls`: (roots PEM, server name) for a control plane serving TLS; `token`:
        sent as `authorization: Bearer` with the stream, as a sidecar does."""
        self.address = address
        self.tls = tls
        self.token = token
        self.node = Node(id=node_id, cluster="test", metadata=Struct.from_dict(metadata or {}))
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._sent_node = False
        self._read_task: asyncio.Future[Any] | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(self.address)
        else:
            roots, name = self.tls
            self._channel = grpc.aio.secure_channel(
                self.address,
                grpc.ssl_channel_credentials(root_certificates=roots),
                options=[("grpc.ssl_target_name_override", name)],
            )
        stream = self._channel.stream_stream(
            _ADS + self.method,
            request_serializer=bytes,
            response_deserializer=self.response_class.parse,
        )
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None
        self._call = stream(metadata=metadata)
        self._sent_node = False
        self._read_task = None

    async def close(self) -> None:
        if self._read_task is not None:
            self._read_task.cancel()
            self._read_task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _write(self, request: Any) -> None:
        if not self._sent_node:  # like Envoy: the node rides on the first request only
            request.node = self.node
            self._sent_node = True
        await self._call.write(request)

    async def _recv(self, wait: float) -> Any:
        response = await asyncio.wait_for(asyncio.shield(self._pending_read()), wait)
        self._read_task = None
        if response is grpc.aio.EOF:
            raise EOFError("stream closed by server")
        return response

    async def expect_nothing(self, wait: float = 0.3) -> None:
        """Assert no response arrives within `wait` seconds."""
        try:
            response = await asyncio.wait_for(asyncio.shield(self._pending_read()), wait)
        except TimeoutError:
            return
        self._read_task = None
        raise AssertionError(f"unexpected response: {response}")

    def _pending_read(self) -> asyncio.Future[Any]:
        # grpc allows one read at a time: a read that timed out stays pending
        # and is picked up by the next recv instead of being lost.
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(self._call.read())
        return self._read_task


class SotwClient(_Client):
    method = "StreamAggregatedResources"
    response_class = DiscoveryResponse

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.accepted: dict[str, str] = {}  # type_url -> last version acked

    async def recv(self, wait: float = 5.0) -> DiscoveryResponse:
        response: DiscoveryResponse = await self._recv(wait)
        return response

    async def request(
        self,
        type_url: str,
        names: list[str] | tuple[str, ...] = (),
        *,
        nonce: str = "",
        version: str = "",
        error: str | None = None,
    ) -> None:
        await self._write(
            DiscoveryRequest(
                type_url=type_url,
                resource_names=list(names),
                response_nonce=nonce,
                version_info=version,
                error_detail=Status(code=3, message=error) if error is not None else None,
            )
        )

    async def ack(
        self, response: DiscoveryResponse, names: list[str] | tuple[str, ...] = ()
    ) -> None:
        self.accepted[response.type_url] = response.version_info
        await self.request(
            response.type_url, names, nonce=response.nonce, version=response.version_info
        )

    async def nack(
        self, response: DiscoveryResponse, message: str, names: list[str] | tuple[str, ...] = ()
    ) -> None:
        """Reject `response`, reporting the last version accepted, as Envoy does."""
        accepted = self.accepted.get(response.type_url, "")
        await self.request(
            response.type_url, names, nonce=response.nonce, version=accepted, error=message
        )


class DeltaClient(_Client):
    method = "DeltaAggregatedResources"
    response_class = DeltaDiscoveryResponse

    async def recv(self, wait: float = 5.0) -> DeltaDiscoveryResponse:
        response: DeltaDiscoveryResponse = await self._recv(wait)
        return response

    async def request(
        self,
        type_url: str,
        *,
        subscribe: list[str] | tuple[str, ...] = (),
        unsubscribe: list[str] | tuple[str, ...] = (),
        nonce: str = "",
        initial_versions: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        await self._write(
            DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=list(subscribe),
                resource_names_unsubscribe=list(unsubscribe),
                response_nonce=nonce,
                initial_resource_versions=initial_versions or {},
                error_detail=Status(code=3, message=error) if error is not None else None,
            )
        )

    async def ack(self, response: DeltaDiscoveryResponse) -> None:
        await self.request(response.type_url, nonce=response.nonce)

    async def nack(self, response: DeltaDiscoveryResponse, message: str) -> None:
        await self.request(response.type_url, nonce=response.nonce, error=message)


# --- A light SotW client, for many streams at once -----------------------------------
# Parsing whole DiscoveryResponses costs far more than the server's side of a push;
# a load of many clients reads only the top-level fields it needs.


def top_fields(body: bytes) -> dict[int, list[bytes]]:
    """A message's top-level length-delimited fields, by number (others skipped)."""
    out: dict[int, list[bytes]] = {}
    for f in betterproto2.parse_fields(body):
        if f.wire_type == 2:
            out.setdefault(f.number, []).append(f.value)
    return out


@dataclass(frozen=True)
class Reply:
    """The top-level fields of a DiscoveryResponse."""

    type_url: str
    version: str
    nonce: str
    resources: int

    @classmethod
    def parse(cls, body: bytes) -> Reply:
        f = top_fields(body)

        def text(n: int) -> str:
            return f[n][0].decode() if n in f else ""

        return cls(text(4), text(1), text(5), len(f.get(2, ())))


class LightSotwClient:
    """A State-of-the-World stream on a shared channel: writes requests at the wire
    level and reads replies as `Reply`; for loads of many streams."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        stream = channel.stream_stream(
            _ADS + SotwClient.method, request_serializer=bytes, response_deserializer=bytes
        )
        self.call: Any = stream()
        self.node_id = node_id
        self._sent_node = False

    async def request(
        self, type_url: str, *, nonce: str = "", version: str = "", names: tuple[str, ...] = ()
    ) -> None:
        parts = [wire.length_delimited(1, version.encode())] if version else []
        if not self._sent_node:
            node = wire.length_delimited(1, self.node_id.encode())
            parts.append(wire.length_delimited(2, node))
            self._sent_node = True
        parts += [wire.length_delimited(3, n.encode()) for n in names]
        parts.append(wire.length_delimited(4, type_url.encode()))
        if nonce:
            parts.append(wire.length_delimited(5, nonce.encode()))
        await self.call.write(b"".join(parts))

    async def recv(self) -> Reply:
        body = await self.call.read()
        if body is grpc.aio.EOF:
            raise EOFError("stream closed by server")
        return Reply.parse(body)

    async def ack(self, reply: Reply) -> None:
        await self.request(reply.type_url, nonce=reply.nonce, version=reply.version)
