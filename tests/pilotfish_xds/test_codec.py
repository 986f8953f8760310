"""The codec: re-validation switch, encode cache, hand-written response bytes."""

from __future__ import annotations

import importlib.metadata

import pydantic
import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import SocketAddress
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryResponse,
    DiscoveryResponse,
    Resource,
)
from envoy_data_plane.google.protobuf import Any

from pilotfish_xds import codec
from pilotfish_xds.codec import EncodeCache, Encoded, decode, encode
from pilotfish_xds.types import CLUSTER


def test_encode_does_not_revalidate_but_construction_still_does() -> None:
    address = SocketAddress(address="127.0.0.1", port_value=80)
    address.port_value = 2**40  # invalid for uint32; only re-validation would notice
    assert bytes(address)  # as shipped, this raises ValidationError
    with pytest.raises(pydantic.ValidationError):
        SocketAddress(address="127.0.0.1", port_value=2**40)


def test_switch_is_pinned_and_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    codec.disable_revalidation()  # again: harmless
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.10.0")
    with pytest.raises(RuntimeError, match=r"0\.9\.1"):
        codec.disable_revalidation()


def test_encoded_hash_and_round_trip() -> None:
    one = encode("a", Cluster(name="a"))
    assert one == Encoded("a", bytes(Cluster(name="a")))
    assert one.hash == Encoded("a", one.body).hash and len(one.hash) == 16
    assert encode("a", Cluster(name="a", alt_stat_name="x")).hash != one.hash
    assert decode(CLUSTER, one.body) == Cluster(name="a")


def test_encode_cache_hits_and_sweep() -> None:
    cache = EncodeCache()
    built: list[str] = []

    def build(name: str, tag: str = "") -> Cluster:
        built.append(name)
        return Cluster(name=name, alt_stat_name=tag)

    first = cache.build("a", build, "a")
    assert cache.build("a", build, "a") is first
    cache.build("b", build, "b")
    assert (cache.hits, cache.misses, built) == (1, 2, ["a", "b"])
    assert cache.sweep() == 0  # both used since the start
    cache.build("a", build, "a")
    assert cache.sweep() == 1  # b was not used in this round
    assert len(cache) == 1
    cache.build("b", build, "b")
    assert built == ["a", "b", "b"]


def test_encode_cache_key_is_the_builder_and_all_its_inputs() -> None:
    """A builder cannot read an input its key leaves out: a new argument, or another
    builder for the same name, is another entry."""
    cache = EncodeCache()

    def plain(name: str) -> Cluster:
        return Cluster(name=name)

    def tagged(name: str, tag: str = "t") -> Cluster:
        return Cluster(name=name, alt_stat_name=tag)

    a = cache.build("a", plain, "a")
    assert cache.build("a", tagged, "a").body != a.body
    assert cache.build("a", tagged, "a", "u").body != cache.build("a", tagged, "a").body
    assert cache.misses == 3


def test_sotw_response_bytes_parse_as_discovery_response() -> None:
    resources = [encode("a", Cluster(name="a")), Encoded("empty", b"")]
    body = codec.sotw_response(CLUSTER, "v1", "n1", resources)
    expected = DiscoveryResponse(
        version_info="v1",
        type_url=CLUSTER,
        nonce="n1",
        resources=[Any(type_url=CLUSTER, value=r.body) for r in resources],
    )
    assert DiscoveryResponse.parse(body) == expected
    assert body == bytes(expected)


def test_delta_response_bytes_parse_as_delta_discovery_response() -> None:
    changed = [encode("a", Cluster(name="a"))]
    body = codec.delta_response(CLUSTER, "v2", "n2", changed, ["gone", "also-gone"])
    expected = DeltaDiscoveryResponse(
        system_version_info="v2",
        type_url=CLUSTER,
        nonce="n2",
        resources=[
            Resource(name="a", version=changed[0].hash, resource=Any.pack(Cluster(name="a")))
        ],
        removed_resources=["gone", "also-gone"],
    )
    assert DeltaDiscoveryResponse.parse(body) == expected
