"""IR string/header/query conditions → Envoy matchers."""

from __future__ import annotations

from envoy_data_plane.envoy.config.route.v3 import (
    HeaderMatcher,
    QueryParameterMatcher,
)
from envoy_data_plane.envoy.config.route.v3 import RouteMatch as EnvoyRouteMatch
from envoy_data_plane.envoy.config.route.v3 import (
    RouteMatchTlsContextMatchOptions as TlsContextMatchOptions,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher

from .. import ir


def regex(pattern: str, ignore_case: bool = False) -> RegexMatcher:
    # RE2 has no case-insensitive flag on the matcher; Istio prefixes (?i) too.
    return RegexMatcher(regex=f"(?i){pattern}" if ignore_case else pattern)


def string_matcher(m: ir.StringMatch) -> StringMatcher:
    if m.kind == "exact":
        return StringMatcher(exact=m.value, ignore_case=m.ignore_case)
    if m.kind == "prefix":
        return StringMatcher(prefix=m.value, ignore_case=m.ignore_case)
    return StringMatcher(safe_regex=regex(m.value, m.ignore_case))


def header_matcher(h: ir.HeaderMatch) -> HeaderMatcher:
    if h.match is None:
        return HeaderMatcher(name=h.name, present_match=True, invert_match=h.invert)
    return HeaderMatcher(name=h.name, string_match=string_matcher(h.match), invert_match=h.invert)


def query_matcher(q: ir.QueryMatch) -> QueryParameterMatcher:
    if q.match is None:
        return QueryParameterMatcher(name=q.name, present_match=True)
    return QueryParameterMatcher(name=q.name, string_match=string_matcher(q.match))


def route_match(m: ir.RouteMatch) -> EnvoyRouteMatch:
    out = _route_match(m)
    if m.peer_tls is not None:
        # Mutual TLS required (a validated peer certificate) or refused (none).
        out.tls_context = TlsContextMatchOptions(
            presented=m.peer_tls, validated=True if m.peer_tls else None
        )
    return out


def _route_match(m: ir.RouteMatch) -> EnvoyRouteMatch:
    headers = [header_matcher(h) for h in m.headers]
    query = [query_matcher(q) for q in m.query]
    path = m.path
    if path is None:
        return EnvoyRouteMatch(prefix="/", headers=headers, query_parameters=query)
    # Leave the field unset unless it changes Envoy's default (case-sensitive).
    case_sensitive = False if path.ignore_case else None
    if path.kind == "exact":
        return EnvoyRouteMatch(
            path=path.value, case_sensitive=case_sensitive, headers=headers, query_parameters=query
        )
    if path.kind == "prefix":
        return EnvoyRouteMatch(
            prefix=path.value,
            case_sensitive=case_sensitive,
            headers=headers,
            query_parameters=query,
        )
    return EnvoyRouteMatch(
        safe_regex=regex(path.value, path.ignore_case), headers=headers, query_parameters=query
    )
