"""AuthorizationPolicy → Envoy RBAC filters on a workload's inbound side.

Istio's order: CUSTOM first (the requests its rules match are asked of an external
service, `ext_authz.py`), then DENY policies (any match refuses, 403), then AUDIT (logged,
never refuses), then ALLOW (with any ALLOW policy, a request no rule allows is
refused). Each action is one `envoy.filters.http.rbac` instance placed before every
other HTTP filter. A rule is an Envoy policy: any of its sources (and conditions on
the caller) AND any of its operations (and conditions on the request).

Values match as in Istio: exact, `prefix*`, `*suffix`, or `*` (present). Principals
and namespaces match the peer certificate's SPIFFE URI (so they need mutual TLS);
request principals and `request.auth.*` match the verified JWT's claims, which the
JWT filter leaves in its metadata.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable

from envoy_data_plane.envoy.config.core.v3 import CidrRange
from envoy_data_plane.envoy.config.listener.v3 import Filter
from envoy_data_plane.envoy.config.rbac.v3 import (
    Permission,
    PermissionSet,
    Policy,
    Principal,
    PrincipalAuthenticated,
    PrincipalSet,
    Rbac,
    RbacAction,
    SourcedMetadata,
)
from envoy_data_plane.envoy.config.route.v3 import HeaderMatcher
from envoy_data_plane.envoy.extensions.filters.http.rbac.v3 import Rbac as HttpRbac
from envoy_data_plane.envoy.extensions.filters.http.rbac.v3 import RbacPerRoute
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.filters.network.rbac.v3 import Rbac as NetworkRbac
from envoy_data_plane.envoy.type.matcher.v3 import (
    ListMatcher,
    MetadataMatcher,
    MetadataMatcherPathSegment,
    PathMatcher,
    RegexMatcher,
    StringMatcher,
    ValueMatcher,
)
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire
from . import ext_authz

JWT_FILTER = "envoy.filters.http.jwt_authn"
"""Where the JWT filter leaves a verified token's claims (under `payload`)."""
_ACTIONS = (("DENY", RbacAction.DENY), ("AUDIT", RbacAction.LOG), ("ALLOW", RbacAction.ALLOW))


def _filter_name(action: str) -> str:
    return f"envoy.filters.http.rbac.{action.lower()}"


FILTERS: tuple[HttpFilter, ...] = tuple(
    wire.shared(HttpFilter(name=_filter_name(action), typed_config=Any.pack(HttpRbac())))
    for action, _ in _ACTIONS
)
"""First on every inbound connection manager, doing nothing by themselves (no rules):
a workload's policies arrive per virtual host on its inbound routes, so an edit
changes routes (applied to the next request) rather than listeners (which would
leave open connections on the old policy until they drain)."""


def http_filters(custom: ir.ExtAuthz | None) -> tuple[HttpFilter, ...]:
    """A workload's authorization filters, in Istio's order: CUSTOM (when its
    policies name a provider: the shadow RBAC choosing the requests, then ext_authz),
    then DENY, AUDIT, ALLOW."""
    if custom is None:
        return FILTERS
    return (_SHADOW, ext_authz.ext_authz_filter(custom), *FILTERS)


_SHADOW = wire.shared(HttpFilter(name=ext_authz.SHADOW_FILTER, typed_config=Any.pack(HttpRbac())))


def per_filter_config(policies: tuple[ir.AuthzPolicy, ...]) -> dict[str, Any]:
    """The virtual-host configuration of each RBAC filter with policies to enforce."""
    out = {}
    custom = [p for p in policies if p.action == "CUSTOM"]
    if custom:
        shadow = Rbac(
            action=RbacAction.ALLOW,
            policies={
                f"{ext_authz.POLICY_PREFIX}{p.name}[{i}]": _policy(rule)
                for p in custom
                for i, rule in enumerate(p.rules)
            },
        )
        out[ext_authz.SHADOW_FILTER] = Any.pack(
            RbacPerRoute(
                rbac=HttpRbac(shadow_rules=shadow, shadow_rules_stat_prefix=ext_authz.STAT_PREFIX)
            )
        )
    for action, envoy_action in _ACTIONS:
        chosen = [p for p in policies if p.action == action]
        if not chosen:
            continue
        rules = Rbac(
            action=envoy_action,
            policies={
                f"{p.name}[{i}]": _policy(rule) for p in chosen for i, rule in enumerate(p.rules)
            },
        )
        out[_filter_name(action)] = Any.pack(RbacPerRoute(rbac=HttpRbac(rules=rules)))
    return out


_HTTP_CONDITIONS = ("request.headers[", "request.auth.")


def _tcp_rule(rule: ir.AuthzRule, action: str) -> ir.AuthzRule | None:
    """A rule as it applies to a TCP connection, where HTTP attributes do not exist
    (Istio): an ALLOW rule naming any can never match and is dropped; a DENY or AUDIT
    rule is applied without them, so it refuses more rather than less."""
    http = any(
        o.hosts or o.not_hosts or o.methods or o.not_methods or o.paths or o.not_paths
        for o in rule.operations
    )
    http = http or any(s.request_principals or s.not_request_principals for s in rule.sources)
    http = http or any(c.key.startswith(_HTTP_CONDITIONS) for c in rule.conditions)
    if not http:
        return rule
    if action == "ALLOW":
        return None
    return ir.AuthzRule(
        sources=tuple(
            dataclasses.replace(s, request_principals=(), not_request_principals=())
            for s in rule.sources
        ),
        operations=tuple(
            ir.AuthzOperation(ports=o.ports, not_ports=o.not_ports) for o in rule.operations
        ),
        conditions=tuple(c for c in rule.conditions if not c.key.startswith(_HTTP_CONDITIONS)),
    )


def network_filters(policies: tuple[ir.AuthzPolicy, ...], stat_prefix: str) -> list[Filter]:
    """The RBAC network filters for a TCP port of the workload (before its TCP proxy),
    in the same order: DENY, AUDIT, ALLOW."""
    out = []
    for action, envoy_action in _ACTIONS:
        chosen = [p for p in policies if p.action == action]
        if not chosen:
            continue
        rules: dict[str, Policy] = {}
        for p in chosen:
            for i, rule in enumerate(p.rules):
                tcp = _tcp_rule(rule, action)
                if tcp is not None:
                    rules[f"{p.name}[{i}]"] = _policy(tcp)
        config = NetworkRbac(
            rules=Rbac(action=envoy_action, policies=rules),
            stat_prefix=f"{stat_prefix}.{action.lower()}",
        )
        out.append(
            Filter(
                name=f"envoy.filters.network.rbac.{action.lower()}", typed_config=Any.pack(config)
            )
        )
    return out


# ---------------------------------------------------------------- matching values


def _string(value: str) -> StringMatcher:
    if value == "*":
        return StringMatcher(safe_regex=RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return StringMatcher(prefix=value[:-1])
    if value.startswith("*"):
        return StringMatcher(suffix=value[1:])
    return StringMatcher(exact=value)


def _principal_name(value: str) -> StringMatcher:
    """Istio's principals omit the scheme: `cluster.local/ns/a/sa/b`."""
    if value == "*":
        return _string("*")
    if value.endswith("*"):
        return StringMatcher(prefix="spiffe://" + value[:-1])
    if value.startswith("*"):
        return StringMatcher(suffix=value[1:])
    return StringMatcher(exact="spiffe://" + value)


def _trust_domain(value: str) -> StringMatcher:
    """The peer's trust domain (SPIFFE `spiffe://<td>/...`): exact, `prefix*`,
    `*suffix` or `*` (any peer with an identity)."""
    if value == "*":
        return _string("*")
    if value.endswith("*"):
        return StringMatcher(prefix="spiffe://" + value[:-1])
    if value.startswith("*"):
        # RE2 (Envoy's engine) has no lookbehind: the domain is what precedes the first '/'.
        regex = "spiffe://[^/]*" + re.escape(value[1:]) + "/.*"
        return StringMatcher(safe_regex=RegexMatcher(regex=regex))
    return StringMatcher(prefix=f"spiffe://{value}/")


def _namespace(value: str) -> StringMatcher:
    if value == "*":
        return _string("*")
    part = re.escape(value.strip("*"))
    if value.endswith("*"):
        part += "[^/]*"
    elif value.startswith("*"):
        part = "[^/]*" + part
    return StringMatcher(safe_regex=RegexMatcher(regex=f"spiffe://[^/]+/ns/{part}/sa/.+"))


def _host(value: str) -> HeaderMatcher:
    """:authority, case-insensitive, with or without a port."""
    if value == "*":
        return HeaderMatcher(name=":authority", present_match=True)
    body = re.escape(value.strip("*"))
    if value.startswith("*"):
        body = ".*" + body
    elif value.endswith("*"):
        body += ".*"
    return HeaderMatcher(
        name=":authority",
        string_match=StringMatcher(safe_regex=RegexMatcher(regex=f"(?i){body}(:[0-9]+)?")),
    )


def _path(value: str) -> Permission:
    if "{" in value:  # {*} one segment, {**} the rest
        pattern = "/".join(
            "[^/]+" if seg == "{*}" else ".*" if seg == "{**}" else re.escape(seg)
            for seg in value.split("/")
        )
        return Permission(
            url_path=PathMatcher(path=StringMatcher(safe_regex=RegexMatcher(regex=pattern)))
        )
    return Permission(url_path=PathMatcher(path=_string(value)))


def _cidr(value: str) -> CidrRange:
    net = ipaddress.ip_network(value, strict=False)
    return CidrRange(address_prefix=str(net.network_address), prefix_len=net.prefixlen)


def _claim(path: list[str], value: str) -> Principal:
    """A JWT claim: a string equal to `value`, or a list containing it."""
    segments = [MetadataMatcherPathSegment(key=k) for k in ["payload", *path]]
    string = _string(value)
    return Principal(
        or_ids=PrincipalSet(
            ids=[
                Principal(
                    sourced_metadata=SourcedMetadata(
                        metadata_matcher=MetadataMatcher(
                            filter=JWT_FILTER,
                            path=segments,
                            value=ValueMatcher(string_match=string),
                        )
                    )
                ),
                Principal(
                    sourced_metadata=SourcedMetadata(
                        metadata_matcher=MetadataMatcher(
                            filter=JWT_FILTER,
                            path=segments,
                            value=ValueMatcher(
                                list_match=ListMatcher(one_of=ValueMatcher(string_match=string))
                            ),
                        )
                    )
                ),
            ]
        )
    )


def _request_principal(value: str) -> Principal:
    """Istio's request principal is `<iss>/<sub>`; the subject follows the last '/'."""
    if value == "*":
        return _claim(["iss"], "*")
    iss, _, sub = value.rpartition("/")
    ids = []
    if iss and iss != "*":
        ids.append(_claim(["iss"], iss))
    if sub and sub != "*":
        ids.append(_claim(["sub"], sub))
    return Principal(and_ids=PrincipalSet(ids=ids)) if ids else _claim(["iss"], "*")


# ---------------------------------------------------------------- combinators


def _any_principal(ids: list[Principal]) -> Principal:
    return ids[0] if len(ids) == 1 else Principal(or_ids=PrincipalSet(ids=ids))


def _all_principals(ids: list[Principal]) -> Principal:
    if not ids:
        return Principal(any=True)
    return ids[0] if len(ids) == 1 else Principal(and_ids=PrincipalSet(ids=ids))


def _any_permission(rules: list[Permission]) -> Permission:
    return rules[0] if len(rules) == 1 else Permission(or_rules=PermissionSet(rules=rules))


def _all_permissions(rules: list[Permission]) -> Permission:
    if not rules:
        return Permission(any=True)
    return rules[0] if len(rules) == 1 else Permission(and_rules=PermissionSet(rules=rules))


def _source(s: ir.AuthzSource) -> Principal:
    checks: list[Principal] = []

    def field(values: tuple[str, ...], negate: bool, build: object) -> None:
        if values:
            one = _any_principal([build(v) for v in values])  # type: ignore[operator]
            checks.append(Principal(not_id=one) if negate else one)

    def peer(matcher: StringMatcher) -> Principal:
        return Principal(authenticated=PrincipalAuthenticated(principal_name=matcher))

    field(s.principals, False, lambda v: peer(_principal_name(v)))
    field(s.not_principals, True, lambda v: peer(_principal_name(v)))
    field(s.namespaces, False, lambda v: peer(_namespace(v)))
    field(s.not_namespaces, True, lambda v: peer(_namespace(v)))
    field(s.trust_domains, False, lambda v: peer(_trust_domain(v)))
    field(s.not_trust_domains, True, lambda v: peer(_trust_domain(v)))
    field(s.ip_blocks, False, lambda v: Principal(direct_remote_ip=_cidr(v)))
    field(s.not_ip_blocks, True, lambda v: Principal(direct_remote_ip=_cidr(v)))
    field(s.remote_ip_blocks, False, lambda v: Principal(remote_ip=_cidr(v)))
    field(s.not_remote_ip_blocks, True, lambda v: Principal(remote_ip=_cidr(v)))
    field(s.request_principals, False, _request_principal)
    field(s.not_request_principals, True, _request_principal)
    return _all_principals(checks)


def _operation(o: ir.AuthzOperation) -> Permission:
    checks: list[Permission] = []

    def field(values: tuple[object, ...], negate: bool, build: object) -> None:
        if values:
            one = _any_permission([build(v) for v in values])  # type: ignore[operator]
            checks.append(Permission(not_rule=one) if negate else one)

    field(o.hosts, False, lambda v: Permission(header=_host(v)))
    field(o.not_hosts, True, lambda v: Permission(header=_host(v)))
    field(o.ports, False, lambda v: Permission(destination_port=v))
    field(o.not_ports, True, lambda v: Permission(destination_port=v))
    field(o.methods, False, _header(":method"))
    field(o.not_methods, True, _header(":method"))
    field(o.paths, False, _path)
    field(o.not_paths, True, _path)
    return _all_permissions(checks)


_BRACKETS = re.compile(r"\[([^\[\]]+)\]")


def _header(name: str) -> Callable[[str], Permission]:
    def build(v: str) -> Permission:
        return Permission(header=HeaderMatcher(name=name.lower(), string_match=_string(v)))

    return build


def _peer(matcher: Callable[[str], StringMatcher]) -> Callable[[str], Principal]:
    def build(v: str) -> Principal:
        return Principal(authenticated=PrincipalAuthenticated(principal_name=matcher(v)))

    return build


def _claim_at(path: list[str]) -> Callable[[str], Principal]:
    def build(v: str) -> Principal:
        return _claim(path, v)

    return build


_ON_REQUEST: dict[str, Callable[[str], Permission]] = {
    "destination.port": lambda v: Permission(destination_port=int(v)),
    "destination.ip": lambda v: Permission(destination_ip=_cidr(v)),
    "connection.sni": lambda v: Permission(requested_server_name=_string(v)),
}
_ON_CALLER: dict[str, Callable[[str], Principal]] = {
    "source.ip": lambda v: Principal(direct_remote_ip=_cidr(v)),
    "remote.ip": lambda v: Principal(remote_ip=_cidr(v)),
    "source.namespace": _peer(_namespace),
    "source.principal": _peer(_principal_name),
    "source.trustDomain": _peer(_trust_domain),
    "request.auth.principal": _request_principal,
    "request.auth.audiences": _claim_at(["aud"]),
    "request.auth.presenter": _claim_at(["azp"]),
}


_FILTER_KEY = "experimental.envoy.filters."


def _filter_metadata(key: str) -> Callable[[str], Permission]:
    """`experimental.envoy.filters.<filter>[<key>]`: a value in a filter's dynamic
    metadata (as Istio: `[v]` is a list containing v, else the string itself)."""
    name, _, rest = key.removeprefix("experimental.").partition("[")
    path = [MetadataMatcherPathSegment(key=rest.removesuffix("]"))]

    def build(v: str) -> Permission:
        value = ValueMatcher(string_match=_string(v))
        if v.startswith("[") and v.endswith("]"):
            one = ValueMatcher(string_match=_string(v[1:-1]))
            value = ValueMatcher(list_match=ListMatcher(one_of=one))
        matcher = MetadataMatcher(filter=name, path=path, value=value)
        return Permission(sourced_metadata=SourcedMetadata(metadata_matcher=matcher))

    return build


def _condition(c: ir.AuthzCondition) -> tuple[list[Permission], list[Principal]]:
    """A `when` condition: on the request (permissions) or on the caller (principals)."""
    key = c.key
    to_perm = _ON_REQUEST.get(key)
    to_principal = _ON_CALLER.get(key)
    if key.startswith("request.headers["):
        to_perm = _header(_BRACKETS.findall(key)[0])
    elif key.startswith("request.auth.claims["):
        to_principal = _claim_at(_BRACKETS.findall(key))
    elif key.startswith(_FILTER_KEY):
        to_perm = _filter_metadata(key)
    perms: list[Permission] = []
    principals: list[Principal] = []
    if to_perm is not None:
        if c.values:
            perms.append(_any_permission([to_perm(v) for v in c.values]))
        if c.not_values:
            perms.append(Permission(not_rule=_any_permission([to_perm(v) for v in c.not_values])))
    elif to_principal is not None:
        if c.values:
            principals.append(_any_principal([to_principal(v) for v in c.values]))
        if c.not_values:
            principals.append(
                Principal(not_id=_any_principal([to_principal(v) for v in c.not_values]))
            )
    return perms, principals


def _policy(rule: ir.AuthzRule) -> Policy:
    perms: list[Permission] = []
    principals: list[Principal] = []
    if rule.operations:
        perms.append(_any_permission([_operation(o) for o in rule.operations]))
    if rule.sources:
        principals.append(_any_principal([_source(s) for s in rule.sources]))
    for c in rule.conditions:
        more_perms, more_principals = _condition(c)
        perms += more_perms
        principals += more_principals
    return Policy(permissions=[_all_permissions(perms)], principals=[_all_principals(principals)])
