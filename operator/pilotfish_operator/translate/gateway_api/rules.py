"""Route rules → Istio VirtualService `http` / `tcp` / `tls` entries.

Each match of a rule becomes its own Istio route (the rule's filters and backends
repeated) with its key in the Gateway API's precedence: Exact paths, then longer
prefixes, then method, then more headers, then more query params (gRPC: longer
service, longer method, more headers). `ordered` sorts them stably, so ties keep the
order they are given in (oldest route first, then rule order). A
PathPrefix `/foo` matches `/foo` and `/foo/...` but not `/foobar`: it becomes an exact
`/foo` route and a prefix `/foo/` route (a URLRewrite's ReplacePrefixMatch follows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...api.gateway_api import (
    BackendObjectReference,
    GRPCRoute,
    GRPCRouteMatch,
    HeaderModifier,
    HTTPRouteFilter,
    HTTPRouteMatch,
    KubernetesHTTPRoute,
)
from ...api.gateway_api.routes import GRPCRouteFilter, HTTPRouteRule

BackendFor = Callable[[BackendObjectReference], str | None]
"""A backendRef → its service host, or None (refused; the caller records why)."""
Keyed = list[tuple[tuple[int, ...], dict[str, Any]]]
"""Istio http routes, each with its precedence key (smaller first)."""
_NO_MATCH = (0, -1, 1, 0, 0)
"""A rule without matches matches PathPrefix `/` (the API's default)."""


def ordered(entries: Keyed) -> list[dict[str, Any]]:
    return [e for _, e in sorted(entries, key=lambda t: t[0])]


def _value(kind: str, value: str) -> dict[str, str]:
    return {"regex": value} if kind == "RegularExpression" else {"exact": value}


def _headers(mod: HeaderModifier | None) -> dict[str, Any] | None:
    if mod is None:
        return None
    out: dict[str, Any] = {}
    if mod.set:
        out["set"] = {h.name: h.value for h in mod.set}
    if mod.add:
        out["add"] = {h.name: h.value for h in mod.add}
    if mod.remove:
        out["remove"] = list(mod.remove)
    return out


def _header_filters(filters: Sequence[HTTPRouteFilter]) -> dict[str, Any]:
    out = {}
    for f in filters:
        if f.type == "RequestHeaderModifier":
            out["request"] = _headers(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            out["response"] = _headers(f.response_header_modifier)
    return {k: v for k, v in out.items() if v}


def _destinations(refs: Sequence[Any], backend: BackendFor) -> list[dict[str, Any]]:
    out = []
    for ref in refs:
        host = backend(ref)
        if host is None or not ref.weight:
            continue  # refused (reported), or weight 0: no traffic
        dest: dict[str, Any] = {"destination": {"host": host, "port": {"number": ref.port}}}
        dest["weight"] = ref.weight
        headers = _header_filters(getattr(ref, "filters", ()))
        if headers:
            dest["headers"] = headers
        out.append(dest)
    if len(out) == 1:
        del out[0]["weight"]  # one backend takes everything, whatever its weight
    return out


def _mirrors(filters: Sequence[HTTPRouteFilter], backend: BackendFor) -> list[dict[str, Any]]:
    out = []
    for f in filters:
        if f.type != "RequestMirror" or f.request_mirror is None:
            continue
        m = f.request_mirror
        host = backend(m.backend_ref)
        if host is None:
            continue
        share = 100.0
        if m.percent is not None:
            share = float(m.percent)
        elif m.fraction is not None:
            share = 100.0 * m.fraction.numerator / m.fraction.denominator
        out.append(
            {
                "destination": {"host": host, "port": {"number": m.backend_ref.port}},
                "percentage": {"value": share},
            }
        )
    return out


def _action(
    filters: Sequence[HTTPRouteFilter], refs: Sequence[Any], backend: BackendFor
) -> dict[str, Any]:
    """What a rule does (without its match): redirect, or forward with rewrites."""
    out: dict[str, Any] = {}
    headers = _header_filters(filters)
    if headers:
        out["headers"] = headers
    redirect = next((f.request_redirect for f in filters if f.request_redirect), None)
    if redirect is not None:
        r: dict[str, Any] = {"redirectCode": redirect.status_code}
        if redirect.scheme:
            r["scheme"] = redirect.scheme
        if redirect.hostname:
            r["authority"] = redirect.hostname
        if redirect.port:
            r["port"] = redirect.port
        if redirect.path is not None:
            r["uri"] = redirect.path.replace_full_path or redirect.path.replace_prefix_match
        out["redirect"] = r
        return out
    route = _destinations(refs, backend)
    if not route:
        # No usable backend: the Gateway API answers 500.
        out["directResponse"] = {"status": 500}
        return out
    out["route"] = route
    mirrors = _mirrors(filters, backend)
    if mirrors:
        out["mirrors"] = mirrors
    return out


def _rewrite(filters: Sequence[HTTPRouteFilter], matched_prefix: str | None) -> dict[str, Any]:
    rw = next((f.url_rewrite for f in filters if f.url_rewrite), None)
    if rw is None:
        return {}
    out: dict[str, Any] = {}
    if rw.hostname:
        out["authority"] = rw.hostname
    if rw.path is not None and rw.path.type == "ReplaceFullPath":
        out["uriRegexRewrite"] = {"match": "^/.*$", "rewrite": rw.path.replace_full_path}
    elif rw.path is not None and rw.path.replace_prefix_match is not None:
        new = rw.path.replace_prefix_match
        if matched_prefix is not None and matched_prefix.endswith("/") and not new.endswith("/"):
            new += "/"  # `/foo/` of `/foo/x` → `/bar/` keeps the separator
        out["uri"] = new
    return {"rewrite": out} if out else {}


def _path_matches(m: HTTPRouteMatch) -> list[tuple[dict[str, Any], str | None]]:
    """Istio `uri` matches for one Gateway API match, with the prefix each strips."""
    path = m.path
    if path is None:
        return [({}, None)]
    if path.type == "Exact":
        return [({"uri": {"exact": path.value}}, None)]
    if path.type == "RegularExpression":
        return [({"uri": {"regex": path.value}}, None)]
    value = path.value.rstrip("/") or "/"
    if value == "/":
        return [({"uri": {"prefix": "/"}}, "/")]
    return [({"uri": {"exact": value}}, value), ({"uri": {"prefix": value + "/"}}, value + "/")]


def _precedence(m: HTTPRouteMatch) -> tuple[int, int, int, int, int]:
    path = m.path
    exact = 1 if path is not None and path.type == "Exact" else 0
    length = len(path.value) if path is not None and path.type != "RegularExpression" else 0
    return (-exact, -length, 0 if m.method else 1, -len(m.headers), -len(m.query_params))


def _scoped(match: dict[str, Any], port: int | None) -> dict[str, Any]:
    return {**match, "port": port} if port is not None else match


def http_rules(route: KubernetesHTTPRoute, backend: BackendFor, port: int | None) -> Keyed:
    entries: Keyed = []
    for rule in route.spec.rules:
        action = _action(rule.filters, rule.backend_refs, backend)
        action |= _timeouts(rule)
        for m in rule.matches:
            for uri, prefix in _path_matches(m):
                match: dict[str, Any] = dict(uri)
                if m.headers:
                    match["headers"] = {h.name.lower(): _value(h.type, h.value) for h in m.headers}
                if m.query_params:
                    match["queryParams"] = {q.name: _value(q.type, q.value) for q in m.query_params}
                if m.method:
                    match["method"] = {"exact": m.method}
                entry = {**action, **_rewrite(rule.filters, prefix)}
                entry["match"] = [_scoped(match, port)]
                entries.append((_precedence(m), entry))
        if not rule.matches:
            entries.append((_NO_MATCH, {**action, **({"match": [{"port": port}]} if port else {})}))
    return entries


def _timeouts(rule: HTTPRouteRule) -> dict[str, Any]:
    t = rule.timeouts
    if t is None:
        return {}
    out: dict[str, Any] = {}
    if t.request is not None:
        out["timeout"] = t.request
    if t.backend_request is not None:
        out["retries"] = {"attempts": 1, "perTryTimeout": t.backend_request}
    return out


def _grpc_match(m: GRPCRouteMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    method = m.method
    if method is not None:
        if method.type == "Exact" and method.service and method.method:
            out["uri"] = {"exact": f"/{method.service}/{method.method}"}
        elif method.type == "Exact" and method.service:
            out["uri"] = {"prefix": f"/{method.service}/"}
        else:
            service = method.service or "[^/]+"
            name = method.method or "[^/]+"
            if method.type == "Exact":
                service, name = service.replace(".", r"\."), name
            out["uri"] = {"regex": f"/{service}/{name}"}
    if m.headers:
        out["headers"] = {h.name.lower(): _value(h.type, h.value) for h in m.headers}
    return out


def _grpc_precedence(m: GRPCRouteMatch) -> tuple[int, int, int]:
    method = m.method
    service = len(method.service or "") if method is not None else 0
    name = len(method.method or "") if method is not None else 0
    return (-service, -name, -len(m.headers))


def grpc_rules(route: GRPCRoute, backend: BackendFor, port: int | None) -> Keyed:
    out: Keyed = []
    for rule in route.spec.rules:
        filters: Sequence[GRPCRouteFilter] = rule.filters
        action = _action(filters, rule.backend_refs, backend)
        for m in rule.matches:
            out.append((_grpc_precedence(m), {**action, "match": [_scoped(_grpc_match(m), port)]}))
        if not rule.matches:
            out.append(((0, 0, 0), {**action, **({"match": [{"port": port}]} if port else {})}))
    return out


def l4_route(refs: Sequence[Any], backend: BackendFor) -> dict[str, Any] | None:
    route = _destinations(refs, backend)
    return {"route": route} if route else None
