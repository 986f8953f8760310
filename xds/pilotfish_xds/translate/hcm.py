"""The one HTTP connection manager every listener uses, whatever its layout."""

from __future__ import annotations

import functools

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.listener.v3 import Filter
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpConnectionManagerForwardClientCertDetails,
    HttpConnectionManagerSetCurrentClientCertDetails,
    HttpConnectionManagerTracing,
    HttpFilter,
    Rds,
)
from envoy_data_plane.google.protobuf import Any

from .. import wire
from . import filters
from .config_source import ads

HCM = "envoy.filters.network.http_connection_manager"
_PEER_IDENTITY = wire.shared(HttpConnectionManagerSetCurrentClientCertDetails(uri=True))


@functools.cache
def _chain() -> tuple[object, ...]:
    # Built messages are never mutated: the chain is built once and shared.
    return tuple(filters.chain())


def http_connection_manager(
    stat_prefix: str,
    *,
    rds: str | None = None,
    route_config: RouteConfiguration | None = None,
    client_certs: bool = False,
    first: tuple[HttpFilter, ...] = (),
    access_log: tuple[AccessLog, ...] = (),
    tracing: HttpConnectionManagerTracing | None = None,
) -> Filter:
    """Routes from RDS `rds`, or inline `route_config`; the chain from `filters`.
    `client_certs`: the connection is mutual TLS, so the app is told the peer's identity
    (x-forwarded-client-cert, set from the certificate; never trusted from the client);
    otherwise any such header is removed. `first`: filters of this listener alone that
    run before the shared chain (a workload's authorization). `tracing`: see
    translate/tracing.py."""
    hcm = HttpConnectionManager(
        codec_type=HttpConnectionManagerCodecType.AUTO,
        stat_prefix=stat_prefix,
        http_filters=[*first, *_chain()],  # type: ignore[list-item]
        access_log=list(access_log),
    )
    if tracing is not None:
        hcm.tracing = tracing
    if client_certs:
        hcm.forward_client_cert_details = HttpConnectionManagerForwardClientCertDetails.SANITIZE_SET
        hcm.set_current_client_cert_details = _PEER_IDENTITY
    if rds is not None:
        hcm.rds = Rds(config_source=ads(), route_config_name=rds)
    else:
        hcm.route_config = route_config
    return Filter(name=HCM, typed_config=Any.pack(hcm))
