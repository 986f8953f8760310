"""Validated API objects → mesh IR. The single entry point is `translate`.

Local mode and the operator both call this with the store they fill, so there is
one translation path whatever the objects' source.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pilotfish_xds import ir

from ..api import Destination, DestinationRule, Gateway, Pod, Service, Sidecar, VirtualService
from ..security import credentials
from ..store import Key, Store
from . import destination_rules, gateways, l4_routes, routes, service_entries, virtual_services
from . import gateway_api as gateway_api_mod
from . import proxies as proxies_mod
from . import sidecars as sidecars_mod
from .failures import Failures, blame, isolate
from .hosts import Names
from .proxies import proxy_id as proxy_id  # the node id: local mode and benchmarks use it
from .service_clusters import service_clusters
from .services import (
    ServiceInfo,
    Workloads,
    involved_pods,
    service_info,
    slices_by_service,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    cluster_domain: str = "cluster.local"
    trust_domain: str = "cluster.local"
    """The SPIFFE trust domain of workload identities."""
    local: bool = True
    """Local mode: no iptables, so injected pods are reached at podIP:15006. Otherwise
    (a cluster) endpoints are podIP:targetPort and sidecars capture with iptables."""
    root_namespace: str = "pilotfish-system"
    """The mesh's root namespace: its DestinationRules are a fallback for every host."""
    on_demand: bool = False
    """Sidecars are scoped (`ir.Proxy.on_demand`): they fetch each HTTP service on its
    first call instead of being sent every service. Needs Delta xDS sidecars."""


@dataclass
class Translation:
    mesh: ir.Mesh
    warnings: list[str] = field(default_factory=list)
    failures: Failures = field(default_factory=dict)
    """Objects whose translation raised (a bug): left out, reported in their status."""
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    """The Gateway API objects' status (translate/gateway_api/status.py)."""


@dataclass(frozen=True)
class Pass:
    """One step of translation: the kinds it reads from the store and how it runs. Its
    result is reused until one of those kinds changes; a kind no pass declares is
    caught by tests/pilotfish_operator/test_incremental.py."""

    name: str
    reads: frozenset[str]
    run: Callable[[Translator, Store, set[str] | None], Any]


PASSES: tuple[Pass, ...] = (
    Pass(
        "workloads",
        frozenset(
            {
                "Pod",
                "Namespace",
                "Service",
                "EndpointSlice",
                "Node",
                "PeerAuthentication",
                "AuthorizationPolicy",
                "RequestAuthentication",
                "Telemetry",
                "ConfigMap",  # the mesh config: extension providers, access logs
                "ServiceEntry",
                "WorkloadEntry",
                "Sidecar",
            }
        ),
        lambda t, store, changed: t._workloads_pass(store, changed),
    ),
    Pass(
        "gateway_api",
        gateway_api_mod.READS,
        lambda t, store, changed: t._gateway_api_pass(store, changed),
    ),
    Pass(
        "destination_rules",
        frozenset({"DestinationRule"}),
        lambda t, store, changed: t._rules_pass(store, changed),
    ),
    Pass(
        "virtual_services",
        # GAMMA routes (the Gateway API pass) join the VirtualServices.
        frozenset({"VirtualService"}) | gateway_api_mod.READS - {"Pod"},
        lambda t, store, changed: t._virtual_services_pass(store, changed),
    ),
    Pass(
        "gateways",
        frozenset({"Gateway", "VirtualService", "Pod", "Secret"}) | gateway_api_mod.READS,
        lambda t, store, changed: t._gateways_pass(store, changed),
    ),
)
"""The passes in order; the services' hosts are then assembled from their results
(each host remembered with the exact inputs it was built from)."""

NOT_READ: dict[str, str] = {
    "ServiceAccount": "identities come from the pod's spec.serviceAccountName",
}
"""Kinds the store holds that no pass reads, and why."""

_HostEntry = tuple[tuple[Any, ...], list[ir.VirtualHost], list[ir.Cluster], Failures]
"""(inputs, virtual hosts, clusters, failures) remembered per service host."""


class Translator:
    """Translates the store, reusing what did not change since the last call.

    Every piece of output is remembered with the input objects it was built from
    (the store's models are immutable and replaced on change, so comparing the
    inputs is mostly identity checks). A VirtualService edit re-translates the
    hosts it routes and nothing else; one pod's change re-translates the services
    that select it. The output is the same as translating from scratch.
    """

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.names = Names(self.options.cluster_domain)
        self._services: dict[Key, tuple[tuple[Any, ...], ServiceInfo]] = {}
        self._hosts: dict[str, _HostEntry] = {}
        self._proxies: dict[tuple[str, str], tuple[tuple[Any, ...], ir.Proxy]] = {}
        self._dests: dict[Key, tuple[VirtualService, set[str]]] = {}
        # What the last call derived per kind, reused while those kinds are unchanged.
        self._seen = -1
        self._passes: dict[str, Any] = {}
        """Each pass's last result, reused while the kinds it reads are unchanged."""
        self.reused = 0
        """How many services the last call took over unchanged (for tests and benchmarks)."""

    def translate(self, store: Store) -> Translation:
        changed = store.changed_since(self._seen) if self._seen >= 0 else None
        entry_hosts = service_entries.exact_hosts(store)
        if entry_hosts != self.names.entries:  # host names resolve differently: start over
            self.names = dataclasses.replace(self.names, entries=entry_hosts)
            self._dests, changed = {}, None
        self._seen = store.generation
        results: dict[str, Any] = {}
        for p in PASSES:
            if p.name not in self._passes or changed is None or not changed.isdisjoint(p.reads):
                self._passes[p.name] = p.run(self, store, changed)
            results[p.name] = self._passes[p.name]
        workloads, infos, proxies, workload_failures = results["workloads"]
        rules: dict[str, destination_rules.Rules] = results["destination_rules"]
        vs_by_host, vs_warnings = results["virtual_services"]
        warnings = list(vs_warnings) + workloads.warnings
        failures: Failures = dict(workload_failures)

        by_host = {i.hostname: i for i in infos}
        vhosts: list[ir.VirtualHost] = []
        clusters: list[ir.Cluster] = []
        hosts: dict[str, _HostEntry] = {}
        self.reused = 0
        # Only VirtualServices changed (the common edit): a host whose VirtualServices are
        # the same objects as last time has the same inputs, without re-deriving them.
        routing_only = changed is not None and changed <= {"VirtualService"}
        for info in infos:
            vss = tuple(vs_by_host.get(info.hostname, ()))
            seen = self._hosts.get(info.hostname)
            if routing_only and seen is not None and seen[0][2] == vss:
                hosts[info.hostname] = seen
                vhosts += seen[1]
                clusters += seen[2]
                failures.update(seen[3])
                self.reused += 1
                continue
            dests = sorted({d for vs in vss for d in self._destinations(vs)})
            host_inputs = (
                info,
                rules.get(info.hostname, ()),
                vss,
                tuple((d, by_host.get(d), rules.get(d, ())) for d in dests),
            )
            if seen is not None and seen[0] == host_inputs:
                entry = seen
                self.reused += 1
            else:
                entry = (host_inputs, *self._host_isolated(info, vss, by_host, rules))
            hosts[info.hostname] = entry
            vhosts += entry[1]
            clusters += entry[2]
            failures.update(entry[3])
        self._hosts = hosts

        for host in sorted(vs_by_host.keys() - by_host.keys()):
            for vs in vs_by_host[host]:
                warnings.append(
                    f"VirtualService {vs.namespace}/{vs.name}: host {host} is not a known "
                    "service; ignored"
                )
        proxies += tuple(
            self._gateway_proxies(
                results["gateways"], store, workloads, by_host, rules, warnings, failures
            )
        )
        if self.options.local:
            warnings += proxies_mod.local_port_conflicts(vhosts, proxies)
        for w in warnings:
            log.warning("%s", w)
        statuses = gateway_api_mod.statuses(results["gateway_api"])
        mesh = ir.Mesh(tuple(vhosts), tuple(clusters), proxies)
        return Translation(mesh, warnings, failures, statuses)

    def _gateway_api_pass(self, store: Store, _: set[str] | None) -> gateway_api_mod.Converted:
        pods = (p for p in store.of_kind("Pod") if isinstance(p, Pod) and gateways.is_gateway(p))
        return gateway_api_mod.convert(store, self.names, pods)

    def _workloads_pass(self, store: Store, changed: set[str] | None) -> Any:
        if changed is None or "Node" in changed:
            self._services = {}  # localities changed: nodes change rarely, rebuild them all
        failures: Failures = {}
        workloads, infos = self._services_of(store, failures)
        found = (s for s in store.of_kind("Sidecar") if isinstance(s, Sidecar))
        sidecars = sidecars_mod.Sidecars(found, self.options.root_namespace)
        proxies = self._proxies_of(workloads, infos, failures, sidecars)
        workloads.warnings.extend(sidecars.warnings)
        return workloads, infos, proxies, failures

    def _rules_pass(self, store: Store, _: set[str] | None) -> dict[str, destination_rules.Rules]:
        return destination_rules.rules_by_host(store, self.names)

    def _virtual_services_pass(self, store: Store, _: set[str] | None) -> Any:
        warnings: list[str] = []
        gamma = self._passes["gateway_api"].mesh
        by_host = virtual_services.by_host(store, self.names, warnings, gamma)
        self._dests = {k: v for k, v in self._dests.items() if store.get(k) is v[0]}
        return by_host, warnings

    def _host_isolated(
        self,
        info: ServiceInfo,
        vss: tuple[VirtualService, ...],
        by_host: dict[str, ServiceInfo],
        rules: dict[str, destination_rules.Rules],
    ) -> tuple[list[ir.VirtualHost], list[ir.Cluster], Failures]:
        """`_host`, with a failure pinned on the VirtualService, DestinationRule or
        Service that caused it; the host is served without the culprit."""
        try:
            return *self._host(info, vss, by_host, rules), {}
        except Exception:
            pass
        failures: Failures = {}
        try:  # the service (with its rules) alone
            self._host(info, (), by_host, rules)
        except Exception as exc:
            own = rules.get(info.hostname, ())
            without = {h: r for h, r in rules.items() if h != info.hostname}
            try:
                self._host(info, (), by_host, without)
            except Exception:
                blame(failures, ("Service", info.namespace, info.name), exc)
                return [], [], failures
            kept = isolate(
                lambda some: self._host(info, (), by_host, {**without, info.hostname: tuple(some)}),
                own,
                _rule_key,
                failures,
            )
            rules = {**without, info.hostname: tuple(kept[1]) if kept else ()}
        found = isolate(
            lambda some: self._host(info, tuple(some), by_host, rules), vss, _key, failures
        )
        if found is None:
            return [], [], failures
        return *found[0], failures

    def _cluster_for(
        self, by_host: dict[str, ServiceInfo], rules: dict[str, destination_rules.Rules]
    ) -> Callable[[str, Destination, int], tuple[str, tuple[ir.HashPolicy, ...]]]:
        """(VirtualService namespace, destination, port) → the cluster a route sends to
        and the hash policy of its DestinationRule."""
        names, root = self.names, self.options.root_namespace

        def cluster_for(
            namespace: str, dest: Destination, port: int
        ) -> tuple[str, tuple[ir.HashPolicy, ...]]:
            host = names.fqdn(dest.host, namespace)
            svc = by_host.get(host)
            if dest.port is not None and dest.port.number is not None:
                port = dest.port.number
            elif svc is not None and len(svc.ports) == 1:
                port = svc.ports[0].port
            subset = dest.subset or ""
            rule = destination_rules.public_rule(
                rules.get(host, ()), svc.namespace if svc is not None else "", root
            )
            policy = destination_rules.merge_traffic_policy(rule, port, subset)
            return (
                ir.outbound_cluster_name(host, port, subset),
                destination_rules.hash_policy(policy.load_balancer),
            )

        return cluster_for

    def _gateway_proxies(
        self,
        found: tuple[list[Pod], list[Gateway], list[VirtualService]],
        store: Store,
        workloads: Workloads,
        by_host: dict[str, ServiceInfo],
        rules: dict[str, destination_rules.Rules],
        warnings: list[str],
        failures: Failures,
    ) -> list[ir.Proxy]:
        pods, gws, vss = found
        if not pods:
            return []
        cluster_for = self._cluster_for(by_host, rules)

        def credential(namespace: str, name: str, mutual: bool) -> str | None:
            found = credentials.read(store, namespace, name, mutual)
            return found if isinstance(found, str) else None

        def routes_for(vs: VirtualService, port: int, gateway: str) -> tuple[ir.Route, ...]:
            return routes.virtual_service_routes(
                vs, port, partial(cluster_for, vs.namespace), gateway
            )

        def l4_routes_for(
            vs: VirtualService, port: int, gateway: str, proxying: ir.Proxying
        ) -> tuple[ir.L4Route, ...]:
            return l4_routes.l4_routes(
                vs, port, proxying, partial(cluster_for, vs.namespace), gateway
            )

        out = []
        for pod in pods:
            try:
                proxy = self._proxy(pod, (), workloads.locality(pod.spec.node_name))
                mine = [g for g in gws if gateway_api_mod.selects(g, pod)]
                served = gateways.servers(
                    pod, mine, vss, routes_for, credential, warnings, l4_routes_for
                )
            except Exception as exc:
                blame(failures, pod.key, exc)
                continue
            out.append(
                dataclasses.replace(
                    proxy,
                    kind="gateway",
                    inbound=(),
                    servers=served,
                    authz=workloads.authz.get((pod.namespace, pod.name), ()),
                    jwt=workloads.jwt.get((pod.namespace, pod.name), ()),
                )
            )
        return out

    def _proxy(
        self,
        pod: Pod,
        services: tuple[ServiceInfo, ...],
        where: ir.Locality | None,
        peer: ir.PeerAuth | None = None,
    ) -> ir.Proxy:
        o = self.options
        proxy = proxies_mod.proxy(pod, services, self.names, o.local, o.trust_domain, where, peer)
        return dataclasses.replace(proxy, on_demand=True) if o.on_demand else proxy

    def _gateways_pass(self, store: Store, _: set[str] | None) -> Any:
        pods = sorted(
            (
                p
                for p in store.of_kind("Pod")
                if isinstance(p, Pod) and gateways.is_gateway(p) and p.status.pod_ip
            ),
            key=lambda p: p.key,
        )
        gws = [g for g in store.of_kind("Gateway") if isinstance(g, Gateway)]
        vss = [
            v
            for v in store.of_kind("VirtualService")
            if isinstance(v, VirtualService) and any(g != "mesh" for g in v.spec.gateways)
        ]
        # The Gateway API's, after Istio's: where both route a host, Istio's routes come first.
        converted: gateway_api_mod.Converted = self._passes["gateway_api"]
        return pods, gws + converted.gateways, vss + converted.virtual_services

    def _destinations(self, vs: VirtualService) -> set[str]:
        known = self._dests.get(vs.key)
        if known is None or known[0] is not vs:
            known = self._dests[vs.key] = (vs, virtual_services.destinations(vs, self.names))
        return known[1]

    def _services_of(self, store: Store, failures: Failures) -> tuple[Workloads, list[ServiceInfo]]:
        names, local = self.names, self.options.local
        workloads = Workloads.of(store, self.options.root_namespace, self.options.cluster_domain)
        slices = slices_by_service(store)

        infos: list[ServiceInfo] = []
        services: dict[Key, tuple[tuple[Any, ...], ServiceInfo]] = {}
        for svc in sorted(
            (s for s in store.of_kind("Service") if isinstance(s, Service)), key=lambda s: s.key
        ):
            own = slices.get((svc.namespace, svc.name), [])
            pods = involved_pods(svc, own, workloads)
            inputs = (
                svc,
                tuple(own),
                tuple((workloads.pods[p], workloads.peer.get(p)) for p in pods),
            )
            known = self._services.get(svc.key)
            if known is not None and known[0] == inputs:
                info = known[1]
            else:
                try:
                    info = service_info(
                        svc, own, pods, names, workloads, local, self.options.trust_domain
                    )
                except Exception as exc:
                    blame(failures, svc.key, exc)
                    continue
            services[svc.key] = (inputs, info)
            infos.append(info)
        self._services = services
        taken = {i.hostname for i in infos}
        td = self.options.trust_domain
        infos += service_entries.infos(
            store, workloads, names, taken, local, td, workloads.warnings
        )
        return workloads, infos

    def _host(
        self,
        info: ServiceInfo,
        vss: tuple[VirtualService, ...],
        by_host: dict[str, ServiceInfo],
        rules: dict[str, destination_rules.Rules],
    ) -> tuple[list[ir.VirtualHost], list[ir.Cluster]]:
        names, root = self.names, self.options.root_namespace

        def public(host: str, namespace: str) -> DestinationRule | None:
            return destination_rules.public_rule(rules.get(host, ()), namespace, root)

        cluster_for = self._cluster_for(by_host, rules)
        own = rules.get(info.hostname, ())
        dr = public(info.hostname, info.namespace)
        vhosts, clusters = [], []
        for sp in info.ports:
            for rule, scope in destination_rules.variants(own, info.namespace, root):
                clusters += service_clusters(info, sp.port, rule, scope)
            default = ir.outbound_cluster_name(info.hostname, sp.port)
            lb = destination_rules.merge_traffic_policy(dr, sp.port, "").load_balancer
            proxying = ir.proxying_of(sp.protocol)
            tables = tuple(
                ir.RouteTable(
                    source=f"{vs.namespace}/{vs.name}",
                    namespace=vs.namespace,
                    routes=routes.virtual_service_routes(
                        vs, sp.port, partial(cluster_for, vs.namespace)
                    )
                    if proxying == "http"
                    else (),
                    export_to=virtual_services.export_to(vs.spec.export_to),
                    l4_routes=l4_routes.l4_routes(
                        vs, sp.port, proxying, partial(cluster_for, vs.namespace)
                    ),
                )
                for vs in vss
                # As Istio, a VirtualService routes a port only with routes of its kind.
                if getattr(vs.spec, proxying)
            )
            vhosts.append(
                ir.VirtualHost(
                    hostname=info.hostname,
                    port=sp.port,
                    namespace=info.namespace,
                    aliases=() if info.entry else names.aliases(info.name, info.namespace),
                    short_name=None if info.entry else info.name,
                    routes=(routes.default_route(default, destination_rules.hash_policy(lb)),)
                    if proxying == "http"
                    else (),
                    tables=tables,
                    export_to=info.export_to,
                    addresses=info.addresses,
                    protocol=sp.protocol,
                    l4_routes=(l4_routes.default_l4_route(default),) if proxying != "http" else (),
                )
            )
        return vhosts, clusters

    def _proxies_of(
        self,
        workloads: Workloads,
        infos: list[ServiceInfo],
        failures: Failures,
        sidecars: sidecars_mod.Sidecars,
    ) -> tuple[ir.Proxy, ...]:
        by_namespace: dict[str, list[ServiceInfo]] = {}
        for info in infos:
            by_namespace.setdefault(info.namespace, []).append(info)
        out = []
        proxies: dict[tuple[str, str], tuple[tuple[Any, ...], ir.Proxy]] = {}
        for key in sorted(workloads.injected):
            pod = workloads.pods[key]
            if not pod.status.pod_ip:
                continue  # not scheduled yet: no address to bind
            where = workloads.locality(pod.spec.node_name)
            sidecar = sidecars.for_workload(pod.namespace, pod.metadata.labels, pod.name)
            inputs = (
                pod,
                tuple(by_namespace.get(pod.namespace, ())),
                where,
                workloads.peer.get(key),
                workloads.authz.get(key, ()),
                workloads.jwt.get(key, ()),
                workloads.telemetry.get(key),
                workloads.outbound_policy,
                sidecar,
            )
            known = self._proxies.get(key)
            proxy = known[1] if known is not None and known[0] == inputs else None
            if proxy is None:
                try:
                    proxy = self._proxy(pod, inputs[1], where, workloads.peer.get(key))
                    proxy = dataclasses.replace(
                        proxy,
                        authz=workloads.authz.get(key, ()),
                        jwt=workloads.jwt.get(key, ()),
                        telemetry=workloads.telemetry.get(key, ir.Telemetry()),
                        outbound_policy=workloads.outbound_policy,
                    )
                    proxy = sidecars_mod.apply(proxy, sidecar)  # scope, ingress, policy
                except Exception as exc:
                    blame(failures, pod.key, exc)
                    continue
            proxies[key] = (inputs, proxy)
            out.append(proxy)
        self._proxies = proxies
        return tuple(out)


def translate(store: Store, options: Options | None = None) -> Translation:
    """Translate from scratch (goldens, tools); long-lived callers keep a Translator."""
    return Translator(options).translate(store)


def _key(vs: VirtualService) -> Key:
    return vs.key


def _rule_key(dr: DestinationRule) -> Key:
    return dr.key
