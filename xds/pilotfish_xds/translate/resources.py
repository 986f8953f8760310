"""What every sidecar layout shares: outbound clusters with their endpoints, the app's
inbound clusters, route tables assembled from per-virtual-host bytes, and the route
that hands a request to the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from .. import ir, types, wire
from ..codec import EncodeCache, Encoded
from ..snapshot import Part, Snapshot
from . import clusters, jwt, mtls, sidecar_ingress, view
from .scoping import Catalogue

_VIRTUAL_HOSTS_FIELD = 2  # RouteConfiguration.virtual_hosts
_NOT_LISTED = (types.SECRET, types.VIRTUAL_HOST)  # added when present (on demand: VHDS)


@dataclass
class Resources:
    """A proxy's resources as a layout collects them, then frozen into a Snapshot."""

    by_type: dict[str, list[Encoded]] = field(
        default_factory=lambda: {t: [] for t in types.PUSH_ORDER if t not in _NOT_LISTED}
    )
    mesh_tls: bool = False
    """The proxy holds a workload certificate (`add_secrets`): mesh mTLS is on."""
    eds_names: set[str] = field(default_factory=set)
    route_names: set[str] = field(default_factory=set)
    scope: Catalogue | None = None
    """A scoped proxy (`ir.Proxy.on_demand`): what it fetches on demand goes here."""

    def add(self, type_url: str, resource: Encoded) -> None:
        self.by_type[type_url].append(resource)
        if type_url == types.ROUTE:
            self.route_names.add(resource.name)

    def add_secrets(self, secrets: mtls.WorkloadSecrets | None, cache: EncodeCache) -> None:
        if secrets is None:
            return
        self.mesh_tls = True
        self.by_type[types.SECRET] = [
            cache.build(mtls.CERTIFICATE, mtls.certificate_secret, secrets),
            cache.build(mtls.ROOTS, mtls.roots_secret, secrets.roots_pem),
        ]
        for c in secrets.credentials:
            found = self.by_type[types.SECRET]
            found.append(cache.build(c.name, mtls.credential_secret, c))
            if c.ca_pem:
                found.append(cache.build(f"{c.name}-cacert", mtls.credential_ca_secret, c))

    def _references(self) -> dict[str, frozenset[str]]:
        return {
            types.ENDPOINT: frozenset(self.eds_names),
            types.ROUTE: frozenset(self.route_names),
        }

    def part(self) -> Part:
        """Frozen for several proxies to share (`outbound.shared`)."""
        on_demand = self.scope.freeze() if self.scope is not None else None
        return Part(self.by_type, self._references(), on_demand)

    def snapshot(self, shared: Part | None = None) -> Snapshot:
        """The proxy's snapshot: these resources plus the `shared` part."""
        on_demand = self.scope.freeze() if self.scope is not None else None
        return Snapshot(self.by_type, self._references(), on_demand, shared)


def route_configuration(name: str, parts: list[bytes]) -> Encoded:
    """A RouteConfiguration from encoded virtual hosts (repeated fields concatenate), so
    one VirtualService edit re-encodes one virtual host, not ten thousand."""
    head = wire.encode(RouteConfiguration(name=name))
    body = head + b"".join(wire.length_delimited(_VIRTUAL_HOSTS_FIELD, p) for p in parts)
    return Encoded(name, body)


def outbound_clusters(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, out: Resources, local: bool
) -> None:
    """Every cluster the proxy may call, and the endpoints of each EDS one."""
    for c in view.visible_clusters(mesh, proxy):
        # The cluster's hash is cached; endpoint churn re-encodes it, cheaply.
        built = cache.build(c.name, clusters.outbound_cluster, c, local, out.mesh_tls)
        if out.scope is not None and out.scope.on_demand(c):
            out.scope.add_cluster(c, built)
        else:
            out.add(types.CLUSTER, built)
        if c.policy.lb.policy != "PASSTHROUGH" and c.discovery == "eds":
            out.eds_names.add(c.name)
            # With locality load balancing the endpoints depend on where the client is:
            # shared by the proxies of one locality rather than by all.
            lb = c.policy.locality
            client = proxy.locality if lb is not None else None
            values = tuple(
                ir.label_value(proxy.labels, proxy.locality, key)
                for key in (lb.failover_priority if lb is not None else ())
            )
            out.add(types.ENDPOINT, cache.build(c.name, _endpoints, c, client, values))


def _endpoints(c: ir.Cluster, client: ir.Locality | None, values: tuple[str, ...]) -> bytes:
    """Keyed by the cluster, whose hash is cached, rather than by its endpoints, whose
    hash would be recomputed for every cluster of every view on every push."""
    return clusters.load_assignment(c.name, c.endpoints, c.policy.locality, client, values)


def inbound_clusters(proxy: ir.Proxy, ports: list[int], cache: EncodeCache, out: Resources) -> None:
    """The app's ports. The sidecar sends to the pod's own address, and its uid is
    exempt from capture, so these connections are not redirected again."""
    http2 = {i.target_port for i in proxy.inbound if i.protocol in ir.HTTP2_PROTOCOLS}
    http2 |= {i.port for i in proxy.ingress if i.protocol.lower() in ir.HTTP2_PROTOCOLS}
    for port in ports:
        name = ir.inbound_cluster_name(port)
        if proxy.ingress or proxy.inbound_pool is not None:  # a Sidecar's ingress settings
            where, pool = sidecar_ingress.target(proxy, port)
            built = cache.build(
                name, sidecar_ingress.inbound_cluster, where, port, port in http2, pool
            )
        else:
            built = cache.build(name, clusters.inbound_cluster, proxy.ip, port, port in http2)
        out.add(types.CLUSTER, built)


def to_app(
    port: int,
    header: tuple[str, str] | None = None,
    peer_tls: bool | None = None,
    service: tuple[str, ...] = (),
) -> ir.Route:
    """A route to the app's `port`; with `header` (name, value) only requests carrying it;
    with `peer_tls` only requests over mutual TLS (True) or without it (False).
    `service`: the service it serves (hostname, name, namespace), for metrics."""
    cluster = ir.inbound_cluster_name(port)
    headers: tuple[ir.HeaderMatch, ...] = ()
    if header is not None:
        name, value = header
        headers = (ir.HeaderMatch(name, ir.StringMatch("exact", value)),)
    match = ir.RouteMatch(headers=headers, peer_tls=peer_tls)
    return ir.Route(
        name=f"{cluster}{header[1] if header else ''}",
        match=match,
        action=ir.Forward((ir.WeightedCluster(cluster, 100),)),
        service=service,
    )


def jwks_clusters(proxy: ir.Proxy, cache: EncodeCache, out: Resources) -> None:
    """The JWKS servers the workload's RequestAuthentication rules fetch keys from."""
    for uri in jwt.jwks_uris(proxy.jwt):
        out.add(types.CLUSTER, cache.build(jwt.jwks_cluster_name(uri), jwt.jwks_cluster, uri))
