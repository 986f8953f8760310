"""Mesh config extension providers name a service (`name.namespace[.svc.<domain>]`,
optionally `namespace/` first) and a port; a proxy reaches it through the service's
outbound cluster, which every proxy has."""

from __future__ import annotations

from collections.abc import Mapping

from pilotfish_xds import ir

from ..api import Service


def collector(
    provider: str,
    service: str,
    port: int,
    services: Mapping[tuple[str, str], Service],
    cluster_domain: str,
) -> ir.Collector | str:
    """Where `provider` sends to, or why it cannot be reached."""
    host = service.split("/", 1)[-1]
    parts = host.split(".")
    found = services.get((parts[1], parts[0])) if len(parts) > 1 else None
    if found is None or (len(parts) > 2 and parts[2] != "svc"):
        return f"provider {provider!r}: service {service!r} is not in the mesh"
    if not any(p.port == port for p in found.spec.ports):
        return f"provider {provider!r}: service {service!r} has no port {port}"
    fqdn = f"{parts[0]}.{parts[1]}.svc.{cluster_domain}"
    return ir.Collector(ir.outbound_cluster_name(fqdn, port), f"{fqdn}:{port}")
