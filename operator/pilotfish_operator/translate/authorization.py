"""AuthorizationPolicy and RequestAuthentication → what applies to each workload.

A policy in the root namespace without a selector applies to every workload, one in
a namespace without a selector to the workloads of that namespace, one with a
selector to the matching workloads of its namespace. A policy with `targetRefs`
binds to gateways and waypoints, not sidecars (Istio).

CUSTOM sends the requests its rules match to an external authorization service, an
`extensionProviders` entry of the mesh config. As Istio, it fails closed: a policy
whose provider is missing, is not an ext_authz provider or names a service the mesh
does not know, and the CUSTOM policies of a workload that name more than one
provider, become DENY policies for the same rules, with a warning.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from pilotfish_xds import ir

from ..api import AuthorizationPolicy, RequestAuthentication, Rule, Service, Source
from ..api.mesh_config import EMPTY, MeshConfigSpec
from . import providers
from .precedence import age


def _account(ref: str, namespace: str) -> str:
    """`serviceAccounts` entry → a principal in any trust domain."""
    ns, _, name = ref.rpartition("/")
    return f"*/ns/{ns or namespace}/sa/{name}"


def _domain(value: str) -> str | None:
    """`trustDomains` entry → a principal pattern (a suffix match on the trust domain
    alone has no principal form: None)."""
    if value == "*" or value.endswith("*"):
        return value
    return None if value.startswith("*") else f"{value}/*"


def _principals(source: Source, namespace: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Principals and not-principals of a source, with `serviceAccounts` and
    `trustDomains` folded in (the API forbids serviceAccounts beside principals); None
    when trust domains cannot be expressed so (then the caller fails closed)."""
    allow = source.principals + tuple(_account(a, namespace) for a in source.service_accounts)
    deny = source.not_principals + tuple(
        _account(a, namespace) for a in source.not_service_accounts
    )
    domains = [_domain(d) for d in source.trust_domains]
    not_domains = [_domain(d) for d in source.not_trust_domains]
    if None in domains or None in not_domains or (domains and allow):
        return None
    return allow + tuple(d for d in domains if d), deny + tuple(d for d in not_domains if d)


def _rule(r: Rule, namespace: str, deny: bool) -> ir.AuthzRule | None:
    """None: a rule of an ALLOW/AUDIT/CUSTOM policy whose trust domains cannot be
    matched (left out: it matches nothing); a DENY policy's ignores them instead."""
    sources = []
    for f in r.from_:
        principals = _principals(f.source, namespace)
        if principals is None and not deny:
            return None
        if principals is None:
            plain = f.source.model_copy(update={"trust_domains": (), "not_trust_domains": ()})
            principals = _principals(plain, namespace)
        assert principals is not None
        sources.append((f, principals))
    return ir.AuthzRule(
        sources=tuple(
            ir.AuthzSource(
                principals=principals[0],
                not_principals=principals[1],
                request_principals=f.source.request_principals,
                not_request_principals=f.source.not_request_principals,
                namespaces=f.source.namespaces,
                not_namespaces=f.source.not_namespaces,
                ip_blocks=f.source.ip_blocks,
                not_ip_blocks=f.source.not_ip_blocks,
                remote_ip_blocks=f.source.remote_ip_blocks,
                not_remote_ip_blocks=f.source.not_remote_ip_blocks,
            )
            for f, principals in sources
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


def _suffix_domains(r: Rule) -> bool:
    return any(_principals(f.source, "") is None for f in r.from_)


DEFAULT_TIMEOUT = datetime.timedelta(seconds=600)
"""Istio's default for a provider's `timeout`."""


class AuthzPolicies:
    def __init__(
        self,
        policies: Iterable[AuthorizationPolicy],
        root_namespace: str,
        mesh: MeshConfigSpec = EMPTY,
        services: Mapping[tuple[str, str], Service] | None = None,
        cluster_domain: str = "cluster.local",
    ) -> None:
        self.root = root_namespace
        self.warnings: list[str] = []
        self._all: list[tuple[AuthorizationPolicy, ir.AuthzPolicy]] = []
        services = services or {}
        for p in sorted(policies, key=age):
            if p.spec.target_ref is not None or p.spec.target_refs:
                continue  # for gateways and waypoints
            name = f"{p.namespace}/{p.name}"
            deny = p.spec.action == "DENY"
            rules = tuple(
                r for r in (_rule(r, p.namespace, deny) for r in p.spec.rules) if r is not None
            )
            if any(_suffix_domains(r) for r in p.spec.rules):
                self._warn(
                    f"AuthorizationPolicy {name}: a trustDomains suffix ('*.example') or "
                    "trustDomains beside principals is not applied yet; "
                    + ("ignored in its DENY rules" if deny else "those rules match nothing")
                )
            if p.spec.action != "CUSTOM":
                self._all.append((p, ir.AuthzPolicy(name, p.spec.action, rules)))
                continue
            assert p.spec.provider is not None  # the API checks it
            found = ext_authz(p.spec.provider.name, mesh, services, cluster_domain)
            if isinstance(found, str):
                self.warnings.append(
                    f"AuthorizationPolicy {name}: {found}; its rules deny instead (fail closed)"
                )
                self._all.append((p, ir.AuthzPolicy(name, "DENY", rules)))
            else:
                self._all.append((p, ir.AuthzPolicy(name, "CUSTOM", rules, found)))

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def for_workload(self, namespace: str, labels: dict[str, str]) -> tuple[ir.AuthzPolicy, ...]:
        out = []
        for p, policy in self._all:
            selector = p.spec.selector.match_labels if p.spec.selector is not None else {}
            if _applies(p.namespace, selector, self.root, namespace, labels):
                out.append(policy)
        providers = {p.provider.provider for p in out if p.provider is not None}
        if len(providers) > 1:
            self._warn(
                f"workloads in {namespace} with labels {labels}: CUSTOM policies name "
                f"{len(providers)} providers ({', '.join(sorted(providers))}), one is allowed; "
                "their rules deny instead (fail closed)"
            )
            out = [
                ir.AuthzPolicy(p.name, "DENY", p.rules) if p.action == "CUSTOM" else p for p in out
            ]
        return tuple(out)


def ext_authz(
    name: str,
    mesh: MeshConfigSpec,
    services: Mapping[tuple[str, str], Service],
    cluster_domain: str,
) -> ir.ExtAuthz | str:
    """The provider `name` as Envoy needs it, or why it cannot be used."""
    provider = mesh.provider(name)
    if provider is None:
        return f"provider {name!r} is not among the mesh config's extensionProviders"
    http, grpc = provider.envoy_ext_authz_http, provider.envoy_ext_authz_grpc
    config = http or grpc
    if config is None:
        return f"provider {name!r} is not envoyExtAuthzHttp or envoyExtAuthzGrpc"
    target = providers.collector(name, config.service, config.port, services, cluster_domain)
    if isinstance(target, str):
        return target
    body = config.include_request_body_in_check
    common: dict[str, Any] = {
        "provider": name,
        "cluster": target.cluster,
        "authority": target.authority,
        "grpc": http is None,
        "timeout": config.timeout or DEFAULT_TIMEOUT,
        "fail_open": config.fail_open,
        "status_on_error": int(config.status_on_error) if config.status_on_error else None,
        "body_max_bytes": body.max_request_bytes if body is not None else None,
        "body_partial": body.allow_partial_message if body is not None else False,
        "body_as_bytes": body.pack_as_bytes if body is not None else False,
    }
    if http is None:
        return ir.ExtAuthz(**common)
    return ir.ExtAuthz(
        **common,
        path_prefix=http.path_prefix or "",
        request_headers=http.include_request_headers_in_check,
        additional_headers=tuple(sorted(http.include_additional_headers_in_check.items())),
        upstream_headers=http.headers_to_upstream_on_allow,
        client_headers_on_deny=http.headers_to_downstream_on_deny,
        client_headers_on_allow=http.headers_to_downstream_on_allow,
    )


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
