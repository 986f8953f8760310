"""How a cluster finds its endpoints when the control plane does not send them (EDS):
ServiceEntry resolutions, as Istio builds them.

- `original_dst` (NONE, and DestinationRule PASSTHROUGH): the connection goes where the
  client sent it. Local mode has no original destination address, so there the
  `x-envoy-original-dst-host` header names it.
- `strict_dns` (DNS): every address each endpoint's name resolves to is an endpoint,
  re-resolved as the records' TTLs say.
- `logical_dns` (DNS_ROUND_ROBIN): one connection target at a time, the first address
  the name resolves to (for large DNS pools behind one name).

Names are resolved by the sidecar with the system resolver (Envoy's c-ares: /etc/hosts,
then DNS), IPv4 only as Istio does without dual stack.
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment

from .. import ir

_DNS = {
    "strict_dns": cluster.ClusterDiscoveryType.STRICT_DNS,
    "logical_dns": cluster.ClusterDiscoveryType.LOGICAL_DNS,
}
DNS_REFRESH = timedelta(seconds=60)
"""Istio's default dnsRefreshRate; with respect_dns_ttl a record's own TTL wins."""


def original_dst(out: cluster.Cluster, local: bool) -> None:
    out.type = cluster.ClusterDiscoveryType.ORIGINAL_DST
    out.lb_policy = cluster.ClusterLbPolicy.CLUSTER_PROVIDED
    if local:
        out.original_dst_lb_config = cluster.ClusterOriginalDstLbConfig(use_http_header=True)


def dns(out: cluster.Cluster, c: ir.Cluster, assignment: bytes) -> None:
    """`assignment`: the encoded endpoints (names or addresses), given inline."""
    out.type = _DNS[c.discovery]
    out.dns_lookup_family = cluster.ClusterDnsLookupFamily.V4_ONLY
    out.dns_refresh_rate = DNS_REFRESH
    out.respect_dns_ttl = True
    out.load_assignment = ClusterLoadAssignment.parse(assignment)
