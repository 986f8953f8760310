"""Why local mode says a sidecar has not converged: one reason per proxy, from what the
xDS server sent it and what it answered."""

from __future__ import annotations

from pathlib import Path

from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.listener.v3 import Listener

from pilotfish_operator.local.runner import LocalMesh
from pilotfish_xds import ir
from pilotfish_xds.codec import encode
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.types import CLUSTER, LISTENER

PROXY = ir.Proxy(id="web.shop", name="web", namespace="shop", ip="127.0.0.5")


def _mesh(tmp_path: Path) -> LocalMesh:
    mesh = LocalMesh(tmp_path, envoy="/bin/false")
    mesh.pipeline.mesh = ir.Mesh(proxies=(PROXY,))
    mesh.pipeline.built_generation = mesh.store.generation
    return mesh


SNAPSHOT = Snapshot(
    {CLUSTER: [encode("c", Cluster(name="c"))], LISTENER: [encode("l", Listener(name="l"))]}
)


def test_not_connected(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path)
    assert mesh.unconverged() == {"web.shop": "not connected to the xDS server"}
    assert not mesh.in_sync()


def test_waiting_for_acks_then_rejected_then_in_sync(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path)
    mesh.cache.set(PROXY.id, SNAPSHOT)
    mesh.status.stream_opened(PROXY.id, "sotw", "ipv4:127.0.0.1:1")
    assert mesh.unconverged() == {"web.shop": "has not acknowledged its Cluster, Listener config"}

    cds, lds = SNAPSHOT.version(CLUSTER), SNAPSHOT.version(LISTENER)
    mesh.status.sent(PROXY.id, CLUSTER, cds, "n1")
    mesh.status.acked(PROXY.id, CLUSTER, cds)
    mesh.status.sent(PROXY.id, LISTENER, lds, "n2")
    mesh.status.nacked(PROXY.id, LISTENER, lds, "route: unknown cluster 'x'")
    assert mesh.unconverged() == {
        "web.shop": "rejected its Listener config: route: unknown cluster 'x'"
    }

    mesh.status.acked(PROXY.id, LISTENER, lds)  # accepted when offered again
    assert mesh.unconverged() == {}
    assert mesh.in_sync()
