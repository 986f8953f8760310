"""VirtualService HTTP routes → IR routes for one service port, with Istio's semantics.

Routes keep their order and the first match wins. A route with several match
blocks becomes one Envoy route per block (ORed); fields inside a block are ANDed.
A block that names another port, or no block at all for this port, leaves the
route out of this port's virtual host.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

from pilotfish_xds import ir

from ..api import (
    CorsPolicy,
    Destination,
    HeaderOperations,
    Headers,
    HTTPMatchRequest,
    HTTPRoute,
    StringMatch,
    VirtualService,
)
from . import faults, retries

ClusterFor = Callable[[Destination, int], tuple[str, tuple[ir.HashPolicy, ...]]]
"""(destination, request port) → (cluster name, hash policy of its DestinationRule)."""


def string_match(m: StringMatch | None, ignore_case: bool = False) -> ir.StringMatch | None:
    if m is None:
        return None
    if m.exact is not None:
        return ir.StringMatch("exact", m.exact, ignore_case)
    if m.prefix is not None:
        return ir.StringMatch("prefix", m.prefix, ignore_case)
    if m.regex is not None:
        return ir.StringMatch("regex", m.regex, ignore_case)
    return None  # `{}`: presence


def _match(m: HTTPMatchRequest) -> ir.RouteMatch:
    headers = [ir.HeaderMatch(k.lower(), string_match(v)) for k, v in sorted(m.headers.items())]
    for pseudo, value in (
        (":authority", m.authority),
        (":method", m.method),
        (":scheme", m.scheme),
    ):
        if value is not None:
            headers.append(ir.HeaderMatch(pseudo, string_match(value)))
    headers += [
        ir.HeaderMatch(k.lower(), string_match(v), invert=True)
        for k, v in sorted(m.without_headers.items())
    ]
    source = None
    if m.source_labels or m.source_namespace:
        source = ir.SourceSelector(ir.labels_of(dict(m.source_labels)), m.source_namespace)
    return ir.RouteMatch(
        path=string_match(m.uri, bool(m.ignore_uri_case)),
        headers=tuple(headers),
        query=tuple(ir.QueryMatch(k, string_match(v)) for k, v in sorted(m.query_params.items())),
        source=source,
    )


def header_ops(ops: HeaderOperations | None) -> ir.HeaderOps:
    if ops is None:
        return ir.HeaderOps()
    return ir.HeaderOps(
        set=tuple(sorted(ops.set.items())),
        add=tuple(sorted(ops.add.items())),
        remove=tuple(ops.remove),
    )


def headers(h: Headers | None) -> ir.Headers:
    if h is None:
        return ir.Headers()
    return ir.Headers(request=header_ops(h.request), response=header_ops(h.response))


def _action(http: HTTPRoute, port: int, cluster_for: ClusterFor) -> ir.Action:
    if http.redirect is not None:
        r = http.redirect
        return ir.Redirect(
            path=r.uri,
            prefix_rewrite=r.prefix_rewrite,
            authority=r.authority,
            scheme=r.scheme,
            port=r.port,
            code=r.redirect_code or 301,
        )
    if http.direct_response is not None:
        d = http.direct_response
        body = None
        if d.body is not None:
            if d.body.string is not None:
                body = d.body.string
            elif d.body.bytes is not None:
                raw = d.body.bytes
                body = (base64.b64decode(raw) if isinstance(raw, str) else raw).decode()
        return ir.DirectResponse(d.status, body)
    clusters = []
    hashing: tuple[ir.HashPolicy, ...] = ()
    single = len(http.route) == 1
    for i, rd in enumerate(http.route):
        name, policy = cluster_for(rd.destination, port)
        if i == 0:
            hashing = policy  # Istio hashes by the first destination's rule
        weight = 100 if single and not rd.weight else (rd.weight or 0)
        clusters.append(ir.WeightedCluster(name, weight, headers(rd.headers)))
    rewrite = None
    if http.rewrite is not None:
        rw = http.rewrite
        rx = rw.uri_regex_rewrite
        rewrite = ir.Rewrite(
            prefix=rw.uri,
            regex=(rx.match, rx.rewrite) if rx is not None else None,
            authority=rw.authority,
        )
    # Istio turns Envoy's default 15 s route timeout off unless the route sets one.
    return ir.Forward(
        tuple(c for c in clusters if c.weight > 0) or tuple(clusters),
        rewrite=rewrite,
        hash_policy=hashing,
        traffic=ir.Traffic(
            timeout=http.timeout if http.timeout is not None else timedelta(0),
            retry=retries.retry(http.retries, hashed=bool(hashing)),
            fault=faults.fault(http.fault),
            mirrors=_mirrors(http, port, cluster_for),
            cors=_cors(http.cors_policy),
        ),
    )


def _cors(policy: CorsPolicy | None) -> ir.Cors | None:
    """Istio's corsPolicy; the deprecated `allowOrigin` strings are exact origins."""
    if policy is None:
        return None
    origins = tuple(
        m for m in (string_match(o) for o in policy.allow_origins) if m is not None
    ) or tuple(ir.StringMatch("exact", o) for o in policy.allow_origin)
    return ir.Cors(
        origins=origins,
        methods=policy.allow_methods,
        allow_headers=policy.allow_headers,
        expose_headers=policy.expose_headers,
        max_age=policy.max_age,
        credentials=policy.allow_credentials,
        forward_unmatched_preflights=policy.unmatched_preflights != "IGNORE",
    )


def _mirrors(http: HTTPRoute, port: int, cluster_for: ClusterFor) -> tuple[ir.Mirror, ...]:
    """`mirror` with `mirrorPercentage` (or the older integer `mirrorPercent`; all of
    the traffic when neither is given), or `mirrors` each with its own percentage."""
    if http.mirror is not None:
        if http.mirror_percentage is not None:
            share = round(http.mirror_percentage.value * 10_000)
        elif http.mirror_percent is not None:
            share = http.mirror_percent * 10_000
        else:
            share = 1_000_000
        return (ir.Mirror(cluster_for(http.mirror, port)[0], share),)
    return tuple(
        ir.Mirror(
            cluster_for(m.destination, port)[0],
            round(m.percentage.value * 10_000) if m.percentage is not None else 1_000_000,
        )
        for m in http.mirrors
    )


def gateway_name(ref: str, namespace: str) -> str:
    """A `gateways` entry as `namespace/name` (a bare name is in `namespace`), or `mesh`."""
    return ref if ref == "mesh" or "/" in ref else f"{namespace}/{ref}"


def virtual_service_routes(
    vs: VirtualService, port: int, cluster_for: ClusterFor, gateway: str = "mesh"
) -> tuple[ir.Route, ...]:
    """The routes `vs` gives port `port` of `gateway` (`ns/name`, or `mesh`: sidecars); a
    match block naming other `gateways` or another port is left out."""
    out = []
    for i, http in enumerate(vs.spec.http):
        if http.delegate is not None:
            continue
        action = _action(http, port, cluster_for)
        blocks: list[HTTPMatchRequest | None] = [*http.match] or [None]
        for j, m in enumerate(blocks):
            if m is not None and m.port is not None and m.port != port:
                continue
            named = {gateway_name(g, vs.namespace) for g in m.gateways} if m else set()
            if named and gateway not in named:
                continue
            out.append(
                ir.Route(
                    name=f"{vs.namespace}/{vs.name}/http/{i}/match/{j}",
                    match=_match(m) if m is not None else ir.RouteMatch(),
                    action=action,
                    headers=headers(http.headers),
                )
            )
    return tuple(out)


def default_route(cluster: str, hash_policy: tuple[ir.HashPolicy, ...] = ()) -> ir.Route:
    """A service with no VirtualService: every request to its one cluster."""
    return ir.Route(
        name="default",
        match=ir.RouteMatch(),
        action=ir.Forward(
            (ir.WeightedCluster(cluster, 100),),
            hash_policy=hash_policy,
            traffic=ir.Traffic(
                timeout=timedelta(0), retry=retries.retry(None, hashed=bool(hash_policy))
            ),
        ),
    )
