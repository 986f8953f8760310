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
from dataclasses import dataclass, field
from typing import Literal, cast

from pilotfish_xds import ir

from ..api import Gateway, Pod, Server, VirtualService
from ..injection import GATEWAY_LABEL
from ..security.credentials import GATEWAY_API_PREFIX, sds_name
from .precedence import age
from .routes import gateway_name

RoutesFor = Callable[[VirtualService, int, str], tuple[ir.Route, ...]]
"""(VirtualService, port, gateway `ns/name`) → its routes there."""
L4RoutesFor = Callable[[VirtualService, int, str, ir.Proxying], tuple[ir.L4Route, ...]]
"""(VirtualService, port, gateway `ns/name`, tcp or tls) → its routes of that kind there."""
SYNTHETIC = "~"
"""In the names of Gateways and VirtualServices made up from the Gateway API's objects
(not valid in Kubernetes names: never a real object's)."""


def is_synthetic(gateway: Gateway) -> bool:
    return SYNTHETIC in gateway.name


def is_gateway(pod: Pod) -> bool:
    return pod.metadata.labels.get(GATEWAY_LABEL) == "gateway"


def selecting(gateways: Iterable[Gateway], pod: Pod) -> list[Gateway]:
    """The Gateways whose selector matches the pod's labels, oldest first."""
    labels = pod.metadata.labels
    return [
        g
        for g in sorted(gateways, key=age)
        if g.spec.selector and all(labels.get(k) == v for k, v in g.spec.selector.items())
    ]


def meet(server: str, host: str) -> str | None:
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


CredentialCheck = Callable[[str, str, bool], str | None]
"""(namespace, credentialName, mutual) → why it cannot be served, or None."""
_TERMINATED = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL")


@dataclass
class _Group:
    """What becomes one ir.GatewayServer: the plaintext servers of a port, or one
    TLS-terminating server."""

    protocol: str
    tls: ir.ServerTls | None = None
    domains: dict[str, list[tuple[VirtualService, str]]] = field(default_factory=dict)
    redirect: set[str] = field(default_factory=set)
    l4: list[ir.L4Route] = field(default_factory=list)
    auto: list[str] = field(default_factory=list)


def _tls(
    server: Server, gateway: Gateway, namespace: str, credential: CredentialCheck
) -> ir.ServerTls | str:
    """A terminating server's TLS, or why it cannot be served."""
    tls = server.tls
    assert tls is not None
    if tls.mode not in _TERMINATED:
        return f"tls mode {tls.mode} is not served yet"
    if tls.credential_name.startswith(GATEWAY_API_PREFIX) and not is_synthetic(gateway):
        return f"credentialName {GATEWAY_API_PREFIX}… is for Gateway API certificateRefs only"
    names = {host.rpartition("/")[2] for host in server.hosts}
    sni = () if "*" in names else tuple(sorted(names))
    files = ("", "", "")
    extra: tuple[tuple[str, str], ...] = ()
    if tls.mode == "ISTIO_MUTUAL":
        # Mesh clients send the SNI of the gateway's own service, not the server's
        # hosts: the chain takes any name, the hosts apply to the Host header.
        sni = ()
    elif tls.credential_name:
        why = credential(namespace, tls.credential_name, tls.mode != "SIMPLE")
        if why is not None:
            return why
    elif tls.credential_names:
        return "credentialNames is not served yet (use credentialName)"
    elif tls.tls_certificates:
        first, *more = tls.tls_certificates
        ca = tls.ca_certificates or first.ca_certificates
        files = (first.server_certificate, first.private_key, ca)
        extra = tuple((c.server_certificate, c.private_key) for c in more)
    else:
        files = (tls.server_certificate, tls.private_key, tls.ca_certificates)
    if tls.ca_cert_credential_name:
        return "caCertCredentialName is not served yet (put ca.crt in credentialName's Secret)"
    mode = cast(Literal["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"], tls.mode)
    return ir.ServerTls(
        mode,
        sds_name(tls.credential_name) if tls.credential_name else "",
        sni=sni,
        files=files,
        min_version=tls.min_protocol_version if tls.min_protocol_version != "TLS_AUTO" else "",
        max_version=tls.max_protocol_version if tls.max_protocol_version != "TLS_AUTO" else "",
        cipher_suites=tls.cipher_suites,
        subject_alt_names=tls.subject_alt_names,
        more_certificates=extra,
        accept_untrusted=bool(tls.insecure_skip_verify),
    )


def servers(
    pod: Pod,
    gateways: Iterable[Gateway],
    virtual_services: Iterable[VirtualService],
    routes_for: RoutesFor,
    credential: CredentialCheck,
    warnings: list[str],
    l4_routes_for: L4RoutesFor | None = None,
) -> tuple[ir.GatewayServer, ...]:
    """The ports `pod` serves, with their virtual hosts. TLS certificates come from
    Secrets of the pod's own namespace."""
    vss = sorted(virtual_services, key=age)
    groups: dict[tuple[int, str], _Group] = {}
    protocols: dict[int, str] = {}
    for g in selecting(gateways, pod):
        name = f"{g.namespace}/{g.name}"
        bound = [
            vs for vs in vss if name in {gateway_name(x, vs.namespace) for x in vs.spec.gateways}
        ]
        for i, server in enumerate(g.spec.servers):
            port, protocol = server.port.number, server.port.protocol.upper()
            where = f"Gateway {name}: spec.servers[{i}]"
            if protocols.setdefault(port, protocol) != protocol:
                warnings.append(
                    f"{where}: port {port} is {protocols[port]} in an older Gateway; "
                    f"this {protocol} server is ignored"
                )
                continue
            if protocol == "TLS":
                mode = server.tls.mode if server.tls is not None else "PASSTHROUGH"
                # Terminated here (one chain, any SNI; SIMPLE/MUTUAL, or mesh mTLS): it
                # cannot share a port with servers picked by SNI.
                terminated = mode in _TERMINATED
                mine, other = ("terminated", "tls") if terminated else ("tls", "terminated")
                if (port, f"{other}.{port}") in groups:
                    warnings.append(
                        f"{where}.tls: port {port} already has a TLS server of another "
                        f"kind; a terminating TLS server needs a port of its own; ignored"
                    )
                    continue
                if terminated and l4_routes_for is not None:
                    tls = _tls(server, g, pod.metadata.namespace or "", credential)
                    if isinstance(tls, str):
                        warnings.append(f"{where}.tls: {tls}; the server is not served")
                        continue
                    group = groups.setdefault((port, f"{mine}.{port}"), _Group(protocol, tls))
                    if group.tls != tls:
                        warnings.append(
                            f"{where}.tls: port {port} already terminates TLS with another "
                            f"certificate; ignored"
                        )
                        continue
                    # Decrypted, the bytes go on as a TCP server's (the first tcp route).
                    for vs in bound:
                        for r in l4_routes_for(vs, port, name, "tcp"):
                            if r not in group.l4:
                                group.l4.append(r)
                    continue
                if mode == "AUTO_PASSTHROUGH":
                    group = groups.setdefault((port, f"tls.{port}"), _Group(protocol))
                    group.auto.extend(h.rpartition("/")[2] for h in server.hosts)
                    continue
                if mode != "PASSTHROUGH" or l4_routes_for is None:
                    warnings.append(f"{where}.tls: mode {mode} on TLS is not served yet")
                    continue
                group = groups.setdefault((port, f"tls.{port}"), _Group(protocol))
                served_names = {h.rpartition("/")[2] for h in server.hosts}
                for vs in bound:
                    for r in l4_routes_for(vs, port, name, "tls"):
                        sni = r.match.sni_hosts
                        wanted = any(meet(n, s) for n in served_names for s in sni)
                        if wanted and r not in group.l4:
                            group.l4.append(r)
                continue
            if protocol in ("TCP", "MONGO", "MYSQL", "REDIS"):
                if l4_routes_for is None:
                    continue
                # Istio binds TCP servers' routes by the VirtualService alone (no Host).
                group = groups.setdefault((port, f"tcp.{port}"), _Group(protocol))
                for vs in bound:
                    for r in l4_routes_for(vs, port, name, "tcp"):
                        if r not in group.l4:
                            group.l4.append(r)
                continue
            terminated = protocol == "HTTPS"
            if terminated:
                tls = _tls(server, g, pod.metadata.namespace or "", credential)
                if isinstance(tls, str):
                    warnings.append(f"{where}.tls: {tls}; the server is not served")
                    continue
                clash = next(
                    (
                        k
                        for k, grp in groups.items()
                        if k[0] == port and grp.tls and grp.tls.sni == tls.sni
                    ),
                    None,
                )
                if clash is not None:
                    warnings.append(
                        f"{where}: port {port} already serves these hosts over TLS "
                        f"({clash[1]}); ignored"
                    )
                    continue
                key = (port, f"https.{port}.{g.namespace}.{g.name}.{i}")
                group = groups[key] = _Group(protocol, tls)
            else:
                group = groups.setdefault((port, f"http.{port}"), _Group(protocol))
            for vs in bound:
                for host in vs.spec.hosts:
                    for server_host in server.hosts:
                        prefix, _, dns = server_host.rpartition("/")
                        if not _admits(prefix, vs.namespace, g.namespace):
                            continue
                        domain = meet(dns, host)
                        if domain is not None:
                            if server.tls is not None and server.tls.https_redirect:
                                group.redirect.add(domain)
                            users = group.domains.setdefault(domain, [])
                            if all(v is not vs for v, _ in users):
                                users.append((vs, name))
                            break
    out = []
    for (port, route_table), group in sorted(groups.items()):
        hosts = []
        for domain, users in sorted(group.domains.items()):
            if len(users) > 1:
                warnings.append(
                    f"Gateway port {port}, host {domain}: VirtualServices "
                    + ", ".join(f"{vs.namespace}/{vs.name}" for vs, _ in users)
                    + " all route it; their routes are merged, oldest first"
                )
            routes = tuple(r for vs, gw in users for r in routes_for(vs, port, gw))
            names = (domain,) if domain == "*" else (domain, f"{domain}:{port}")
            hosts.append(
                ir.GatewayHost(f"{domain}:{port}", names, routes, domain in group.redirect)
            )
        out.append(
            ir.GatewayServer(
                port,
                group.protocol,
                tuple(hosts),
                group.tls,
                route_table,
                tuple(group.l4),
                tuple(sorted(set(group.auto))),
            )
        )
    return tuple(out)
