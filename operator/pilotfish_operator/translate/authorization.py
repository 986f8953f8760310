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

from ..api import AuthorizationPolicy, RequestAuthentication, Rule, Service
from ..api.mesh_config import EMPTY, MeshConfigSpec
from . import providers
from .precedence import age


def _accounts(refs: tuple[str, ...], namespace: str) -> tuple[str, ...]:
    """`serviceAccounts` entries → principals in any trust domain (`<name>` alone is in
    the policy's namespace). The API forbids them beside principals, so they can stand
    in for them."""
    out = []
    for ref in refs:
        ns, _, name = ref.rpartition("/")
        out.append(f"*/ns/{ns or namespace}/sa/{name}")
    return tuple(out)


def _rule(r: Rule, namespace: str) -> ir.AuthzRule:
    return ir.AuthzRule(
        sources=tuple(
            ir.AuthzSource(
                principals=f.source.principals + _accounts(f.source.service_accounts, namespace),
                not_principals=f.source.not_principals
                + _accounts(f.source.not_service_accounts, namespace),
                request_principals=f.source.request_principals,
                not_request_principals=f.source.not_request_principals,
                namespaces=f.source.namespaces,
                not_namespaces=f.source.not_namespaces,
                ip_blocks=f.source.ip_blocks,
                not_ip_blocks=f.source.not_ip_blocks,
                remote_ip_blocks=f.source.remote_ip_blocks,
                not_remote_ip_blocks=f.source.not_remote_ip_blocks,
                trust_domains=f.source.trust_domains,
                not_trust_domains=f.source.not_trust_domains,
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
            rules = tuple(_rule(r, p.namespace) for r in p.spec.rules)
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
                    space_delimited_claims=r.space_delimited_claims,
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
