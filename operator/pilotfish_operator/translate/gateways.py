"""Gateways: which pods are gateway proxies (label `pilotfish.io/proxy: gateway`), which
Gateways select them (their `selector` matches the pod's labels, in any namespace, as
Istio by default), and per server port the virtual hosts the VirtualServices bound to
those Gateways (their `gateways`) give it.

A server host `ns/name` admits VirtualServices of namespace `ns` (`*`: any, `.`: the
Gateway's own); its name and the VirtualService's host meet at the more specific of
the two (`*.example.com` and `shop.example.com` → `shop.example.com`). VirtualServices
naming the same host on one port are merged, oldest first (Envoy refuses a domain twice
in a route table), and the merge is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pilotfish_xds import ir

from ..api import Gateway, Pod, VirtualService
from ..injection import GATEWAY_LABEL
from .precedence import age
from .routes import gateway_name

RoutesFor = Callable[[VirtualService, int, str], tuple[ir.Route, ...]]
"""(VirtualService, port, gateway `ns/name`) → its routes there."""


def is_gateway(pod: Pod) -> bool:
    return pod.metadata.labels.get(GATEWAY_LABEL) == "gateway"


def _meet(server: str, host: str) -> str | None:
    """Where a server host name and a VirtualService host overlap (None: nowhere)."""
    if server == "*" or server == host:
        return host
    if host == "*":
        return server
    if server.startswith("*.") and host.endswith(server[1:]):
        return host
    if host.startswith("*.") and server.endswith(host[1:]):
        return server
    return None


def _admits(prefix: str, vs_namespace: str, gateway_namespace: str) -> bool:
    if prefix in ("", "*"):
        return True
    if prefix == ".":
        return vs_namespace == gateway_namespace
    return prefix == vs_namespace


def servers(
    pod: Pod,
    gateways: Iterable[Gateway],
    virtual_services: Iterable[VirtualService],
    routes_for: RoutesFor,
    warnings: list[str],
) -> tuple[ir.GatewayServer, ...]:
    """The ports `pod` serves, with their virtual hosts."""
    labels = pod.metadata.labels
    vss = sorted(virtual_services, key=age)
    ports: dict[int, tuple[str, dict[str, list[tuple[VirtualService, str]]]]] = {}
    redirect: set[tuple[int, str]] = set()
    for g in sorted(gateways, key=age):
        selector = g.spec.selector
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        name = f"{g.namespace}/{g.name}"
        bound = [
            vs for vs in vss if name in {gateway_name(x, vs.namespace) for x in vs.spec.gateways}
        ]
        for server in g.spec.servers:
            port, protocol = server.port.number, server.port.protocol.upper()
            known = ports.setdefault(port, (protocol, {}))
            if known[0] != protocol:
                warnings.append(
                    f"Gateway {name}: port {port} is {known[0]} in an older Gateway; "
                    f"its {protocol} server there is ignored"
                )
                continue
            for vs in bound:
                for host in vs.spec.hosts:
                    for server_host in server.hosts:
                        prefix, _, dns = server_host.rpartition("/")
                        if not _admits(prefix, vs.namespace, g.namespace):
                            continue
                        domain = _meet(dns, host)
                        if domain is not None:
                            if server.tls is not None and server.tls.https_redirect:
                                redirect.add((port, domain))
                            users = known[1].setdefault(domain, [])
                            if all(v is not vs for v, _ in users):
                                users.append((vs, name))
                            break
    out = []
    for port, (protocol, domains) in sorted(ports.items()):
        hosts = []
        for domain, users in sorted(domains.items()):
            if len(users) > 1:
                warnings.append(
                    f"Gateway port {port}, host {domain}: VirtualServices "
                    + ", ".join(f"{vs.namespace}/{vs.name}" for vs, _ in users)
                    + " all route it; their routes are merged, oldest first"
                )
            routes = tuple(r for vs, gw in users for r in routes_for(vs, port, gw))
            names = (domain,) if domain == "*" else (domain, f"{domain}:{port}")
            hosts.append(
                ir.GatewayHost(f"{domain}:{port}", names, routes, (port, domain) in redirect)
            )
        out.append(ir.GatewayServer(port, protocol, tuple(hosts)))
    return tuple(out)
