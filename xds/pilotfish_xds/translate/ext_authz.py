"""CUSTOM authorization: Envoy's ext_authz filter asking an external service.

As Istio builds it: a shadow RBAC filter evaluates the CUSTOM policies' rules and
leaves the name of the one that matched in its dynamic metadata; the ext_authz filter
runs only when that name is there, so only the requests the rules select are sent to
the service. The rules are route configuration (an edit applies to the next request);
the provider is the filter's own configuration (a change replaces the listener).
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import (
    ApiVersion,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HeaderValue,
    HttpUri,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    AuthorizationRequest,
    AuthorizationResponse,
    BufferSettings,
    ExtAuthz,
    HttpService,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.type.matcher.v3 import (
    ListStringMatcher,
    MetadataMatcher,
    MetadataMatcherPathSegment,
    StringMatcher,
    ValueMatcher,
)
from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
from envoy_data_plane.google.protobuf import Any

from .. import ir

SHADOW_FILTER = "envoy.filters.http.rbac.custom"
FILTER = "envoy.filters.http.ext_authz"
POLICY_PREFIX = "istio-ext-authz-"
"""Every CUSTOM rule's name in the shadow RBAC starts with it."""
STAT_PREFIX = "istio_ext_authz_"
"""The shadow RBAC's metadata key is `<this>shadow_effective_policy_id`."""
_METADATA_NAMESPACE = "envoy.filters.http.rbac"
"""Where every RBAC filter instance writes its dynamic metadata, whatever its name."""
DEFAULT_STATUS_ON_ERROR = 403


def provider(policies: tuple[ir.AuthzPolicy, ...]) -> ir.ExtAuthz | None:
    """The workload's one provider (the operator refuses to give it two)."""
    return next((p.provider for p in policies if p.provider is not None), None)


def ext_authz_filter(config: ir.ExtAuthz) -> HttpFilter:
    timeout = config.timeout
    filter_config = ExtAuthz(
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=config.fail_open,
        status_on_error=HttpStatus(
            code=StatusCode(config.status_on_error or DEFAULT_STATUS_ON_ERROR)
        ),
        filter_enabled_metadata=MetadataMatcher(
            filter=_METADATA_NAMESPACE,
            path=[MetadataMatcherPathSegment(key=f"{STAT_PREFIX}shadow_effective_policy_id")],
            value=ValueMatcher(string_match=StringMatcher(prefix=POLICY_PREFIX)),
        ),
    )
    if config.request_headers:
        filter_config.allowed_headers = _exact(config.request_headers)
    if config.body_max_bytes is not None:
        filter_config.with_request_body = BufferSettings(
            max_request_bytes=config.body_max_bytes,
            allow_partial_message=config.body_partial,
            pack_as_bytes=config.body_as_bytes,
        )
    if config.grpc:
        filter_config.grpc_service = GrpcService(
            envoy_grpc=GrpcServiceEnvoyGrpc(
                cluster_name=config.cluster, authority=config.authority
            ),
            timeout=timeout,
        )
    else:
        response = AuthorizationResponse()
        if config.upstream_headers:
            response.allowed_upstream_headers = _exact(config.upstream_headers)
        if config.client_headers_on_deny:
            response.allowed_client_headers = _exact(config.client_headers_on_deny)
        if config.client_headers_on_allow:
            response.allowed_client_headers_on_success = _exact(config.client_headers_on_allow)
        filter_config.http_service = HttpService(
            server_uri=HttpUri(
                uri=f"http://{config.authority}", cluster=config.cluster, timeout=timeout
            ),
            path_prefix=config.path_prefix,
            authorization_request=AuthorizationRequest(
                headers_to_add=[HeaderValue(key=k, value=v) for k, v in config.additional_headers]
            ),
            authorization_response=response,
        )
    return HttpFilter(name=FILTER, typed_config=Any.pack(filter_config))


def _exact(names: tuple[str, ...]) -> ListStringMatcher:
    return ListStringMatcher(patterns=[StringMatcher(exact=n, ignore_case=True) for n in names])
