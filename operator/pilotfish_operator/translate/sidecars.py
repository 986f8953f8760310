"""Sidecar → each workload's proxy scope, as Istio picks and reads it.

Which Sidecar applies to a workload: the oldest one of its namespace whose
`workloadSelector` matches its labels; else its namespace's Sidecar without a selector
(the oldest, if several: the others are reported); else the root namespace's one
without a selector (the mesh default). What it gives the proxy (`apply`):

- `egress[].hosts` → `ir.Proxy.egress_imports` (`ns/host`, `./host` the workload's own
  namespace, `*/host`, `ns/*`, `~/*` nothing, `*/*` everything); a listener's `port`
  limits its hosts to that port. No `egress` imports everything exported to it.
- `ingress[]` → `ir.Proxy.ingress` (port → defaultEndpoint, with its connection pool);
  `inboundConnectionPool` → `ir.Proxy.inbound_pool`.
- `outboundTrafficPolicy.mode` overrides the mesh config's for the workload.

Accepted but not applied (reported once per Sidecar): `outboundTrafficPolicy.egressProxy`
and ingress `tls`. `bind` and `captureMode` change nothing: local mode has no capture,
and in a cluster every port is captured by iptables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Literal

from pilotfish_xds import ir

from ..api import ConnectionPoolSettings, Sidecar, TrafficPolicy
from .destination_rules import connection_pool
from .precedence import age

Mode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]


def _name(s: Sidecar) -> str:
    return f"{s.namespace}/{s.name}"


class Sidecars:
    def __init__(self, sidecars: Iterable[Sidecar], root_namespace: str) -> None:
        self.root = root_namespace
        self.wide: dict[str, Sidecar] = {}
        """namespace → its oldest Sidecar without a selector"""
        self.selecting: dict[str, list[Sidecar]] = {}
        self.warnings: list[str] = []
        self._reported: set[tuple[str, str]] = set()
        for s in sorted(sidecars, key=age):
            selector = s.spec.workload_selector
            if selector is not None and selector.labels:
                self.selecting.setdefault(s.namespace, []).append(s)
            elif s.namespace in self.wide:
                self.warnings.append(
                    f"Sidecar {_name(s)}: namespace {s.namespace} already has a Sidecar "
                    f"without workloadSelector, the older {_name(self.wide[s.namespace])}; "
                    "ignored"
                )
            else:
                self.wide[s.namespace] = s
            self.warnings += _unsupported(s)

    def for_workload(self, namespace: str, labels: Mapping[str, str], pod: str) -> Sidecar | None:
        matching = [
            s
            for s in self.selecting.get(namespace, ())
            if s.spec.workload_selector is not None
            and all(labels.get(k) == v for k, v in s.spec.workload_selector.labels.items())
        ]
        for later in matching[1:]:
            # On the ignored one (its status shows it), once per pair.
            pair = (_name(later), _name(matching[0]))
            if pair not in self._reported:
                self._reported.add(pair)
                self.warnings.append(
                    f"Sidecar {pair[0]}: selects pod {namespace}/{pod}, which the older "
                    f"Sidecar {pair[1]} selects too; ignored for it"
                )
        if matching:
            return matching[0]
        return self.wide.get(namespace) or self.wide.get(self.root)


def _unsupported(s: Sidecar) -> list[str]:
    out = []
    policy = s.spec.outbound_traffic_policy
    if policy is not None and policy.egress_proxy is not None:
        out.append(
            f"Sidecar {_name(s)}: outboundTrafficPolicy.egressProxy is not supported; "
            "unknown destinations pass through directly (ALLOW_ANY)"
        )
    for i, listener in enumerate(s.spec.ingress):
        if listener.tls is not None:
            out.append(
                f"Sidecar {_name(s)}: ingress[{i}].tls is not supported; port "
                f"{listener.port.number} is served as without it"
            )
    return out


def egress_imports(sidecar: Sidecar, namespace: str) -> tuple[ir.EgressImport, ...] | None:
    """The imports of `sidecar` for a workload of `namespace` (`.` means it: for the
    mesh default in the root namespace, each workload's own namespace, as Istio)."""
    if not sidecar.spec.egress:
        return None
    out: list[ir.EgressImport] = []
    for listener in sidecar.spec.egress:
        port = listener.port.number if listener.port is not None and listener.port.number else None
        for host in listener.hosts:
            ns, _, name = host.partition("/")
            if ns == "~":
                continue  # imports nothing
            out.append(ir.EgressImport(namespace if ns == "." else ns, name.lower(), port))
    return tuple(dict.fromkeys(out))


def _pool(settings: ConnectionPoolSettings | None) -> ir.ConnectionPool | None:
    if settings is None:
        return None
    return connection_pool(TrafficPolicy(connection_pool=settings))


def ingress(sidecar: Sidecar) -> tuple[ir.IngressListener, ...]:
    out = []
    for listener in sidecar.spec.ingress:
        port = listener.port.number
        out.append(
            ir.IngressListener(
                port=port,
                protocol=(listener.port.protocol or "http").lower(),
                endpoint=listener.endpoint or ("0.0.0.0", port),
                pool=_pool(listener.connection_pool),
            )
        )
    return tuple(out)


def apply(proxy: ir.Proxy, sidecar: Sidecar | None) -> ir.Proxy:
    """`proxy` (with the mesh config's outbound policy) under its Sidecar, if any."""
    if sidecar is None:
        return proxy
    policy = sidecar.spec.outbound_traffic_policy
    return dataclasses.replace(
        proxy,
        egress_imports=egress_imports(sidecar, proxy.namespace),
        ingress=ingress(sidecar),
        inbound_pool=_pool(sidecar.spec.inbound_connection_pool),
        outbound_policy=policy.mode if policy is not None else proxy.outbound_policy,
    )
