"""A gateway server's TLS termination: its certificate by SDS (the Gateway's
`credentialName`, pushed over the same ADS stream, so a rotated Secret replaces the
certificate without touching the listener), MUTUAL's client CA, protocol versions and
cipher suites. HTTP/2 and HTTP/1.1 are offered by ALPN."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import TransportSocket
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    CommonTlsContextCombinedCertificateValidationContext,
    DownstreamTlsContext,
    SdsSecretConfig,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsParameters,
    TlsParametersTlsProtocol,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any

from .. import ir
from .config_source import ads
from .mtls import TLS_SOCKET

_VERSIONS = {
    "": TlsParametersTlsProtocol.TLS_AUTO,
    "TLS_AUTO": TlsParametersTlsProtocol.TLS_AUTO,
    "TLSV1_0": TlsParametersTlsProtocol.TLSv1_0,
    "TLSV1_1": TlsParametersTlsProtocol.TLSv1_1,
    "TLSV1_2": TlsParametersTlsProtocol.TLSv1_2,
    "TLSV1_3": TlsParametersTlsProtocol.TLSv1_3,
}


def downstream_socket(tls: ir.ServerTls) -> TransportSocket:
    context = CommonTlsContext(
        tls_certificate_sds_secret_configs=[SdsSecretConfig(name=tls.credential, sds_config=ads())],
        alpn_protocols=["h2", "http/1.1"],
        tls_params=TlsParameters(
            tls_minimum_protocol_version=_VERSIONS[tls.min_version],
            tls_maximum_protocol_version=_VERSIONS[tls.max_version],
            cipher_suites=list(tls.cipher_suites),
        ),
    )
    if tls.mode != "SIMPLE":
        context.combined_validation_context = CommonTlsContextCombinedCertificateValidationContext(
            default_validation_context=CertificateValidationContext(
                match_typed_subject_alt_names=[
                    SubjectAltNameMatcher(san_type=san_type, matcher=StringMatcher(exact=name))
                    for name in tls.subject_alt_names
                    for san_type in (
                        SubjectAltNameMatcherSanType.DNS,
                        SubjectAltNameMatcherSanType.URI,
                    )
                ]
            ),
            validation_context_sds_secret_config=SdsSecretConfig(
                name=f"{tls.credential}-cacert", sds_config=ads()
            ),
        )
    downstream = DownstreamTlsContext(
        common_tls_context=context, require_client_certificate=tls.mode == "MUTUAL"
    )
    return TransportSocket(name=TLS_SOCKET, typed_config=Any.pack(downstream))
