"""A gateway: an Envoy of its own at the mesh's edge. Each HTTP server port is a
listener (on the pod's address in local mode, every address in a cluster) whose
connection manager routes by Host with the routes the bound VirtualServices give
(RDS `http.<port>`); a host no server names gets 404. Its clusters are every mesh
service's, as a sidecar's; it tells the destination's sidecar who it is (peer headers),
so the standard metrics show the gateway as the source."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import TrafficDirection
from envoy_data_plane.envoy.config.listener.v3 import FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import VirtualHost, VirtualHostTlsRequirementType

from ... import ir, types
from ...codec import EncodeCache
from ...snapshot import Snapshot
from .. import mtls, observe, routes
from ..clusters import socket_address
from ..hcm import http_connection_manager
from ..listeners import ANY_ADDRESS
from ..resources import Resources, outbound_clusters, route_configuration

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
_CLIENT = ir.Telemetry().client


def route_name(port: int) -> str:
    return f"http.{port}"


def translate(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, secrets: mtls.WorkloadSecrets | None
) -> Snapshot:
    out = Resources()
    out.add_secrets(secrets, cache)
    local = proxy.capture == "local"
    address = proxy.ip if local else ANY_ADDRESS
    for server in proxy.servers:
        if server.protocol not in HTTP_PROTOCOLS:
            continue  # HTTPS, TLS and TCP servers: later steps of issue 10
        name = route_name(server.port)
        parts = [cache.build(f"{name}|{h.name}", gateway_host, h).body for h in server.hosts]
        out.add(types.ROUTE, route_configuration(name, parts))
        out.add(
            types.LISTENER,
            cache.build(
                f"gateway|{server.port}",
                http_listener,
                address,
                server.port,
                proxy.telemetry.client,
            ),
        )
    outbound_clusters(mesh, proxy, cache, out, local=local)
    return out.snapshot()


def gateway_host(host: ir.GatewayHost) -> VirtualHost:
    """With `https_redirect`, Envoy answers every plaintext request with a 301 to https."""
    vhost = routes.virtual_host(host.name, host.domains, host.routes, outbound=True)
    if host.https_redirect:
        vhost.require_tls = VirtualHostTlsRequirementType.ALL
    return vhost


def http_listener(address: str, port: int, t: ir.SideTelemetry = _CLIENT) -> Listener:
    logs, trace = observe.http(t, outbound=True)
    name = f"{address}_{port}"
    hcm = http_connection_manager(name, rds=route_name(port), access_log=logs, tracing=trace)
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[FilterChain(filters=[hcm])],
    )
