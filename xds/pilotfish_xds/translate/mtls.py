"""Mesh mutual TLS: the workload's certificate and the mesh roots as SDS secrets, the
client side (auto mTLS to endpoints that have a sidecar) and the server side
(PeerAuthentication: STRICT, PERMISSIVE or DISABLE on the inbound listener).

Secrets travel over the same ADS stream as the rest (Istio's names: `default` for the
workload's certificate and key, `ROOTCA` for the roots), so the private key is in one
message to one proxy and nowhere else. A proxy without secrets (none issued) gets
no TLS at all: nothing would answer its SDS requests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import DataSource, TransportSocket
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, FilterChainMatch
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    CommonTlsContextCombinedCertificateValidationContext,
    DownstreamTlsContext,
    SdsSecretConfig,
    Secret,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsCertificate,
    UpstreamTlsContext,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any, Struct, Value

from .. import ir, wire
from .config_source import ads

CERTIFICATE = "default"
ROOTS = "ROOTCA"
TLS_SOCKET = "envoy.transport_sockets.tls"
MATCH_KEY = "envoy.transport_socket_match"
"""Endpoint metadata a cluster's transport socket matches pick on."""


@dataclass(frozen=True)
class Credential:
    """A gateway server's own certificate (its `credentialName`), served by SDS as
    `name`; `ca_pem`: the client CA of MUTUAL servers (served as `<name>-cacert`)."""

    name: str
    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes = b""


@dataclass(frozen=True)
class WorkloadSecrets:
    """What a proxy holds: its certificate chain (leaf first) and key, and the roots;
    a gateway also its servers' credentials."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    roots_pem: bytes
    credentials: tuple[Credential, ...] = ()


def credential_secret(c: Credential) -> Secret:
    return Secret(
        name=c.name,
        tls_certificate=TlsCertificate(
            certificate_chain=DataSource(inline_bytes=c.chain_pem),
            private_key=DataSource(inline_bytes=c.key_pem),
        ),
    )


def credential_ca_secret(c: Credential) -> Secret:
    return Secret(
        name=f"{c.name}-cacert",
        validation_context=CertificateValidationContext(
            trusted_ca=DataSource(inline_bytes=c.ca_pem)
        ),
    )


def certificate_secret(s: WorkloadSecrets) -> Secret:
    return Secret(
        name=CERTIFICATE,
        tls_certificate=TlsCertificate(
            certificate_chain=DataSource(inline_bytes=s.chain_pem),
            private_key=DataSource(inline_bytes=s.key_pem),
        ),
    )


def roots_secret(roots_pem: bytes) -> Secret:
    return Secret(
        name=ROOTS,
        validation_context=CertificateValidationContext(
            trusted_ca=DataSource(inline_bytes=roots_pem)
        ),
    )


_SDS_CERT = wire.shared(SdsSecretConfig(name=CERTIFICATE, sds_config=ads()))
_SDS_ROOTS = wire.shared(SdsSecretConfig(name=ROOTS, sds_config=ads()))


def _context(identities: tuple[str, ...]) -> CommonTlsContext:
    """Our certificate; the peer's must chain to the roots and, when `identities` are
    given, carry one of them as its URI SAN."""
    return CommonTlsContext(
        tls_certificate_sds_secret_configs=[_SDS_CERT],
        combined_validation_context=CommonTlsContextCombinedCertificateValidationContext(
            default_validation_context=CertificateValidationContext(
                match_typed_subject_alt_names=[
                    SubjectAltNameMatcher(
                        san_type=SubjectAltNameMatcherSanType.URI,
                        matcher=StringMatcher(exact=identity),
                    )
                    for identity in identities
                ]
            ),
            validation_context_sds_secret_config=_SDS_ROOTS,
        ),
    )


_UPSTREAM_TLS_URL = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)
_COMMON = wire.field_number(UpstreamTlsContext, "common_tls_context")
_SNI = wire.field_number(UpstreamTlsContext, "sni")


@functools.lru_cache(maxsize=4096)
def _common_bytes(identities: tuple[str, ...]) -> bytes:
    """Shared by every cluster of the same workloads (most services have one identity)."""
    return wire.length_delimited(_COMMON, wire.encode(_context(identities)))


def client_socket(identities: tuple[str, ...], sni: str) -> TransportSocket:
    """Every mesh cluster has its own (its SNI differs), so the context's bytes are put
    together rather than built as messages: at 10,000 services building them cost
    more than a third of a full push."""
    context = _common_bytes(identities) + wire.length_delimited(_SNI, sni.encode())
    return TransportSocket(
        name=TLS_SOCKET, typed_config=Any(type_url=_UPSTREAM_TLS_URL, value=context)
    )


@wire.built_once(16)
def server_socket() -> TransportSocket:
    context = DownstreamTlsContext(common_tls_context=_context(()), require_client_certificate=True)
    return TransportSocket(name=TLS_SOCKET, typed_config=Any.pack(context))


def sni(c: ir.Cluster) -> str:
    """Istio's SNI for mesh mTLS: outbound_.<port>_.<subset>_.<host>. TCP and TLS
    ports leave the subset out: in local mode the server's sidecar picks the app port
    of such a connection by this name, and it knows services, not subsets."""
    if ir.proxying_of(c.protocol) != "http":
        return inbound_sni(c.hostname, c.port)
    return f"outbound_.{c.port}_.{c.subset}_.{c.hostname}"


def inbound_sni(hostname: str, port: int) -> str:
    return f"outbound_.{port}_._.{hostname}"


ISTIO_MODE = wire.shared(Struct(fields={"tlsMode": Value(string_value="istio")}))


def apply(out: cluster.Cluster, c: ir.Cluster) -> None:
    """Auto mTLS: endpoints marked as having a sidecar get the mTLS socket, others
    plaintext; ISTIO_MUTUAL sends mTLS to every endpoint."""
    if c.policy.mtls == "disable" or c.policy.tls is not None:
        return
    socket = client_socket(c.identities, sni(c))
    if c.policy.mtls == "istio":
        out.transport_socket = socket
        return
    if any(e.mtls for e in c.endpoints):
        out.transport_socket_matches = [
            cluster.ClusterTransportSocketMatch(
                name="tlsMode-istio", match=ISTIO_MODE, transport_socket=socket
            )
        ]


"""An mTLS endpoint's LbEndpoint.metadata, encoded once."""


def inbound_chains(
    mode: ir.PeerMode,
    filters: Callable[[bool], list[Filter]],
    match: FilterChainMatch | None = None,
    name: str = "inbound",
) -> list[FilterChain]:
    """The inbound filter chains for a PeerAuthentication mode: mutual TLS (the peer's
    identity passed to the app in x-forwarded-client-cert), plaintext, or both on the
    same port (PERMISSIVE; the TLS inspector tells them apart). `filters(client_certs)`
    builds a chain's filters; `match` narrows both (a destination port)."""
    base = match.to_dict() if match is not None else {}
    chains = []
    if mode != "DISABLE":
        chains.append(
            FilterChain(
                name=f"{name}|mtls",
                filter_chain_match=FilterChainMatch.from_dict({**base, "transportProtocol": "tls"}),
                transport_socket=server_socket(),
                filters=filters(True),
            )
        )
    if mode != "STRICT":
        chains.append(
            FilterChain(
                name=f"{name}|plaintext",
                filter_chain_match=FilterChainMatch.from_dict(
                    {**base, "transportProtocol": "raw_buffer"}
                ),
                filters=filters(False),
            )
        )
    return chains
