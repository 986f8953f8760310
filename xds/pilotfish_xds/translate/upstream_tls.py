"""TLS to a non-mesh upstream (DestinationRule `tls` SIMPLE / MUTUAL): the cluster's
transport socket, with the CA, client certificate and key read by Envoy from files."""

from __future__ import annotations

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import DataSource, TransportSocket
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsCertificate,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire


def apply(out: cluster.Cluster, tls: ir.UpstreamTls | None) -> None:
    if tls is not None:
        out.transport_socket = _socket(tls)


@wire.built_once(256)
def _socket(t: ir.UpstreamTls) -> TransportSocket:
    validation = None
    if t.ca_file is not None:
        validation = CertificateValidationContext(
            trusted_ca=DataSource(filename=t.ca_file),
            crl=DataSource(filename=t.crl_file) if t.crl_file else None,
            match_typed_subject_alt_names=[
                SubjectAltNameMatcher(
                    san_type=SubjectAltNameMatcherSanType.DNS,
                    matcher=StringMatcher(exact=name),
                )
                for name in t.subject_alt_names
            ],
        )
    certificates = []
    if t.cert_file and t.key_file:
        certificates.append(
            TlsCertificate(
                certificate_chain=DataSource(filename=t.cert_file),
                private_key=DataSource(filename=t.key_file),
            )
        )
    context = UpstreamTlsContext(
        common_tls_context=CommonTlsContext(
            tls_certificates=certificates, validation_context=validation
        ),
        sni=t.sni or "",
    )
    return TransportSocket(name="envoy.transport_sockets.tls", typed_config=Any.pack(context))
