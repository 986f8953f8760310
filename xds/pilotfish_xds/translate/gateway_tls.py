"""A gateway server's TLS termination: its certificate by SDS (the Gateway's
`credentialName`, pushed over the same ADS stream, so a rotated Secret replaces the
certificate without touching the listener) or from files in the gateway's filesystem
(`serverCertificate`, `privateKey`, `caCertificates`: Envoy reads them), MUTUAL's client
CA, protocol versions and cipher suites. HTTP/2 and HTTP/1.1 are offered by ALPN.
ISTIO_MUTUAL is mesh mTLS: the gateway's own workload certificate, clients checked
against the mesh roots (a sidecar sending to an egress gateway)."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import DataSource, TransportSocket
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CertificateValidationContextTrustChainVerification,
    CommonTlsContext,
    CommonTlsContextCombinedCertificateValidationContext,
    DownstreamTlsContext,
    SdsSecretConfig,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsCertificate,
    TlsParameters,
    TlsParametersTlsProtocol,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any

from .. import ir
from .config_source import ads
from .mtls import TLS_SOCKET, server_socket

_VERSIONS = {
    "": TlsParametersTlsProtocol.TLS_AUTO,
    "TLS_AUTO": TlsParametersTlsProtocol.TLS_AUTO,
    "TLSV1_0": TlsParametersTlsProtocol.TLSv1_0,
    "TLSV1_1": TlsParametersTlsProtocol.TLSv1_1,
    "TLSV1_2": TlsParametersTlsProtocol.TLSv1_2,
    "TLSV1_3": TlsParametersTlsProtocol.TLSv1_3,
}


def downstream_socket(tls: ir.ServerTls) -> TransportSocket:
    if tls.mode == "ISTIO_MUTUAL":
        return server_socket()
    certificate, key, client_ca = tls.files
    context = CommonTlsContext(
        alpn_protocols=["h2", "http/1.1"],
        tls_params=TlsParameters(
            tls_minimum_protocol_version=_VERSIONS[tls.min_version],
            tls_maximum_protocol_version=_VERSIONS[tls.max_version],
            cipher_suites=list(tls.cipher_suites),
        ),
    )
    if tls.credential:
        context.tls_certificate_sds_secret_configs = [
            SdsSecretConfig(name=tls.credential, sds_config=ads())
        ]
    else:
        context.tls_certificates = [
            TlsCertificate(
                certificate_chain=DataSource(filename=chain),
                private_key=DataSource(filename=private),
            )
            for chain, private in ((certificate, key), *tls.more_certificates)
        ]
    if tls.mode != "SIMPLE":
        names = CertificateValidationContext(
            match_typed_subject_alt_names=[
                SubjectAltNameMatcher(san_type=san_type, matcher=StringMatcher(exact=name))
                for name in tls.subject_alt_names
                for san_type in (
                    SubjectAltNameMatcherSanType.DNS,
                    SubjectAltNameMatcherSanType.URI,
                )
            ]
        )
        if tls.accept_untrusted:
            names.trust_chain_verification = (
                CertificateValidationContextTrustChainVerification.ACCEPT_UNTRUSTED
            )
        if tls.credential:
            context.combined_validation_context = (
                CommonTlsContextCombinedCertificateValidationContext(
                    default_validation_context=names,
                    validation_context_sds_secret_config=SdsSecretConfig(
                        name=f"{tls.credential}-cacert", sds_config=ads()
                    ),
                )
            )
        else:
            names.trusted_ca = DataSource(filename=client_ca)
            context.validation_context = names
    downstream = DownstreamTlsContext(
        common_tls_context=context, require_client_certificate=tls.mode == "MUTUAL"
    )
    return TransportSocket(name=TLS_SOCKET, typed_config=Any.pack(downstream))
