"""Gateway API objects → Istio Gateways and VirtualServices, with each reference's verdict.

Names of what is made up contain `~`, which Kubernetes names cannot: a made-up
Gateway `web~http` (listener `http` of Gateway `web`) or VirtualService
`shop-route~gateway` never collides with a real object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ...api import Gateway, Namespace, Pod, Service, VirtualService
from ...api.gateway_api import (
    CONTROLLER,
    GROUP,
    BackendObjectReference,
    GatewayClass,
    GRPCRoute,
    KubernetesGateway,
    KubernetesHTTPRoute,
    Listener,
    ParentReference,
    ReferenceGrant,
    TCPRoute,
    TLSRoute,
)
from ...api.gateway_api.routes import AnyRoute
from ...security.credentials import granted
from ...store import Key, Store
from ..gateways import SYNTHETIC, is_synthetic, meet
from ..hosts import Names
from ..precedence import age
from .deployment import GATEWAY_NAME_LABEL, addresses, ours
from .merge import Merger
from .rules import grpc_rules, http_rules, l4_route

Verdict = tuple[bool, str, str]
"""(status, reason, message) of one condition."""
OK: Verdict = (True, "Accepted", "")


@dataclass
class ParentVerdict:
    ref: ParentReference
    accepted: Verdict
    resolved: Verdict


@dataclass
class ListenerVerdict:
    listener: Listener
    attached: int = 0
    resolved: Verdict = (True, "ResolvedRefs", "")
    programmed: Verdict = (True, "Programmed", "")


@dataclass
class GatewayVerdict:
    accepted: Verdict
    programmed: Verdict
    listeners: list[ListenerVerdict]
    addresses: list[tuple[str, str]]
    """(type, value)"""


@dataclass
class Converted:
    gateways: list[Gateway] = field(default_factory=list)
    virtual_services: list[VirtualService] = field(default_factory=list)
    """Bound to the made-up Gateways."""
    mesh: list[VirtualService] = field(default_factory=list)
    """GAMMA: for sidecars, after Istio's own VirtualServices."""
    routes: dict[Key, tuple[int, list[ParentVerdict]]] = field(default_factory=dict)
    gateway_status: dict[Key, tuple[int, GatewayVerdict]] = field(default_factory=dict)
    classes: dict[Key, tuple[int, Verdict]] = field(default_factory=dict)


def selects(gateway: Gateway, pod: Pod) -> bool:
    """A made-up Gateway serves only pods of its own namespace (the Gateway API's rule);
    Istio's Gateways select pods in any namespace."""
    return not is_synthetic(gateway) or gateway.namespace == pod.namespace


def _generation(obj: Any) -> int:
    return int(obj.metadata.generation or 0)


def _listener_host(listener: Listener) -> str:
    return listener.hostname or "*"


def certificate_granted(
    gw: KubernetesGateway, namespace: str, name: str, grants: Iterable[ReferenceGrant]
) -> bool:
    """Whether a ReferenceGrant of `namespace` lets `gw` use its Secret `name`."""
    return any(
        g.namespace == namespace and g.permits(GROUP, "Gateway", gw.namespace, ("", "Secret", name))
        for g in grants
    )


def _credential(
    gw: KubernetesGateway, listener: Listener, grants: list[ReferenceGrant]
) -> str | Verdict:
    """A terminating listener's credentialName, or the verdict refusing its certificate."""
    assert listener.tls is not None
    ref = listener.tls.certificate_refs[0]
    if (ref.group, ref.kind) != ("", "Secret"):
        return (False, "InvalidCertificateRef", f"certificateRefs[0]: {ref.kind} is no Secret")
    if ref.namespace in (None, gw.namespace):
        return ref.name
    if not certificate_granted(gw, ref.namespace, ref.name, grants):
        why = f"certificateRefs[0]: no ReferenceGrant in {ref.namespace} allows it"
        return (False, "RefNotPermitted", why)
    return granted(ref.namespace, ref.name)


def _server(
    gw: KubernetesGateway, listener: Listener, grants: list[ReferenceGrant]
) -> dict[str, Any] | Verdict:
    """The Istio server of one listener, or the ResolvedRefs / Programmed verdict that
    keeps it from being served. A TLS listener in Terminate mode is Istio's TLS server in
    SIMPLE mode: its routes' bytes go on as TCP once decrypted."""
    port = {"number": listener.port, "name": listener.name, "protocol": listener.protocol}
    hosts = [f"*/{_listener_host(listener)}"]
    tls = listener.tls
    if listener.protocol in ("HTTPS", "TLS") and tls is not None and tls.mode == "Terminate":
        credential = _credential(gw, listener, grants)
        if isinstance(credential, tuple):
            return credential
        return {
            "port": port,
            "hosts": hosts,
            "tls": {"mode": "SIMPLE", "credentialName": credential},
        }
    if listener.protocol == "TLS":
        if tls is None:
            return (False, "Invalid", "a TLS listener needs tls")
        return {"port": port, "hosts": hosts, "tls": {"mode": "PASSTHROUGH"}}
    return {"port": port, "hosts": hosts}


class _Context:
    def __init__(self, store: Store, names: Names) -> None:
        self.names = names
        self.services = {
            (s.namespace, s.name): s for s in store.of_kind("Service") if isinstance(s, Service)
        }
        self.namespaces = {
            n.name: n for n in store.of_kind("Namespace") if isinstance(n, Namespace)
        }
        self.grants = [g for g in store.of_kind("ReferenceGrant") if isinstance(g, ReferenceGrant)]

    def backend(self, route: AnyRoute, ref: BackendObjectReference) -> str | Verdict:
        """The backend's host name, or the ResolvedRefs verdict that refuses it."""
        if not ref.is_service:
            return (
                False,
                "InvalidKind",
                f"backendRef {ref.name}: kind {ref.kind} is not supported",
            )
        namespace = ref.namespace or route.namespace
        if namespace != route.namespace and not any(
            g.namespace == namespace
            and g.permits(GROUP, route.KIND, route.namespace, ("", "Service", ref.name))
            for g in self.grants
        ):
            return (
                False,
                "RefNotPermitted",
                f"backendRef {namespace}/{ref.name}: no ReferenceGrant in {namespace} allows it",
            )
        svc = self.services.get((namespace, ref.name))
        if svc is None:
            return (False, "BackendNotFound", f"backendRef {namespace}/{ref.name}: no such Service")
        if ref.port is None:
            return (
                False,
                "UnsupportedValue",
                f"backendRef {namespace}/{ref.name}: port is required",
            )
        if all(p.port != ref.port for p in svc.spec.ports):
            return (
                False,
                "BackendNotFound",
                f"backendRef {namespace}/{ref.name}: the Service has no port {ref.port}",
            )
        return self.names.service(ref.name, namespace)

    def namespace_labels(self, name: str) -> dict[str, str]:
        ns = self.namespaces.get(name)
        return dict(ns.metadata.labels) if ns is not None else {"kubernetes.io/metadata.name": name}


def _admits(
    listener: Listener, route: AnyRoute, gw: KubernetesGateway, ctx: _Context
) -> str | None:
    """Why `listener` does not take `route` (None: it does)."""
    if route.KIND not in listener.route_kinds():
        return f"listener {listener.name} takes {', '.join(listener.route_kinds()) or 'no'} routes"
    where = listener.allowed_routes.namespaces
    if where.from_ == "Same" and route.namespace != gw.namespace:
        return f"listener {listener.name} takes routes of namespace {gw.namespace} only"
    if where.from_ == "Selector" and where.selector is not None:
        labels = ctx.namespace_labels(route.namespace)
        labels.setdefault("kubernetes.io/metadata.name", route.namespace)
        if not where.selector.matches(labels):
            return f"listener {listener.name} does not select namespace {route.namespace}"
    hostnames = getattr(route.spec, "hostnames", ())
    host = _listener_host(listener)
    if hostnames and not any(meet(host, h) is not None for h in hostnames):
        return f"listener {listener.name}: no hostname in common"
    return None


def _vs(route: AnyRoute, suffix: str, spec: dict[str, Any]) -> VirtualService:
    meta = route.metadata
    return VirtualService.model_validate(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": f"{route.name}{SYNTHETIC}{suffix}",
                "namespace": route.namespace,
                "creationTimestamp": meta.creation_timestamp,
            },
            "spec": spec,
        }
    )


def _route_spec(route: AnyRoute, ctx: _Context, port: int | None) -> tuple[dict[str, Any], Verdict]:
    """The VirtualService spec (without hosts and gateways) and the ResolvedRefs verdict.
    Its `http` routes come with their precedence keys (`rules.Keyed`)."""
    refused: list[Verdict] = []

    def backend(ref: BackendObjectReference) -> str | None:
        found = ctx.backend(route, ref)
        if isinstance(found, str):
            return found
        refused.append(found)
        return None

    if isinstance(route, KubernetesHTTPRoute):
        spec: dict[str, Any] = {"http": http_rules(route, backend, port)}
    elif isinstance(route, GRPCRoute):
        spec = {"http": grpc_rules(route, backend, port)}
    else:
        kind = "tls" if isinstance(route, TLSRoute) else "tcp"
        rules = [l4_route(rule.backend_refs, backend) for rule in route.spec.rules]
        if kind == "tls":
            snis = list(getattr(route.spec, "hostnames", ())) or ["*"]
            # `tls` (by SNI) at a Passthrough listener; `tcp` behind a Terminate one.
            spec = {
                "tls": [{"match": [{"sniHosts": snis}], **r} for r in rules if r],
                "tcp": [r for r in rules if r],
            }
        else:
            spec = {"tcp": [r for r in rules if r]}
    resolved = refused[0] if refused else (True, "ResolvedRefs", "")
    return spec, resolved


def convert(store: Store, names: Names, pods: Iterable[Pod] = ()) -> Converted:
    ctx = _Context(store, names)
    out = Converted()
    classes = {c.name: c for c in store.of_kind("GatewayClass") if isinstance(c, GatewayClass)}
    for key, cls in sorted((c.key, c) for c in classes.values()):
        if cls.spec.controller_name == CONTROLLER:
            out.classes[key] = (_generation(cls), (True, "Accepted", "handled by Pilotfish"))
    gws = {
        (g.namespace, g.name): g
        for g in sorted(store.of_kind("KubernetesGateway"), key=age)
        if isinstance(g, KubernetesGateway) and ours(g, classes)
    }
    serving = [p for p in pods if p.status.pod_ip]
    listeners: dict[tuple[str, str], list[ListenerVerdict]] = {}
    for (ns, name), gw in gws.items():
        verdicts = []
        servers = []
        for listener in gw.spec.listeners:
            lv = ListenerVerdict(listener)
            server = _server(gw, listener, ctx.grants)
            if isinstance(server, tuple):
                refs_ok, reason, why = server
                if not refs_ok:
                    lv.resolved = server
                lv.programmed = (False, reason if refs_ok else "Invalid", why)
            else:
                servers.append(server)
                out.gateways.append(
                    Gateway.model_validate(
                        {
                            "apiVersion": "networking.istio.io/v1",
                            "kind": "Gateway",
                            "metadata": {
                                "name": f"{name}{SYNTHETIC}{listener.name}",
                                "namespace": ns,
                                "creationTimestamp": gw.metadata.creation_timestamp,
                            },
                            "spec": {"selector": {GATEWAY_NAME_LABEL: name}, "servers": [server]},
                        }
                    )
                )
            verdicts.append(lv)
        listeners[(ns, name)] = verdicts
        mine = sorted(
            (
                p
                for p in serving
                if p.namespace == ns and p.metadata.labels.get(GATEWAY_NAME_LABEL) == name
            ),
            key=lambda p: p.status.pod_ip or "",
        )
        programmed: Verdict = (
            (True, "Programmed", f"served by {len(mine)} gateway pod(s)")
            if mine
            else (False, "NoResources", f"no ready pod labelled {GATEWAY_NAME_LABEL}={name}")
        )
        out.gateway_status[gw.key] = (
            _generation(gw),
            GatewayVerdict(
                (True, "Accepted", ""), programmed, verdicts, addresses(gw, ctx.services, mine)
            ),
        )

    kinds = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute")
    routes = [
        r
        for kind in kinds
        for r in store.of_kind(kind)
        if isinstance(r, KubernetesHTTPRoute | GRPCRoute | TLSRoute | TCPRoute)
    ]
    others = {
        (g.namespace, g.name)
        for g in store.of_kind("KubernetesGateway")
        if isinstance(g, KubernetesGateway)
    } - gws.keys()
    merger = Merger()
    for route in sorted(routes, key=age):
        parents: list[ParentVerdict] = []
        bound: list[tuple[str, str]] = []
        for ref in route.spec.parent_refs:
            ref_ns = ref.namespace or route.namespace
            if ref.is_service:
                verdict = _service_parent(route, ref, ctx)
                if verdict.accepted[0]:
                    spec, verdict.resolved = _route_spec(route, ctx, ref.port)
                    host = names.service(ref.name, ref_ns)
                    merger.for_service(route, spec["http"], host, ref_ns)
                parents.append(verdict)
            elif (ref_ns, ref.name) not in others:  # another controller's: not ours
                verdict, taken = _gateway_parent(route, ref, gws, listeners, ctx)
                for lv in taken:
                    lv.attached += 1
                    if lv.programmed[0]:
                        name = f"{ref_ns}/{ref.name}{SYNTHETIC}{lv.listener.name}"
                        bound.append((name, _listener_host(lv.listener)))
                parents.append(verdict)
        if bound:
            spec, resolved = _route_spec(route, ctx, None)
            hostnames = list(getattr(route.spec, "hostnames", ())) or ["*"]
            if "http" in spec:
                merger.at_gateway(route, spec["http"], bound, hostnames)
            else:
                spec["hosts"] = hostnames
                spec["gateways"] = sorted({name for name, _ in bound})
                out.virtual_services.append(_vs(route, "gateway", spec))
            for p in parents:
                if p.accepted[0] and not p.ref.is_service:
                    p.resolved = resolved
        if parents:
            out.routes[route.key] = (_generation(route), parents)
    gateway_vss, out.mesh = merger.virtual_services()
    out.virtual_services += gateway_vss
    return out


def _refused(ref: ParentReference, reason: str, message: str) -> ParentVerdict:
    return ParentVerdict(ref, (False, reason, message), (True, "ResolvedRefs", ""))


def _service_parent(route: AnyRoute, ref: ParentReference, ctx: _Context) -> ParentVerdict:
    """A GAMMA parent: a Service of the mesh."""
    ref_ns = ref.namespace or route.namespace
    if not isinstance(route, KubernetesHTTPRoute | GRPCRoute):
        return _refused(ref, "NotAllowedByParent", "only HTTP and gRPC routes take a Service")
    if (ref_ns, ref.name) not in ctx.services:
        return _refused(ref, "NoMatchingParent", f"no Service {ref_ns}/{ref.name}")
    return ParentVerdict(ref, OK, (True, "ResolvedRefs", ""))


def _gateway_parent(
    route: AnyRoute,
    ref: ParentReference,
    gws: dict[tuple[str, str], KubernetesGateway],
    listeners: dict[tuple[str, str], list[ListenerVerdict]],
    ctx: _Context,
) -> tuple[ParentVerdict, list[ListenerVerdict]]:
    """A Gateway parent: the verdict and the listeners the route attaches to."""
    ref_ns = ref.namespace or route.namespace
    if not ref.is_gateway:
        return _refused(ref, "InvalidKind", f"parent kind {ref.kind} is not supported"), []
    gw = gws.get((ref_ns, ref.name))
    if gw is None:
        return _refused(ref, "NoMatchingParent", f"no Gateway {ref_ns}/{ref.name}"), []
    why: list[str] = []
    taken = []
    for lv in listeners[(ref_ns, ref.name)]:
        listener = lv.listener
        if ref.section_name is not None and listener.name != ref.section_name:
            continue
        if ref.port is not None and listener.port != ref.port:
            continue
        refused = _admits(listener, route, gw, ctx)
        if refused is None:
            taken.append(lv)
        else:
            why.append(refused)
    if taken:
        return ParentVerdict(ref, OK, (True, "ResolvedRefs", "")), taken
    if not why:
        return _refused(ref, "NoMatchingParent", "no listener has that sectionName/port"), []
    hostname = all("hostname" in w for w in why)
    reason = "NoMatchingListenerHostname" if hostname else "NotAllowedByListeners"
    return _refused(ref, reason, "; ".join(why)), []
