"""Gateway (networking.istio.io): the ports, protocols, hosts and TLS a gateway
workload (selected by labels, e.g. `istio: ingressgateway`) serves; VirtualServices
bind to it by name in their `gateways`."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal, Self

from annotated_types import Ge, Le, Len
from pydantic import Strict, model_validator

from ..errors import invalid
from ..meta import Bool, IstioModel, IstioResource, Str, StrMap
from .common import NETWORKING_VERSIONS, NonEmptyStr

PROTOCOLS = frozenset(
    {"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS"}
)
"""What a Gateway server may declare (Istio's protocols, upper case; matched without case)."""
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
PortNumber = Annotated[int, Strict(), Ge(0), Le(65535)]

TLSMode = Literal[
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
]
TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class GatewayPort(IstioModel):
    number: PortNumber = 0
    protocol: NonEmptyStr
    name: NonEmptyStr
    target_port: PortNumber | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.protocol.upper() not in PROTOCOLS:
            raise invalid(f"unsupported protocol {self.protocol!r}", "protocol")
        return self


class TLSCertificate(IstioModel):
    server_certificate: Str = ""
    private_key: Str = ""
    ca_certificates: Str = ""


class ServerTLSSettings(IstioModel):
    https_redirect: Bool = False
    mode: TLSMode = "PASSTHROUGH"
    server_certificate: Str = ""
    private_key: Str = ""
    ca_certificates: Str = ""
    ca_crl: Str = ""
    credential_name: Str = ""
    credential_names: tuple[NonEmptyStr, ...] = ()
    subject_alt_names: tuple[NonEmptyStr, ...] = ()
    verify_certificate_spki: tuple[NonEmptyStr, ...] = ()
    verify_certificate_hash: tuple[NonEmptyStr, ...] = ()
    min_protocol_version: TLSVersion = "TLS_AUTO"
    max_protocol_version: TLSVersion = "TLS_AUTO"
    cipher_suites: tuple[NonEmptyStr, ...] = ()
    # caCertCredentialName is accepted; a server using it is left out with a warning.
    tls_certificates: Annotated[tuple[TLSCertificate, ...], Len(0, 2)] = ()
    ca_cert_credential_name: Str = ""
    insecure_skip_verify: Bool | None = None  # MUTUAL: an unverified client still passes

    @model_validator(mode="after")
    def _check(self) -> Self:
        # Istio's rules: where the certificate comes from must be said exactly once.
        credential = bool(self.credential_name or self.credential_names or self.tls_certificates)
        if self.credential_name and self.credential_names:
            raise invalid("only one of credentialName and credentialNames", "credentialNames")
        files = bool(self.server_certificate or self.private_key)
        if self.tls_certificates and (self.credential_name or self.credential_names or files):
            raise invalid(
                "tlsCertificates replaces credentialName(s), serverCertificate and privateKey",
                "tlsCertificates",
            )
        for i, cert in enumerate(self.tls_certificates):
            if not (cert.server_certificate and cert.private_key):
                raise invalid("needs serverCertificate and privateKey", "tlsCertificates", i)
        first_ca = self.tls_certificates[0].ca_certificates if self.tls_certificates else ""
        mutual = self.mode in ("MUTUAL", "OPTIONAL_MUTUAL")
        if mutual and self.tls_certificates and not (self.ca_certificates or first_ca):
            raise invalid(f"{self.mode} requires caCertificates", "tlsCertificates")
        if self.mode == "ISTIO_MUTUAL":
            if credential or files or self.ca_certificates:
                raise invalid(
                    "ISTIO_MUTUAL uses the mesh's certificates: no credentialName, "
                    "serverCertificate, privateKey or caCertificates",
                    "mode",
                )
        elif self.mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not credential:
            if not self.server_certificate:
                raise invalid(f"{self.mode} requires credentialName or serverCertificate", "mode")
            if not self.private_key:
                raise invalid(f"{self.mode} requires credentialName or privateKey", "mode")
            if self.mode != "SIMPLE" and not self.ca_certificates:
                raise invalid(f"{self.mode} requires credentialName or caCertificates", "mode")
        order = ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
        low, high = order.index(self.min_protocol_version), order.index(self.max_protocol_version)
        if low and high and low > high:
            raise invalid("minProtocolVersion is above maxProtocolVersion", "minProtocolVersion")
        return self


def _check_host(host: str) -> str | None:
    """Why a server host (`[namespace/]dnsName`) is invalid, as Istio checks it."""
    namespace, _, name = host.rpartition("/")
    if "/" in namespace:
        return "at most one '/' (namespace/host)"
    if namespace == "" and "/" in host:
        return "the namespace before '/' is empty"
    if namespace not in ("", "*", ".") and not _dns_label(namespace):
        return f"namespace {namespace!r} is not a valid namespace name"
    if name == "*":
        return None
    labels = name.removeprefix("*.").split(".")
    if "*" in name.removeprefix("*."):
        return "a wildcard is allowed only as the whole first label ('*.example.com')"
    if not all(_dns_label(label, upper=True) for label in labels):
        return f"{name!r} is not a DNS name"
    return None


def _dns_label(label: str, upper: bool = False) -> bool:
    text = label.lower() if upper else label
    return (
        0 < len(text) <= 63
        and text[0].isalnum()
        and text[-1].isalnum()
        and all(c.isalnum() or c == "-" for c in text)
        and text.isascii()
        and (upper or text == text.lower())
    )


class Server(IstioModel):
    port: GatewayPort
    bind: Str = ""
    hosts: tuple[NonEmptyStr, ...]
    tls: ServerTLSSettings | None = None
    default_endpoint: Str = ""
    name: Str = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.hosts:
            raise invalid("at least one host is required", "hosts")
        for i, host in enumerate(self.hosts):
            why = _check_host(host)
            if why:
                raise invalid(why, "hosts", i)
        if self.port.number == 0 and not self.bind.startswith("unix://"):
            raise invalid(
                "a port number is required (0 only with a unix:// bind)", "port", "number"
            )
        if self.bind and not self.bind.startswith("unix://"):
            try:
                ipaddress.ip_address(self.bind)
            except ValueError:
                raise invalid("bind must be an IP address or unix://path", "bind") from None
        protocol = self.port.protocol.upper()
        tls = self.tls
        if protocol in TLS_PROTOCOLS and tls is None:
            raise invalid(f"a {protocol} server requires tls settings", "tls")
        if (
            tls is not None
            and protocol == "HTTPS"
            and tls.mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH")
        ):
            raise invalid(f"{tls.mode} is for protocol TLS, not HTTPS", "tls", "mode")
        return self


class GatewaySpec(IstioModel):
    servers: tuple[Server, ...] = ()
    selector: StrMap = {}

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.servers:
            raise invalid("at least one server is required", "servers")
        names: set[str] = set()
        for i, server in enumerate(self.servers):
            if server.name and server.name in names:
                raise invalid(f"server name {server.name!r} is used twice", "servers", i, "name")
            names.add(server.name)
        return self


class Gateway(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "Gateway"

    spec: GatewaySpec
