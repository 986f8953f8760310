"""wire.encode must give exactly betterproto2's bytes, faster."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterCommonLbConfig
from envoy_data_plane.envoy.config.core.v3 import DataSource, Metadata
from envoy_data_plane.envoy.config.route.v3 import (
    RetryPolicy,
    RouteAction,
    WeightedCluster,
    WeightedClusterClusterWeight,
)
from envoy_data_plane.envoy.type.v3 import Percent
from envoy_data_plane.google.protobuf import Struct, Value
from pydantic import TypeAdapter

from pilotfish_xds import ir, wire
from pilotfish_xds.codec import EncodeCache, decode
from pilotfish_xds.translate import translate

CASES = Path(__file__).parent / "testdata" / "envoy" / "in"


def _golden_resources() -> list[tuple[str, str, bytes]]:
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        mesh = TypeAdapter(ir.Mesh).validate_python(doc["mesh"])
        proxy = mesh.proxy(doc["proxy"])
        assert proxy is not None
        snapshot = translate(mesh, proxy, EncodeCache())
        for type_url in sorted(snapshot.type_urls()):
            for name, r in sorted(snapshot.resources(type_url).items()):
                out.append((f"{path.stem}:{name}", type_url, r.body))
    return out


@pytest.mark.parametrize(("name", "type_url", "body"), _golden_resources())
def test_same_bytes_as_betterproto_for_every_golden_resource(
    name: str, type_url: str, body: bytes
) -> None:
    message = decode(type_url, body)
    assert wire.encode(message) == bytes(message) == body


FIELD_KINDS = [
    # wrapper (UInt32Value), repeated messages, string
    WeightedCluster(
        clusters=[
            WeightedClusterClusterWeight(name="a", weight=7),
            WeightedClusterClusterWeight(name="b"),
        ]
    ),
    # Duration, enum-free nested message, packed repeated uint32
    RouteAction(
        timeout=timedelta(seconds=1, microseconds=5),
        retry_policy=RetryPolicy(retriable_status_codes=[503, 504]),
    ),
    # double inside a message, zero-valued wrapper kept (optional)
    Cluster(common_lb_config=ClusterCommonLbConfig(healthy_panic_threshold=Percent(value=0.0))),
    Cluster(common_lb_config=ClusterCommonLbConfig(healthy_panic_threshold=Percent(value=12.5))),
    # map<string, Struct>, Struct's map<string, Value>, bool and number values
    Metadata(
        filter_metadata={
            "envoy.lb": Struct(
                fields={"canary": Value(bool_value=True), "n": Value(number_value=-3.5)}
            )
        }
    ),
    # bytes
    DataSource(inline_bytes=b"\x00\xffbody"),
]


@pytest.mark.parametrize("message", FIELD_KINDS, ids=lambda m: type(m).__name__)
def test_same_bytes_for_each_field_kind(message: object) -> None:
    assert wire.encode(message) == bytes(message)  # type: ignore[call-overload]


def test_varint_matches_protobuf() -> None:
    assert wire.varint(0) == b"\x00"
    assert wire.varint(300) == b"\xac\x02"
    assert wire.varint(-1) == b"\xff" * 9 + b"\x01"


def test_shared_messages_encode_once_and_to_the_same_bytes() -> None:
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterCommonLbConfig
    from envoy_data_plane.envoy.type.v3 import Percent

    from pilotfish_xds import wire

    part = wire.shared(ClusterCommonLbConfig(healthy_panic_threshold=Percent(value=0.0)))
    fresh = ClusterCommonLbConfig(healthy_panic_threshold=Percent(value=0.0))
    assert wire.encode(part) == bytes(fresh)
    assert wire.encode(part) is wire.encode(part)  # computed once
    parent = Cluster(name="a", common_lb_config=part)
    assert wire.encode(parent) == bytes(Cluster(name="a", common_lb_config=fresh))
