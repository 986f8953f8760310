"""Delta ADS streams (`streams.Stream` holds what both variants share): per type, what
the proxy holds, the nonces not yet answered, and the VHDS answers (`on_demand`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import codec, on_demand
from .codec import Encoded
from .protocol import Kind, decide_delta
from .snapshot import Snapshot
from .status import StreamKind
from .streams import HELD, Held, Stream, version_of, wanted_of
from .types import CLUSTER, VIRTUAL_HOST, WILDCARD_TYPES

if TYPE_CHECKING:
    from .server import AdsServer

_MAX_PENDING_NONCES = 64


@dataclass
class _DeltaType:
    wildcard: bool
    names: set[str]
    sent: dict[str, str]  # name -> hash the client holds (as far as we know)
    nonces: dict[str, str] = field(default_factory=dict)  # unanswered nonce -> version
    carried: dict[str, dict[str, str]] = field(default_factory=dict)  # nonce -> name -> hash
    fresh: set[str] = field(default_factory=set)  # subscribed since the last response
    version: str = ""  # of the last response
    resumed: frozenset[str] = frozenset()
    """What the proxy said it held when it subscribed (initial_resource_versions: it
    reconnected)."""


class DeltaStream(Stream):
    kind: StreamKind = "delta"

    def __init__(self, server: AdsServer, context: Any) -> None:
        super().__init__(server, context)
        self.types: dict[str, _DeltaType] = {}

    def subscribed(self) -> list[str]:
        return list(self.types)

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
            state.fresh = set(explicit)
            state.resumed = frozenset(versions)
        else:
            if decision.kind in (Kind.ACK, Kind.NACK):
                rejected = state.carried.get(request.response_nonce, {})
                _forget_through(state, request.response_nonce)
                await self.answered(type_url, decision, rejected, done=not state.nonces)
            for name in subscribe:
                if name == "*":
                    state.wildcard = True
                else:
                    state.names.add(name)
                    state.fresh.add(name)
                    state.sent.pop(name, None)  # subscribing means the client lacks it
            for name in unsubscribe:
                if name == "*":
                    state.wildcard = False
                else:
                    state.names.discard(name)
                    state.fresh.discard(name)
                    state.sent.pop(name, None)
        if type_url == VIRTUAL_HOST and subscribe and CLUSTER in self.types:
            # The clusters of a fetched virtual host go first; it waits for their ACK.
            await self.offer(CLUSTER)
        if decision.respond:
            await self.offer(type_url, force=True)

    def current(self, type_url: str, names: Mapping[str, str]) -> dict[str, str]:
        snapshot = self.snapshot()
        available = snapshot.resources(type_url) if snapshot is not None else {}
        return {n: available[n].hash for n in names if n in available}

    def _wanted(self, snapshot: Snapshot, type_url: str, state: _DeltaType) -> dict[str, Encoded]:
        if type_url == VIRTUAL_HOST:
            return on_demand.virtual_hosts(snapshot.on_demand, state.names)[0]
        wanted = wanted_of(snapshot, type_url, state.wildcard, state.names)
        if type_url == CLUSTER:
            vhosts = self.types.get(VIRTUAL_HOST)
            aliases = vhosts.names if vhosts is not None else ()
            # A reconnecting proxy asks for clusters before it says which virtual hosts
            # it fetched: until then, keep the fetchable clusters it holds.
            named = state.names if vhosts is not None else state.names | state.resumed
            return on_demand.clusters(wanted, snapshot.on_demand, named, aliases)
        return wanted

    async def send(
        self, type_url: str, *, force: bool, refresh: set[str]
    ) -> set[str] | Held | None:
        """Send what changed (plus `refresh`, and the answers to fresh VHDS aliases)."""
        snapshot, state = self.snapshot(), self.types.get(type_url)
        if snapshot is None or state is None:
            return None
        wanted = self._wanted(snapshot, type_url, state)
        changed = [r for n, r in wanted.items() if state.sent.get(n) != r.hash or n in refresh]
        removed = sorted(n for n in state.sent if n not in wanted)
        resumed = bool(state.resumed) and not state.version  # nothing said on this stream yet
        answer = on_demand.NO_ANSWER
        if type_url == VIRTUAL_HOST:
            fresh = state.fresh
            if resumed:  # an alias re-subscribed for a virtual host the proxy holds waits
                # for no answer (no request is paused on it); its route tables are warm
                _, names = on_demand.virtual_hosts(snapshot.on_demand, fresh)
                fresh = {a for a, n in names.items() if n is None or n not in state.sent}
            first = not (state.version or resumed)
            answer = on_demand.answer(snapshot.on_demand, fresh, first=first)
            changed += [wanted[n] for n in answer.aliases if all(r.name != n for r in changed)]
        state.fresh.clear()
        # A scoped proxy is told the snapshot's version of the type even when nothing it
        # holds changed, so its ACK says it is current (see Snapshot).
        scoped = snapshot.on_demand is not None
        version = snapshot.version(type_url) if scoped else version_of(snapshot, type_url, wanted)
        if resumed and not (changed or removed or answer.unresolved or answer.aliases):
            # It reconnected (to us, or to another replica: a resource's version is the
            # hash of its content) holding exactly this: nothing to send.
            state.version = version
            self.holds(type_url, version)
            return HELD
        moved = scoped and version != state.version
        said = changed or removed or answer.unresolved or answer.tables or answer.aliases
        quiet = not (force or said or state.nonces) and type_url not in self.rejections
        if moved and quiet and state.version and type_url not in self.owed:
            # Nothing it holds changed (an edit of a service it never fetched): it is
            # current at the new version without a response — a push to a thousand
            # scoped sidecars writes only to those that fetched what changed. Not before
            # its first answer of the type (Envoy waits for one, even an empty one, to
            # initialise), nor with a response unanswered or rejected.
            state.version = version
            self.holds(type_url, version)
            return HELD
        if not (force or changed or removed or moved or answer.unresolved or answer.tables):
            return None
        state.version = version
        nonce = self.server.next_nonce()
        state.nonces[nonce] = version
        state.carried[nonce] = {r.name: r.hash for r in changed}
        while len(state.nonces) > _MAX_PENDING_NONCES:
            oldest = next(iter(state.nonces))
            del state.nonces[oldest]
            state.carried.pop(oldest, None)
        for name in removed:
            del state.sent[name]
        state.sent.update((r.name, r.hash) for r in changed)
        self.server.status.sent(self.node_id, type_url, version, nonce)
        removed += answer.tables
        body = codec.delta_response(
            type_url, version, nonce, changed, removed, answer.aliases, answer.unresolved
        )
        await self.write(body)
        return {r.name for r in changed}


def _forget_through(state: _DeltaType, nonce: str) -> None:
    """Drop `nonce` and every nonce sent before it: they can no longer be acked."""
    for key in list(state.nonces):
        del state.nonces[key]
        state.carried.pop(key, None)
        if key == nonce:
            return
