"""Real Envoy is never sent a listener naming clusters it has not acknowledged, so it
never rejects one however slow it or the control plane is (issue 6).

Tens of Envoys starting at once made the control plane slow to answer: an Envoy's
initial cluster fetch timed out (15 s by default), it asked for listeners, and its
listener request was answered before the clusters it had asked for first, because
the snapshot had arrived but the stream's wake-up had not run yet. Envoy rejected the
listener ("route: unknown cluster") and, before the fix, nothing was sent again.
Here Envoy's initial-fetch timeout is 1 s and the race window is held open on purpose.
The listener keeps Envoy's cluster check on, so only ordering protects it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from adsclient import Running, running
from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    HealthCheck,
    HealthCheckHttpHealthCheck,
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Any
from envoyconfig import NODE, bootstrap, free_port
from test_envoy import ENVOY, http_get, poll

from pilotfish_operator.local.echo import make_handler
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import encode
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.types import CLUSTER, LISTENER

pytestmark = pytest.mark.envoy


def _address(port: int) -> Address:
    return Address(socket_address=SocketAddress(address="127.0.0.1", port_value=port))


def _endpoints(name: str, port: int) -> ClusterLoadAssignment:
    return ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            LocalityLbEndpoints(
                lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=_address(port)))]
            )
        ],
    )


def _config(listen: int, backend: int, silent: int | None = None) -> Snapshot:
    """A listener routing /slow to "slow" (when `silent` is given: a cluster whose
    active health check against a silent backend keeps it warming for seconds) and
    everything else to "app"."""
    second = datetime.timedelta(seconds=1)
    app = Cluster(
        name="app",
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=second,
        load_assignment=_endpoints("app", backend),
    )
    slow = Cluster(
        name="slow",
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=second,
        load_assignment=_endpoints("slow", silent or backend),
        health_checks=[]
        if silent is None
        else [
            HealthCheck(
                timeout=3 * second,
                interval=10 * second,
                unhealthy_threshold=1,
                healthy_threshold=1,
                http_health_check=HealthCheckHttpHealthCheck(path="/"),
            )
        ],
    )
    routes = [
        Route(match=RouteMatch(prefix="/slow"), route=RouteAction(cluster="slow")),
        Route(match=RouteMatch(prefix="/"), route=RouteAction(cluster="app")),
    ]
    hcm = HttpConnectionManager(
        stat_prefix="inbound",
        route_config=RouteConfiguration(
            name="inbound", virtual_hosts=[VirtualHost(name="app", domains=["*"], routes=routes)]
        ),
        http_filters=[
            HttpFilter(name="envoy.filters.http.router", typed_config=Any.pack(Router()))
        ],
    )
    listener = Listener(
        name="inbound",
        address=_address(listen),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=Any.pack(hcm),
                    )
                ]
            )
        ],
    )
    return Snapshot(
        {
            CLUSTER: [encode("app", app), encode("slow", slow)],
            LISTENER: [encode("inbound", listener)],
        }
    )


@pytest.fixture
def silent() -> Iterator[int]:
    """A backend that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def backend() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler("app", 0.0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


class LateWakeCache(SnapshotCache):
    """Holds a stream's wake-up back: a snapshot set with `set_quietly` is visible to the
    requests the stream handles, but the stream is not told, as happens on a loaded
    control plane between the snapshot landing and the stream's wake-up running."""

    def set_quietly(self, node_id: str, snapshot: Snapshot) -> None:
        watchers = self._watchers.pop(node_id, set())
        try:
            self.set(node_id, snapshot)
        finally:
            self._watchers[node_id] = watchers


@pytest.fixture
async def late_xds() -> AsyncIterator[Running]:
    async with running(LateWakeCache()) as server:
        yield server


@contextlib.contextmanager
def envoy(xds: Running, tmp_path: Path, api_type: str) -> Iterator[Path]:
    """Envoy with a 1 s initial-fetch timeout; yields its log."""
    config = json.loads(bootstrap(int(xds.address.rsplit(":", 1)[1]), free_port(), api_type))
    for source in ("cds_config", "lds_config"):
        config["dynamic_resources"][source]["initial_fetch_timeout"] = "1s"
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    log = tmp_path / "envoy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ENVOY), "--use-dynamic-base-id", "-c", str(path), "-l", "info"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_listener_request_racing_the_first_snapshot(
    late_xds: Running, backend: int, tmp_path: Path, api_type: str
) -> None:
    xds = late_xds
    assert isinstance(xds.cache, LateWakeCache)
    listen = free_port()
    config = _config(listen, backend)
    with envoy(xds, tmp_path, api_type) as log:
        node = xds.status.node(NODE)
        await poll(lambda: bool(node.streams), within=30)  # clusters asked for: none yet
        xds.cache.set_quietly(NODE, config)
        # Envoy gives up waiting for clusters after 1 s and asks for listeners.
        await poll(lambda: "initial fetch timed out" in log.read_text(), within=30)
        await asyncio.sleep(1.0)
        assert xds.status.nacks_total == 0, log.read_text()[-2000:]
        assert node.type(LISTENER).sent_version == ""  # held back behind the clusters

        xds.cache.set(NODE, _config(listen, backend))  # the wake-up finally runs
        await poll(lambda: node.type(LISTENER).acked_version == config.version(LISTENER))
        answer = json.loads(await http_get(listen, "/hello"))
        assert answer["path"] == "/hello"
        assert xds.status.nacks_total == 0, log.read_text()[-2000:]


@pytest.mark.timeout(90)
async def test_listener_waits_while_its_clusters_warm(
    xds: Running, backend: int, silent: int, tmp_path: Path
) -> None:
    """Clusters sent after Envoy's initial fetch warm before they take traffic: a
    listener is not sent until Envoy has acknowledged them (a route to a warming
    cluster would answer 503)."""
    listen = free_port()
    with envoy(xds, tmp_path, "GRPC") as log:
        node = xds.status.node(NODE)
        await poll(lambda: "initial fetch timed out" in log.read_text(), within=30)
        config = _config(listen, backend, silent)
        xds.cache.set(NODE, config)
        await asyncio.sleep(1.5)  # the health check of "slow" has not timed out yet
        assert node.type(LISTENER).sent_version == ""  # held back

        await poll(lambda: node.type(LISTENER).acked_version == config.version(LISTENER))
        assert node.types[CLUSTER].acked_version == config.version(CLUSTER)
        answer = json.loads(await http_get(listen, "/hello"))
        assert answer["path"] == "/hello"
        assert xds.status.nacks_total == 0, log.read_text()[-2000:]
