"""RequestAuthentication → Envoy's JWT filter on a workload's inbound side.

Every rule is a provider; a request must satisfy one of them or carry no token at
all (Istio: an invalid token is refused with 401, a missing one passes and
AuthorizationPolicy decides). A verified token's claims stay in the filter's
metadata under `payload`, where AuthorizationPolicy's `requestPrincipals` and
`request.auth.*` match them (`authz.JWT_FILTER`).

Keys given inline (`jwks`) are sent as they are; a `jwksUri` is fetched by the
sidecar itself through a cluster of its own (`jwks|<host>:<port>`).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import DataSource, HttpUri, TransportSocket
from envoy_data_plane.envoy.config.route.v3 import RouteMatch
from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
    JwtAuthentication,
    JwtClaimToHeader,
    JwtHeader,
    JwtProvider,
    JwtProviderNormalizePayload,
    JwtRequirement,
    JwtRequirementOrList,
    RemoteJwks,
    RequirementRule,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    UpstreamTlsContext,
)
from envoy_data_plane.google.protobuf import Any, Empty

from .. import ir
from .authz import JWT_FILTER
from .clusters import single_host_cluster

SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
"""Where the sidecar finds public CAs to verify an https JWKS server (Debian's and
the Envoy image's path)."""


def _jwks_target(uri: str) -> tuple[str, int, bool]:
    parts = urlsplit(uri)
    tls = parts.scheme == "https"
    return parts.hostname or "", parts.port or (443 if tls else 80), tls


def jwks_cluster_name(uri: str) -> str:
    host, port, _ = _jwks_target(uri)
    return f"jwks|{host}:{port}"


def jwks_uris(rules: tuple[ir.JwtRule, ...]) -> list[str]:
    """The JWKS servers the rules name, one per cluster."""
    seen = {jwks_cluster_name(r.jwks_uri): r.jwks_uri for r in rules if r.jwks_uri is not None}
    return [seen[name] for name in sorted(seen)]


def jwks_cluster(uri: str) -> cluster.Cluster:
    """A DNS cluster to the JWKS server of `uri` (TLS verified with public CAs)."""
    name = jwks_cluster_name(uri)
    host, port, tls = _jwks_target(uri)
    c = single_host_cluster(
        name, host, port, cluster.ClusterDiscoveryType.LOGICAL_DNS, timedelta(seconds=5)
    )
    if tls:
        context = UpstreamTlsContext(
            common_tls_context=CommonTlsContext(
                validation_context=CertificateValidationContext(
                    trusted_ca=DataSource(filename=SYSTEM_ROOTS)
                )
            ),
            sni=host,
        )
        c.transport_socket = TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=Any.pack(context)
        )
    return c


def _provider(r: ir.JwtRule) -> JwtProvider:
    p = JwtProvider(
        issuer=r.issuer,
        audiences=list(r.audiences),
        from_headers=[JwtHeader(name=n, value_prefix=prefix) for n, prefix in r.from_headers],
        from_params=list(r.from_params),
        from_cookies=list(r.from_cookies),
        forward=r.forward,
        forward_payload_header=r.payload_header or "",
        claim_to_headers=[
            JwtClaimToHeader(header_name=h, claim_name=c) for h, c in r.claim_headers
        ],
        payload_in_metadata="payload",
    )
    if r.space_delimited_claims:
        p.normalize_payload_in_metadata = JwtProviderNormalizePayload(
            space_delimited_claims=list(r.space_delimited_claims)
        )
    if r.jwks is not None:
        p.local_jwks = DataSource(inline_string=r.jwks)
    elif r.jwks_uri is not None:
        p.remote_jwks = RemoteJwks(
            http_uri=HttpUri(
                uri=r.jwks_uri,
                cluster=jwks_cluster_name(r.jwks_uri),
                timeout=r.timeout or timedelta(seconds=5),
            ),
            cache_duration=timedelta(minutes=20),
        )
    return p


def http_filters(rules: tuple[ir.JwtRule, ...]) -> list[HttpFilter]:
    if not rules:
        return []
    providers = {f"origin-{i}": _provider(r) for i, r in enumerate(rules)}
    anyone = [JwtRequirement(provider_name=name) for name in providers]
    requirement = JwtRequirement(
        requires_any=JwtRequirementOrList(
            requirements=[*anyone, JwtRequirement(allow_missing=Empty())]
        )
    )
    config = JwtAuthentication(
        providers=providers,
        rules=[RequirementRule(match=RouteMatch(prefix="/"), requires=requirement)],
    )
    return [HttpFilter(name=JWT_FILTER, typed_config=Any.pack(config))]
