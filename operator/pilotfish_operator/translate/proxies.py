"""A pod's proxy (its inbound ports, identity, locality) and the node id it connects as."""

from __future__ import annotations

from pilotfish_xds import ir

from ..api import Pod
from .hosts import Names
from .services import ServiceInfo, identity_of, target_port, workload_of


def proxy(
    pod: Pod,
    services: tuple[ServiceInfo, ...],
    names: Names,
    local: bool,
    trust_domain: str,
    locality: ir.Locality | None,
    peer: ir.PeerAuth | None = None,
) -> ir.Proxy:
    labels = dict(pod.metadata.labels)
    inbound = []
    for svc in services:
        if not svc.selector or any(labels.get(k) != v for k, v in svc.selector.items()):
            continue
        for sp in svc.ports:
            port = target_port(pod, sp.target)
            if port is not None:
                inbound.append(
                    ir.Inbound(
                        svc.hostname,
                        () if svc.entry else names.aliases(svc.name, svc.namespace),
                        None if svc.entry else svc.name,
                        sp.port,
                        port,
                        sp.protocol,
                    )
                )
    return ir.Proxy(
        id=proxy_id(pod.namespace, pod.name),
        name=pod.name,
        namespace=pod.namespace,
        ip=pod.status.pod_ip or "",
        labels=ir.labels_of(labels),
        app_ports=tuple(p.container_port for c in pod.spec.containers for p in c.ports),
        inbound=tuple(inbound),
        capture="local" if local else "iptables",
        identity=identity_of(pod, trust_domain),
        locality=locality,
        peer_auth=peer or ir.PeerAuth(),
        workload=workload_of(pod, identity_of(pod, trust_domain)),
    )


def proxy_id(namespace: str, pod: str) -> str:
    """The Envoy node id of a pod's sidecar."""
    return f"{pod}.{namespace}"


def local_port_conflicts(vhosts: list[ir.VirtualHost], proxies: tuple[ir.Proxy, ...]) -> list[str]:
    """Local mode reaches a TCP or TLS service port P at the client pod's own
    address:P (no capture): say where that cannot work rather than fail silently."""
    out = []
    tcp: dict[int, list[str]] = {}
    l4_ports: dict[int, str] = {}
    for vh in vhosts:
        if vh.proxying == "tcp":
            tcp.setdefault(vh.port, []).append(vh.hostname)
        if vh.proxying != "http":
            l4_ports.setdefault(vh.port, vh.hostname)
    for port, hosts in sorted(tcp.items()):
        if len(hosts) > 1:
            out.append(
                f"TCP port {port} is served by {', '.join(hosts)}: in local mode a client "
                f"reaches a TCP service at its own address:{port}, so only {hosts[0]} is "
                "reachable there (a cluster tells them apart by their cluster IPs)"
            )
    for proxy in proxies:
        for port in sorted(set(proxy.app_ports) & l4_ports.keys()):
            if any(i.hostname == l4_ports[port] for i in proxy.inbound):
                continue  # the service's own pod: it serves the port, it need not call it
            out.append(
                f"Pod {proxy.namespace}/{proxy.name} listens on port {port} itself: in local "
                f"mode its sidecar cannot listen there for {l4_ports[port]}:{port}"
            )
    return out
