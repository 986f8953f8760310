"""Simulated sidecars for bench/ads_clients.py: Delta ADS clients that subscribe, ACK
and NACK as a scoped Envoy sidecar does, cheaply enough to run 1,000 in one process.

What a real scoped Envoy 1.40 does on a Delta stream to this control plane (logged
from the server's side with the sidecar bootstrap of `pilotfish_xds.bootstrap`):

1. CDS, no names (wildcard), the node on this first request only;
2. after the first clusters: LDS, no names (wildcard); EDS for the EDS clusters'
   service names, before it ACKs the clusters (they warm until endpoints arrive);
3. after the listeners: RDS for the route tables the listeners name, SDS for the
   secrets their (and the clusters') TLS contexts name; LDS ACKed;
4. after a route table with VHDS: VHDS with no names (each table waits for the
   server's first answer);
5. on the first request to a Host no virtual host matches (the on_demand filter):
   VHDS `<route table>/<Host>`; the server sends that host's clusters first (CDS,
   then EDS subscribed and ACKed), then the virtual host with the alias.

Every response is ACKed with its nonce (NACKed, `error_detail`, for a proxy told to),
and what a NACK refused is not applied: Envoy keeps its last accepted config.

Cheap on purpose: the gRPC method uses identity (de)serializers, and only a
response's envelope is read at the wire level (type, nonce, system version, each
resource's name, version and aliases, removals). Resource bodies are parsed only to
find what they name (EDS, RDS, SDS names, VHDS), once per distinct (type, version):
the control plane versions a resource by its content hash, so the 1,000 proxies'
identical clusters and listeners are parsed once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import grpc

from ads_wire import METHOD, Response, names_of, parse_response, request
from pilotfish_xds import types
from pilotfish_xds.codec import decode

TRACE = bool(os.environ.get("ADS_SIM_TRACE"))


def _trace(proxy: Any, way: str, type_url: str, names: Any, nonce: str) -> None:
    """ADS_SIM_TRACE=1: every message, to stderr (debugging the simulation)."""
    kind = type_url.rsplit(".", 1)[-1]
    print(f"{time.monotonic():.3f} {id(proxy):x} {way} {kind} {names} {nonce}", file=sys.stderr)


# --- one simulated sidecar -------------------------------------------------------------


@dataclass
class Seen:
    """A VHDS response this proxy received: when, and what it answered."""

    received: float
    answered: float
    nacked: bool
    resources: dict[str, str]  # name -> version


class Proxy:
    """One sidecar: its own channel (own TCP connection) and Delta stream."""

    def __init__(self, address: str, node: bytes, nack: bool = False) -> None:
        self.address = address
        self.node = node
        self.nack = nack
        """Reject every virtual host pushed after the first fetch (an edit)."""
        self.held: dict[str, dict[str, str]] = {}  # type -> name -> version
        self.subscribed: dict[str, set[str]] = {}  # type -> names asked for
        self.awaiting: set[str] = set()  # types asked for and not yet answered
        self.defer_cds: str | None = None  # CDS nonce to ACK once endpoints arrive
        self.eds: dict[str, tuple[str, ...]] = {}  # cluster -> the endpoints it needs
        self.vhds_seen: list[Seen] = []
        self.responses = 0
        self.largest = 0  # bytes of the largest response
        self.started = 0.0
        self.retries: list[str] = []  # why each failed attempt to connect failed
        self.tables: set[str] = set()  # route tables whose virtual hosts come by VHDS
        self.fetching: dict[str, float] = {}  # alias -> when subscribed
        self.fetched: dict[str, float] = {}  # alias -> when its virtual host was ACKed
        self.converged = asyncio.Event()
        self.converged_at = 0.0
        self.error: str | None = None
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._lock = asyncio.Lock()
        self._node_sent = False
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Connect, and as Envoy does, connect again after a jittered exponential
        backoff (0.5 s doubling up to 30 s) when the stream fails before the first
        config is in, starting over (Envoy would announce what it already holds); after
        that a failure is reported (the edit would miss it)."""
        rng = random.Random(id(self))
        while True:
            await self._connect()
            failure = await self._read()
            if self.converged.is_set() or failure is None:
                self.error = failure or "stream ended by the server"
                return
            self.retries.append(failure)
            await self._channel_close()
            self._reset()
            await asyncio.sleep(rng.uniform(0, min(30.0, 0.5 * 2 ** len(self.retries))))

    async def _connect(self) -> None:
        # A local subchannel pool: otherwise gRPC shares one connection between
        # channels to the same target, and 1,000 "proxies" would be one socket.
        # No cap on a response's size: Envoy's own gRPC client has none (gRPC's default
        # 4 MiB would cancel the stream on a large mesh's first responses).
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]
        self._channel = grpc.aio.insecure_channel(self.address, options=options)
        stream = self._channel.stream_stream(METHOD)  # identity (de)serializers: bytes
        self._call = stream()
        self.started = time.monotonic()
        await self._send(types.CLUSTER)

    def _reset(self) -> None:
        self.held.clear()
        self.subscribed.clear()
        self.awaiting.clear()
        self.tables.clear()
        self.defer_cds = None
        self.eds.clear()
        self.vhds_seen.clear()
        self._node_sent = False

    async def _channel_close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._channel_close()

    async def fetch(self, host: str) -> str:
        """What the on_demand filter does on the first request for `host` (every
        service of the benchmark is on one port, so one route table serves it)."""
        alias = f"{min(self.tables)}/{host}"
        self.fetching[alias] = time.monotonic()
        await self._send(types.VIRTUAL_HOST, subscribe=[alias])
        return alias

    async def _send(
        self,
        type_url: str,
        *,
        subscribe: list[str] | tuple[str, ...] = (),
        unsubscribe: list[str] | tuple[str, ...] = (),
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        if not nonce:  # a subscription (or the type's first request): an answer is due
            self.awaiting.add(type_url)
            self.subscribed.setdefault(type_url, set()).update(subscribe)
            self.subscribed[type_url].difference_update(unsubscribe)
        node = b"" if self._node_sent else self.node
        self._node_sent = True
        body = request(
            type_url,
            subscribe=subscribe,
            unsubscribe=unsubscribe,
            nonce=nonce,
            error=error,
            node=node,
        )
        if TRACE:
            _trace(self, ">", type_url, subscribe, nonce)
        async with self._lock:
            await self._call.write(body)

    async def _read(self) -> str | None:
        """Handle responses until the stream ends; why it failed (None: it ended)."""
        try:
            async for body in self._call:
                self.responses += 1
                self.largest = max(self.largest, len(body))
                await self._handle(parse_response(body), time.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
            return f"{code or exc!r} after {time.monotonic() - self.started:.1f} s, " + (
                f"{self.responses} responses, awaiting {sorted(self.awaiting)}"
            )
        return None

    async def _handle(self, r: Response, received: float) -> None:
        t = r.type_url
        if TRACE:
            _trace(self, "<", t, [i.name for i in r.resources][:5], r.nonce)
        self.awaiting.discard(t)
        if t == types.VIRTUAL_HOST:
            await self._virtual_hosts(r, received)
        else:
            held = self.held.setdefault(t, {})
            for name in r.removed:
                held.pop(name, None)
            for item in r.resources:
                held[item.name] = item.version
            if t == types.CLUSTER:
                await self._clusters(r)
            elif t == types.LISTENER:
                await self._listeners(r)
            elif t == types.ROUTE:
                self.tables.update(
                    i.name for i in r.resources if names_of(t, i.version, i.body).vhds
                )
                if self.tables and types.VIRTUAL_HOST not in self.subscribed:
                    await self._send(types.VIRTUAL_HOST)
                await self._send(t, nonce=r.nonce)
            elif t == types.ENDPOINT:
                if self.defer_cds is not None:
                    nonce, self.defer_cds = self.defer_cds, None
                    await self._send(types.CLUSTER, nonce=nonce)
                await self._send(t, nonce=r.nonce)
            else:
                await self._send(t, nonce=r.nonce)
        if not self.converged.is_set() and self._settled():
            self.converged_at = time.monotonic()
            self.converged.set()

    def _settled(self) -> bool:
        return (
            not self.awaiting
            and self.defer_cds is None
            and all(t in self.held for t in (types.CLUSTER, types.LISTENER, types.ROUTE))
            and (types.VIRTUAL_HOST not in self.subscribed or bool(self.vhds_seen))
        )

    async def _clusters(self, r: Response) -> None:
        first = types.LISTENER not in self.subscribed
        for name in r.removed:
            self.eds.pop(name, None)
        for item in r.resources:
            self.eds[item.name] = names_of(types.CLUSTER, item.version, item.body).eds
        wanted = {n for names in self.eds.values() for n in names}
        have = self.subscribed.get(types.ENDPOINT, set())
        new, gone = sorted(wanted - have), sorted(have - wanted)
        if new or gone:
            await self._send(types.ENDPOINT, subscribe=new, unsubscribe=gone)
        if new:
            self.defer_cds = r.nonce  # the clusters warm until their endpoints arrive
        else:
            await self._send(types.CLUSTER, nonce=r.nonce)
        if first:
            await self._send(types.LISTENER)

    async def _listeners(self, r: Response) -> None:
        rds: set[str] = set()
        sds: set[str] = set()
        for item in r.resources:
            found = names_of(types.LISTENER, item.version, item.body)
            rds.update(found.rds)
            sds.update(found.sds)
        for type_url, wanted in ((types.ROUTE, rds), (types.SECRET, sds)):
            new = sorted(wanted - self.subscribed.get(type_url, set()))
            if new:
                await self._send(type_url, subscribe=new)
        await self._send(types.LISTENER, nonce=r.nonce)

    async def _virtual_hosts(self, r: Response, received: float) -> None:
        reject = self.nack and bool(self.fetched) and bool(r.resources)
        if reject:
            await self._send(types.VIRTUAL_HOST, nonce=r.nonce, error="told to reject")
        else:
            held = self.held.setdefault(types.VIRTUAL_HOST, {})
            for name in r.removed:
                held.pop(name, None)
            for item in r.resources:
                held[item.name] = item.version
            await self._send(types.VIRTUAL_HOST, nonce=r.nonce)
        answered = time.monotonic()
        self.vhds_seen.append(
            Seen(received, answered, reject, {i.name: i.version for i in r.resources})
        )
        for item in r.resources:
            for alias in item.aliases:
                if alias in self.fetching and alias not in self.fetched:
                    self.fetched[alias] = answered

    def answer_of(self, name: str, version: str, since: float) -> Seen | None:
        """The first VHDS response since `since` carrying `name` at `version`."""
        return next(
            (s for s in self.vhds_seen if s.received >= since and s.resources.get(name) == version),
            None,
        )


# --- the clients' process (started by ads_clients.py) ---------------------------------


def nacks(index: int, fraction: float) -> bool:
    """Spread the rejecting proxies evenly: index i rejects when i*f crosses an integer."""
    return int((index + 1) * fraction) > int(index * fraction)


async def _until(check: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def _progress(proxies: list[Proxy]) -> None:
    """Every 10 s while connecting, to stderr: a long run shows where it stands."""
    t0 = time.monotonic()
    while True:
        await asyncio.sleep(10)
        done = sum(p.converged.is_set() for p in proxies)
        retried = sum(bool(p.retries) for p in proxies)
        print(
            f"  proxies at {time.monotonic() - t0:.0f} s: {done}/{len(proxies)} converged, "
            f"{retried} reconnected",
            file=sys.stderr,
            flush=True,
        )


async def serve_clients(args: argparse.Namespace) -> None:
    from ads_server import fleet, node_bytes, read_line, reply

    for type_url in (types.CLUSTER, types.LISTENER, types.ROUTE):
        decode(type_url, b"").to_dict()  # import the message modules before timing
    pods = list(enumerate(fleet(args.clients)))[args.shard :: args.shards]
    port = int(args.address.rsplit(":", 1)[1])
    proxies = [
        Proxy(args.address, node_bytes(pod, port), nacks(i, args.nack_fraction)) for i, pod in pods
    ]
    reply("ready")
    try:
        while line := (await read_line()).split():
            if line[0] == "connect":
                progress = asyncio.create_task(_progress(proxies))
                await asyncio.gather(*(p.start() for p in proxies))
                await _until(
                    lambda: all(p.converged.is_set() or p.error for p in proxies), args.timeout
                )
                progress.cancel()
                reply(
                    {
                        "converged": [p.converged_at for p in proxies if p.converged.is_set()],
                        "reconnected": sum(bool(p.retries) for p in proxies),
                        "reconnects": [r for p in proxies for r in p.retries][:5],
                        "errors": [p.error for p in proxies if p.error]
                        + [f"not converged: {sum(not p.converged.is_set() for p in proxies)}"]
                        * any(not p.converged.is_set() for p in proxies),
                    }
                )
            elif line[0] == "fetch":
                aliases = await asyncio.gather(*(p.fetch(line[1]) for p in proxies))
                pairs = list(zip(proxies, aliases, strict=True))
                await _until(
                    lambda pairs=pairs: all(a in p.fetched for p, a in pairs), args.timeout
                )
                done = [(p.fetched[a], p.fetching[a]) for p, a in pairs if a in p.fetched]
                reply(
                    {
                        "latency": [end - begin for end, begin in done],
                        "last": max((end for end, _ in done), default=0.0),
                        "errors": [p.error for p in proxies if p.error]
                        + [f"not fetched: {len(pairs) - len(done)}"] * (len(done) < len(pairs)),
                    }
                )
            elif line[0] == "answers":
                name, version, since = line[1], line[2], float(line[3])
                await _until(
                    lambda n=name, v=version, t=since: all(
                        p.answer_of(n, v, t) or p.error for p in proxies
                    ),
                    args.timeout,
                )
                await asyncio.sleep(1.0)  # would a rejected push come back?
                seen = [p.answer_of(name, version, since) for p in proxies]
                reply(
                    {
                        "seen": [
                            {"received": s.received, "answered": s.answered, "nacked": s.nacked}
                            if s
                            else None
                            for s in seen
                        ],
                        "responses_since": [
                            len([s for s in p.vhds_seen if s.received >= since]) for p in proxies
                        ],
                    }
                )
            elif line[0] == "quit":
                break
    finally:
        await asyncio.gather(*(p.close() for p in proxies))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--nack-fraction", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(serve_clients(p.parse_args()))


if __name__ == "__main__":
    main()
