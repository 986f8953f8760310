"""The wire level of bench/ads_sim.py's simulated sidecars: a Delta discovery
response's envelope read without parsing its resources, requests written by hand,
and what a resource makes Envoy subscribe to (parsed once per content version).

Field numbers are envoy/service/discovery/v3/discovery.proto's;
tests/pilotfish_xds/test_ads_sim.py checks them against envoy-data-plane's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import betterproto2

from pilotfish_xds import types, wire
from pilotfish_xds.codec import decode

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
# DeltaDiscoveryRequest / DeltaDiscoveryResponse / Resource / Any
REQ_NODE, REQ_TYPE, REQ_SUB, REQ_UNSUB, REQ_NONCE, REQ_ERROR = 1, 2, 3, 4, 6, 7
RESP_VERSION, RESP_RESOURCES, RESP_TYPE, RESP_NONCE, RESP_REMOVED = 1, 2, 4, 5, 6
RES_VERSION, RES_ANY, RES_NAME, RES_ALIASES = 1, 2, 3, 4
ANY_VALUE = 2
NACK_CODE = 13  # google.rpc.Code INTERNAL, as Envoy reports a rejected update

# --- wire level ---------------------------------------------------------------------


def _fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of a message, by betterproto2's reader: an int for a
    varint, the bytes of a length-delimited field."""
    for f in betterproto2.parse_fields(buf):
        yield f.number, f.value


@dataclass(slots=True)
class Item:
    name: str
    version: str
    body: bytes
    aliases: tuple[str, ...]


@dataclass(slots=True)
class Response:
    type_url: str = ""
    nonce: str = ""
    system_version: str = ""
    resources: list[Item] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def parse_response(buf: bytes) -> Response:
    out = Response()
    for number, value in _fields(buf):
        if number == RESP_RESOURCES:
            name = version = ""
            body = b""
            aliases: list[str] = []
            for n, v in _fields(value):
                if n == RES_NAME:
                    name = v.decode()
                elif n == RES_VERSION:
                    version = v.decode()
                elif n == RES_ALIASES:
                    aliases.append(v.decode())
                elif n == RES_ANY:
                    body = next((x for k, x in _fields(v) if k == ANY_VALUE), b"")
            out.resources.append(Item(name, version, body, tuple(aliases)))
        elif number == RESP_TYPE:
            out.type_url = value.decode()
        elif number == RESP_NONCE:
            out.nonce = value.decode()
        elif number == RESP_VERSION:
            out.system_version = value.decode()
        elif number == RESP_REMOVED:
            out.removed.append(value.decode())
    return out


def _string(number: int, value: str) -> bytes:
    return wire.length_delimited(number, value.encode())


def request(
    type_url: str,
    *,
    subscribe: tuple[str, ...] | list[str] = (),
    unsubscribe: tuple[str, ...] | list[str] = (),
    nonce: str = "",
    error: str | None = None,
    node: bytes = b"",
) -> bytes:
    """A DeltaDiscoveryRequest's bytes (`node`: an encoded Node, first request only)."""
    parts = [wire.length_delimited(REQ_NODE, node)] if node else []
    parts.append(_string(REQ_TYPE, type_url))
    parts += [_string(REQ_SUB, n) for n in subscribe]
    parts += [_string(REQ_UNSUB, n) for n in unsubscribe]
    if nonce:
        parts.append(_string(REQ_NONCE, nonce))
    if error is not None:
        status = wire.tag(1, 0) + wire.varint(NACK_CODE) + _string(2, error)
        parts.append(wire.length_delimited(REQ_ERROR, status))
    return b"".join(parts)


# --- what a resource names -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """What one resource makes Envoy subscribe to."""

    eds: tuple[str, ...] = ()
    rds: tuple[str, ...] = ()
    sds: tuple[str, ...] = ()
    vhds: bool = False


_NAMES: dict[tuple[str, str], Names] = {}


def names_of(type_url: str, version: str, body: bytes) -> Names:
    """Parsed once per (type, content version): identical resources are shared."""
    key = (type_url, version)
    found = _NAMES.get(key)
    if found is None:
        found = _NAMES[key] = _names(type_url, decode(type_url, body).to_dict())
    return found


def _names(type_url: str, d: dict[str, Any]) -> Names:
    sds: list[str] = []
    rds: list[str] = []
    _walk(d, sds, rds)
    eds: tuple[str, ...] = ()
    if type_url == types.CLUSTER and d.get("type") == "EDS":
        eds = (d.get("edsClusterConfig", {}).get("serviceName") or d["name"],)
    return Names(eds, tuple(rds), tuple(dict.fromkeys(sds)), "vhds" in d)


def _walk(node: Any, sds: list[str], rds: list[str]) -> None:
    if isinstance(node, list):
        for x in node:
            _walk(x, sds, rds)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("SdsSecretConfig"):
                sds.append(value["name"])
            elif key.endswith("SdsSecretConfigs"):
                sds.extend(v["name"] for v in value)
            elif key == "rds" and "routeConfigName" in value:
                rds.append(value["routeConfigName"])
            else:
                _walk(value, sds, rds)
