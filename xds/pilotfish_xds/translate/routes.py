"""IR virtual hosts and routes → Envoy VirtualHost messages."""

from __future__ import annotations

import functools
from collections import Counter

from envoy_data_plane.envoy.config.core.v3 import (
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
)
from envoy_data_plane.envoy.config.route import v3 as route
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatchAndSubstitute

from .. import ir, wire
from . import filters, telemetry
from .listeners import INBOUND_HEADER
from .matchers import regex, route_match
from .mirrors import mirror_policy
from .retries import NO_RETRIES as _NO_RETRIES
from .retries import retry_policy

_SET = HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
_ADD = HeaderValueOptionHeaderAppendAction.APPEND_IF_EXISTS_OR_ADD


def header_options(ops: ir.HeaderOps) -> list[HeaderValueOption]:
    return list(_header_options(ops))


# Built messages are never mutated, so pieces that recur across virtual hosts and pushes
# (the same match, the same header operation, a cluster's inbound tag) are built once.
_shared = functools.lru_cache(maxsize=1 << 14)


@_shared
def _header_options(ops: ir.HeaderOps) -> tuple[HeaderValueOption, ...]:
    return tuple(
        wire.shared(o)
        for o in [
            HeaderValueOption(header=HeaderValue(key=k, value=v), append_action=_SET)
            for k, v in ops.set
        ]
        + [
            HeaderValueOption(header=HeaderValue(key=k, value=v), append_action=_ADD)
            for k, v in ops.add
        ]
    )


@wire.built_once(1 << 14)
def _hash_policy(h: ir.HashPolicy) -> route.RouteActionHashPolicy:
    if h.kind == "header":
        return route.RouteActionHashPolicy(
            header=route.RouteActionHashPolicyHeader(header_name=h.name)
        )
    if h.kind == "cookie":
        return route.RouteActionHashPolicy(
            cookie=route.RouteActionHashPolicyCookie(
                name=h.name, ttl=h.cookie_ttl, path=h.cookie_path or ""
            )
        )
    if h.kind == "query":
        return route.RouteActionHashPolicy(
            query_parameter=route.RouteActionHashPolicyQueryParameter(name=h.name)
        )
    return route.RouteActionHashPolicy(
        connection_properties=route.RouteActionHashPolicyConnectionProperties(source_ip=True)
    )


@wire.built_once(1 << 14)
def _inbound_tag(cluster: str) -> HeaderValueOption:
    """Local mode: which service port the request is for, since every injected peer
    listens on one inbound port (`outbound|<port>|<subset>|<host>` → `<host>:<port>`)."""
    _, port, _, host = cluster.split("|", 3)
    return HeaderValueOption(
        header=HeaderValue(key=INBOUND_HEADER, value=f"{host}:{port}"), append_action=_SET
    )


def _forward(
    f: ir.Forward, tag_inbound: bool, host_retry: ir.Retry | None = None
) -> route.RouteAction:
    action = route.RouteAction(
        hash_policy=[_hash_policy(h) for h in f.hash_policy],
        timeout=f.traffic.timeout,
    )
    if f.traffic.retry != host_retry:
        # None under a host that retries: an explicit policy with no retries.
        action.retry_policy = (
            retry_policy(f.traffic.retry) if f.traffic.retry is not None else _NO_RETRIES
        )
    if f.traffic.mirrors:
        action.request_mirror_policies = [mirror_policy(m) for m in f.traffic.mirrors]
    # One destination without its own header ops is a plain cluster; Istio does the same.
    only = f.clusters[0]
    plain = not (only.headers.request or only.headers.response or tag_inbound)
    if len(f.clusters) == 1 and plain:
        action.cluster = only.cluster
    else:
        action.weighted_clusters = route.WeightedCluster(
            clusters=[
                route.WeightedClusterClusterWeight(
                    name=wc.cluster,
                    weight=wc.weight,
                    request_headers_to_add=header_options(wc.headers.request)
                    + ([_inbound_tag(wc.cluster)] if tag_inbound else []),
                    request_headers_to_remove=list(wc.headers.request.remove),
                    response_headers_to_add=header_options(wc.headers.response),
                    response_headers_to_remove=list(wc.headers.response.remove),
                )
                for wc in f.clusters
            ]
        )
    if f.rewrite is not None:
        if f.rewrite.prefix is not None:
            action.prefix_rewrite = f.rewrite.prefix
        if f.rewrite.regex is not None:
            pattern, substitution = f.rewrite.regex
            action.regex_rewrite = RegexMatchAndSubstitute(
                pattern=regex(pattern), substitution=substitution
            )
        if f.rewrite.authority is not None:
            action.host_rewrite_literal = f.rewrite.authority
    return action


_REDIRECT_CODES = {
    301: route.RedirectActionRedirectResponseCode.MOVED_PERMANENTLY,
    302: route.RedirectActionRedirectResponseCode.FOUND,
    303: route.RedirectActionRedirectResponseCode.SEE_OTHER,
    307: route.RedirectActionRedirectResponseCode.TEMPORARY_REDIRECT,
    308: route.RedirectActionRedirectResponseCode.PERMANENT_REDIRECT,
}


def _redirect(r: ir.Redirect) -> route.RedirectAction:
    action = route.RedirectAction(response_code=_REDIRECT_CODES.get(r.code, _REDIRECT_CODES[301]))
    if r.path is not None:
        action.path_redirect = r.path
    if r.prefix_rewrite is not None:
        action.prefix_rewrite = r.prefix_rewrite
    if r.authority is not None:
        action.host_redirect = r.authority
    if r.scheme is not None:
        action.scheme_redirect = r.scheme
    if r.port is not None:
        action.port_redirect = r.port
    return action


_route_match = wire.built_once(1 << 14)(route_match)


def envoy_route(
    r: ir.Route, tag_inbound: bool = False, host_retry: ir.Retry | None = None
) -> route.Route:
    """One route. `host_retry` is the retry policy its virtual host carries: a route
    with the same one leaves its own out (Envoy applies the host's)."""
    out = route.Route(
        name=r.name,
        match=_route_match(r.match),
        request_headers_to_add=header_options(r.headers.request),
        request_headers_to_remove=list(r.headers.request.remove),
        response_headers_to_add=header_options(r.headers.response),
        response_headers_to_remove=list(r.headers.response.remove),
    )
    if r.service:
        host, name, namespace = r.service
        wire.attach(out, "metadata", telemetry.service_metadata(host, name, namespace))
    per_filter = filters.per_route(r)
    if per_filter:
        out.typed_per_filter_config = per_filter
    a = r.action
    if isinstance(a, ir.Forward):
        out.route = _forward(a, tag_inbound, host_retry)
    elif isinstance(a, ir.Redirect):
        out.redirect = _redirect(a)
    else:
        out.direct_response = route.DirectResponseAction(
            status=a.status, body=DataSource(inline_string=a.body) if a.body is not None else None
        )
    return out


def virtual_host(
    name: str,
    domains: tuple[str, ...],
    routes: tuple[ir.Route, ...],
    tag_inbound: bool = False,
    outbound: bool = False,
) -> route.VirtualHost:
    """The retry policy most of its routes share goes on the virtual host, once (Envoy
    applies it to every route without its own): the mesh default would otherwise be
    repeated on every route of a large route table. `outbound`: a mesh service's
    host, to which the client's sidecar says who it is (telemetry's peer headers)."""
    retries = Counter(
        r.action.traffic.retry
        for r in routes
        if isinstance(r.action, ir.Forward) and r.action.traffic.retry is not None
    )
    host_retry = retries.most_common(1)[0][0] if retries else None
    return route.VirtualHost(
        name=name,
        domains=list(domains),
        routes=[envoy_route(r, tag_inbound, host_retry) for r in routes],
        retry_policy=retry_policy(host_retry) if host_retry is not None else None,
        request_headers_to_add=list(telemetry.peer_headers()) if outbound else [],
    )
