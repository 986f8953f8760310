"""Delegate VirtualServices, merged as Istio merges them.

A route with `delegate` hands its traffic to another VirtualService (one without
hosts): each of the delegate's routes takes the root route's place, its matches
narrowed by the root's (a delegate match that contradicts every root match is
dropped), and every field the delegate leaves unset taken from the root route
(timeout, retries, fault, mirrors, CORS, headers, rewrite). A delegate that does not
exist or is not exported to the root's namespace contributes nothing, as in Istio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..api import Destination, HTTPMatchRequest, HTTPRoute, StringMatch, VirtualService

Lookup = Callable[[str, str], VirtualService | None]
"""(namespace, name) -> the delegate VirtualService, if it exists."""

_INHERITED = (
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirror_percent",
    "mirror_percentage",
    "mirrors",
    "cors_policy",
    "headers",
)


def expand(vs: VirtualService, lookup: Lookup, warnings: list[str]) -> VirtualService:
    """`vs` with its delegating routes replaced by the delegates' merged routes (the
    same object when it delegates nothing, so memoised translation still hits)."""
    if not any(http.delegate is not None for http in vs.spec.http):
        return vs
    routes: list[HTTPRoute] = []
    for http in vs.spec.http:
        if http.delegate is None:
            routes.append(http)
            continue
        namespace = http.delegate.namespace or vs.namespace
        delegate = lookup(namespace, http.delegate.name)
        if delegate is None or delegate.spec.hosts or not _exported(delegate, vs.namespace):
            warnings.append(
                f"VirtualService {vs.namespace}/{vs.name}: delegate {namespace}/"
                f"{http.delegate.name} not found (or has hosts, or is not exported to "
                f"{vs.namespace}); its routes are left out"
            )
            continue
        for inner in delegate.spec.http:
            merged = merge_route(http, _qualified(inner, delegate.namespace))
            if merged is not None:
                routes.append(merged)
    return vs.model_copy(update={"spec": vs.spec.model_copy(update={"http": tuple(routes)})})


def _qualified(http: HTTPRoute, namespace: str) -> HTTPRoute:
    """A delegate's short host names mean services of its own namespace (as in Istio),
    not the root's: `reviews` becomes `reviews.<delegate namespace>`."""

    def qualify(d: Destination) -> Destination:
        return d if "." in d.host else d.model_copy(update={"host": f"{d.host}.{namespace}"})

    update: dict[str, object] = {
        "route": tuple(
            rd.model_copy(update={"destination": qualify(rd.destination)}) for rd in http.route
        ),
        "mirrors": tuple(
            m.model_copy(update={"destination": qualify(m.destination)}) for m in http.mirrors
        ),
    }
    if http.mirror is not None:
        update["mirror"] = qualify(http.mirror)
    return http.model_copy(update=update)


def _exported(vs: VirtualService, namespace: str) -> bool:
    export = vs.spec.export_to or ("*",)
    return "*" in export or namespace in export or ("." in export and vs.namespace == namespace)


def merge_route(root: HTTPRoute, delegate: HTTPRoute) -> HTTPRoute | None:
    matches = merge_matches(root.match, delegate.match)
    if matches is None:
        return None
    update: dict[str, object] = {"match": matches, "delegate": None}
    if root.name:
        update["name"] = f"{root.name}-{delegate.name}" if delegate.name else root.name
    for field in _INHERITED:
        if getattr(delegate, field) in (None, ()):
            update[field] = getattr(root, field)
    return delegate.model_copy(update=update)


def merge_matches(
    root: tuple[HTTPMatchRequest, ...], delegate: tuple[HTTPMatchRequest, ...]
) -> tuple[HTTPMatchRequest, ...] | None:
    """Every delegate match narrowed by every root match it agrees with; None when they
    all conflict."""
    if not root:
        return delegate
    if not delegate:
        return root
    out = [m for r in root for d in delegate if (m := _merge(r, d)) is not None]
    return tuple(out) or None


def _merge(root: HTTPMatchRequest, delegate: HTTPMatchRequest) -> HTTPMatchRequest | None:
    uri = _uri(root.uri, delegate.uri)
    if uri is False:
        return None
    update: dict[str, object] = {"uri": uri}
    for field in ("scheme", "method", "authority", "port", "source_namespace"):
        mine, theirs = getattr(root, field), getattr(delegate, field)
        if mine is not None and theirs is not None and mine != theirs:
            return None
        update[field] = theirs if theirs is not None else mine
    for field in ("headers", "query_params", "without_headers", "source_labels"):
        merged = _union(getattr(root, field), getattr(delegate, field))
        if merged is None:
            return None
        update[field] = merged
    update["ignore_uri_case"] = bool(root.ignore_uri_case or delegate.ignore_uri_case) or None
    return delegate.model_copy(update=update)


def _uri(root: StringMatch | None, delegate: StringMatch | None) -> StringMatch | bool | None:
    """The delegate's uri within the root's, or False when it cannot be."""
    if root is None or delegate is None:
        return delegate if delegate is not None else root
    if root.prefix is not None:
        inner = delegate.prefix if delegate.prefix is not None else delegate.exact
        return delegate if inner is not None and inner.startswith(root.prefix) else False
    return delegate if delegate == root else False


def _union(root: Mapping[str, object], delegate: Mapping[str, object]) -> dict[str, object] | None:
    for key in root.keys() & delegate.keys():
        if root[key] != delegate[key]:
            return None
    return {**root, **delegate}
