"""AuthorizationPolicy and RequestAuthentication → what applies to each workload.

A policy in the root namespace without a selector applies to every workload, one in
a namespace without a selector to the workloads of that namespace, one with a
selector to the matching workloads of its namespace. A policy with `targetRefs`
binds to gateways and waypoints, not sidecars (Istio). CUSTOM (external
authorization) is not applied yet: the translator warns.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish_xds import ir

from ..api import AuthorizationPolicy, RequestAuthentication, Rule
from .precedence import age


def _rule(r: Rule) -> ir.AuthzRule:
    return ir.AuthzRule(
        sources=tuple(
            ir.AuthzSource(
                principals=f.source.principals,
                not_principals=f.source.not_principals,
                request_principals=f.source.request_principals,
                not_request_principals=f.source.not_request_principals,
                namespaces=f.source.namespaces,
                not_namespaces=f.source.not_namespaces,
                ip_blocks=f.source.ip_blocks,
                not_ip_blocks=f.source.not_ip_blocks,
                remote_ip_blocks=f.source.remote_ip_blocks,
                not_remote_ip_blocks=f.source.not_remote_ip_blocks,
            )
            for f in r.from_
        ),
        operations=tuple(
            ir.AuthzOperation(
                hosts=t.operation.hosts,
                not_hosts=t.operation.not_hosts,
                ports=tuple(int(p) for p in t.operation.ports),
                not_ports=tuple(int(p) for p in t.operation.not_ports),
                methods=t.operation.methods,
                not_methods=t.operation.not_methods,
                paths=t.operation.paths,
                not_paths=t.operation.not_paths,
            )
            for t in r.to
        ),
        conditions=tuple(ir.AuthzCondition(c.key, c.values, c.not_values) for c in r.when),
    )


class AuthzPolicies:
    def __init__(self, policies: Iterable[AuthorizationPolicy], root_namespace: str) -> None:
        self.root = root_namespace
        self.warnings: list[str] = []
        self._all: list[tuple[AuthorizationPolicy, ir.AuthzPolicy]] = []
        for p in sorted(policies, key=age):
            if p.spec.target_ref is not None or p.spec.target_refs:
                continue  # for gateways and waypoints
            action = p.spec.action
            if action == "CUSTOM":
                self.warnings.append(
                    f"AuthorizationPolicy {p.namespace}/{p.name}: action CUSTOM (external "
                    "authorization) is not supported yet; not applied"
                )
                continue
            rules = tuple(_rule(r) for r in p.spec.rules)
            self._all.append((p, ir.AuthzPolicy(f"{p.namespace}/{p.name}", action, rules)))

    def for_workload(self, namespace: str, labels: dict[str, str]) -> tuple[ir.AuthzPolicy, ...]:
        out = []
        for p, policy in self._all:
            selector = p.spec.selector.match_labels if p.spec.selector is not None else {}
            if _applies(p.namespace, selector, self.root, namespace, labels):
                out.append(policy)
        return tuple(out)


def scope(
    namespace: str, selector: dict[str, str], root: str, ns: str, labels: dict[str, str]
) -> str | None:
    """Why a workload policy applies to a workload in `ns` with `labels` (None: it does
    not), in Istio's scopes: mesh-wide in the root namespace (no selector),
    namespace-wide, or the matching workloads of its namespace."""
    if namespace == root and not selector:
        return f"mesh-wide (no selector in the root namespace {root})"
    if namespace != ns or any(labels.get(k) != v for k, v in selector.items()):
        return None
    if not selector:
        return f"namespace-wide (no selector in {ns})"
    return "selector " + ",".join(f"{k}={v}" for k, v in sorted(selector.items())) + " matches"


def _applies(
    namespace: str, selector: dict[str, str], root: str, ns: str, labels: dict[str, str]
) -> bool:
    return scope(namespace, selector, root, ns, labels) is not None


class JwtRules:
    def __init__(self, policies: Iterable[RequestAuthentication], root_namespace: str) -> None:
        self.root = root_namespace
        self._all: list[tuple[RequestAuthentication, tuple[ir.JwtRule, ...]]] = []
        for p in sorted(policies, key=age):
            if p.spec.target_ref is not None or p.spec.target_refs:
                continue  # for gateways and waypoints
            rules = tuple(
                ir.JwtRule(
                    issuer=r.issuer,
                    audiences=r.audiences,
                    jwks=r.jwks,
                    jwks_uri=r.jwks_uri,
                    from_headers=tuple((h.name, h.prefix) for h in r.from_headers),
                    from_params=r.from_params,
                    from_cookies=r.from_cookies,
                    payload_header=r.output_payload_to_header or None,
                    forward=r.forward_original_token,
                    claim_headers=tuple((c.header, c.claim) for c in r.output_claim_to_headers),
                    timeout=r.timeout,
                )
                for r in p.spec.jwt_rules
            )
            self._all.append((p, rules))

    def for_workload(self, namespace: str, labels: dict[str, str]) -> tuple[ir.JwtRule, ...]:
        out: list[ir.JwtRule] = []
        for p, rules in self._all:
            selector = p.spec.selector.match_labels if p.spec.selector is not None else {}
            if _applies(p.namespace, selector, self.root, namespace, labels):
                out += rules
        return tuple(out)
