"""The webhooks' serving certificate: generated and rotated by the operator, or from files.

Generated: a CA and a leaf for the webhook Service, kept in one Secret that every replica
shares, the CA patched into both webhook configurations as `caBundle`. Renewal happens when a
third of a certificate's lifetime is left. A renewed CA is trusted next to the previous one
until that expires, so a replica still serving an older leaf is never refused. Replicas race
on the Secret with its resourceVersion; the loser adopts the winner's certificate.

From files (`--cert-dir`, e.g. a cert-manager Secret mounted): `tls.crt` and `tls.key`,
re-read when they change; cert-manager's CA injector owns `caBundle` then.

Key material never reaches a log line: only serial numbers and expiry dates do.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

WebhookKind = Literal["mutating", "validating"]
SECRET = "pilotfish-webhook-certs"
NAMESPACE = "pilotfish-system"
SERVICE = "pilotfish"
WEBHOOKS: tuple[tuple[WebhookKind, str], ...] = (
    ("mutating", "pilotfish-sidecar-injector"),
    ("validating", "pilotfish-validator"),
)
CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
# Clock skew between nodes: certificates are valid from a little before they are made.
_BACKDATE = datetime.timedelta(minutes=5)

# Secret keys: the kubernetes.io/tls pair plus the CA that signs it and the trusted bundle.
CA_CERT, CA_KEY, TLS_CERT, TLS_KEY, BUNDLE = (
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "ca-bundle.crt",
)


class Conflict(Exception):
    """The Secret changed (or appeared) since it was read: another replica wrote it."""


@dataclass(frozen=True)
class StoredSecret:
    data: Mapping[str, bytes] = field(repr=False)
    resource_version: str


class CertStore(Protocol):
    """The few Kubernetes calls certificate management needs (faked in tests)."""

    async def read_secret(self, namespace: str, name: str) -> StoredSecret | None: ...

    async def write_secret(
        self, namespace: str, name: str, data: Mapping[str, bytes], resource_version: str | None
    ) -> None:
        """Create (resource_version None) or replace if unchanged; raise Conflict otherwise."""

    async def patch_ca_bundle(self, kind: WebhookKind, name: str, ca_bundle: bytes) -> bool:
        """Set caBundle on every webhook of the configuration; False if it does not exist."""


@dataclass(frozen=True)
class ServingCert:
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_bundle: bytes
    """PEM CAs a client should trust (empty when the files came without one)."""
    serial: int
    not_after: datetime.datetime


class CertSource(Protocol):
    async def current(self) -> ServingCert:
        """The certificate to serve now, renewed or re-read as needed."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def dns_names(
    service: str = SERVICE, namespace: str = NAMESPACE, domain: str = "cluster.local"
) -> list[str]:
    return [
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{domain}",
        f"{service}.{namespace}",
        service,
    ]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pilotfish"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def new_ca(
    now: datetime.datetime, validity: datetime.timedelta = CA_VALIDITY
) -> tuple[bytes, bytes]:
    key = _key()
    subject = _name("pilotfish webhook CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _key_pem(key)


def new_leaf(
    ca_pem: bytes,
    ca_key_pem: bytes,
    names: Sequence[str],
    now: datetime.datetime,
    validity: datetime.timedelta = LEAF_VALIDITY,
) -> tuple[bytes, bytes]:
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = _key()
    # Never outlive the CA that signs it.
    not_after = min(now + validity, ca.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(cert), _key_pem(key)


def _due(cert: x509.Certificate, now: datetime.datetime) -> bool:
    """A third or less of its lifetime left (or already expired)."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= end - (end - start) / 3


def _bundle(pems: Sequence[bytes], now: datetime.datetime) -> bytes:
    """The distinct, unexpired CAs among `pems` (each may hold several), newest first."""
    seen: dict[bytes, x509.Certificate] = {}
    for pem in pems:
        for cert in x509.load_pem_x509_certificates(pem) if pem.strip() else ():
            if cert.not_valid_after_utc > now:
                seen.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return b"".join(_pem(c) for c in seen.values())


@dataclass
class SecretCerts:
    """Certificates generated by the operator and kept in a Secret (the default)."""

    store: CertStore
    namespace: str = NAMESPACE
    secret: str = SECRET
    names: Sequence[str] = field(default_factory=dns_names)
    webhooks: Sequence[tuple[WebhookKind, str]] = WEBHOOKS
    now: Callable[[], datetime.datetime] = _utcnow
    ca_validity: datetime.timedelta = CA_VALIDITY
    leaf_validity: datetime.timedelta = LEAF_VALIDITY

    async def current(self) -> ServingCert:
        for _ in range(5):
            stored = await self.store.read_secret(self.namespace, self.secret)
            data = dict(stored.data) if stored else {}
            renewed = self._renew(data)
            if renewed is None:
                break
            try:
                await self.store.write_secret(
                    self.namespace,
                    self.secret,
                    renewed,
                    stored.resource_version if stored else None,
                )
            except Conflict:
                log.info("webhook certificate Secret changed meanwhile; using the other replica's")
                continue
            data = renewed
            break
        else:
            raise Conflict(f"Secret {self.namespace}/{self.secret} kept changing under us")
        serving = _serving(data[TLS_CERT], data[TLS_KEY], data[BUNDLE])
        for kind, name in self.webhooks:
            if not await self.store.patch_ca_bundle(kind, name, serving.ca_bundle):
                log.warning("%s webhook configuration %s not found; caBundle not set", kind, name)
        return serving

    def _renew(self, data: dict[str, bytes]) -> dict[str, bytes] | None:
        """New Secret data when something is missing, unreadable or due; else None."""
        now = self.now()
        ca_pem, ca_key = data.get(CA_CERT, b""), data.get(CA_KEY, b"")
        try:
            ca = x509.load_pem_x509_certificate(ca_pem)
            serialization.load_pem_private_key(ca_key, None)
            ca_ok = not _due(ca, now)
        except ValueError:
            ca_ok = False
        if not ca_ok:
            ca_pem, ca_key = new_ca(now, self.ca_validity)
            log.info(
                "webhook CA created, serial %x",
                x509.load_pem_x509_certificate(ca_pem).serial_number,
            )
        if ca_ok and self._leaf_ok(data, ca_pem, now):
            return None
        cert, key = new_leaf(ca_pem, ca_key, self.names, now, self.leaf_validity)
        leaf = x509.load_pem_x509_certificate(cert)
        log.info(
            "webhook certificate issued for %s, serial %x, valid until %s",
            ", ".join(self.names),
            leaf.serial_number,
            leaf.not_valid_after_utc.isoformat(),
        )
        return {
            CA_CERT: ca_pem,
            CA_KEY: ca_key,
            TLS_CERT: cert,
            TLS_KEY: key,
            BUNDLE: _bundle([ca_pem, data.get(BUNDLE, b"")], now),
        }

    def _leaf_ok(self, data: Mapping[str, bytes], ca_pem: bytes, now: datetime.datetime) -> bool:
        try:
            leaf = x509.load_pem_x509_certificate(data[TLS_CERT])
            serialization.load_pem_private_key(data[TLS_KEY], None)
            _bundle([data[BUNDLE]], now)
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            ca = x509.load_pem_x509_certificate(ca_pem)
            leaf.verify_directly_issued_by(ca)
        except (KeyError, ValueError, TypeError, x509.ExtensionNotFound):
            return False
        except Exception:  # cryptography's InvalidSignature: another CA signed it
            return False
        return not _due(leaf, now) and sorted(san.get_values_for_type(x509.DNSName)) == sorted(
            self.names
        )


@dataclass
class FileCerts:
    """Certificates provided as files (cert-manager); re-read when they change."""

    directory: Path
    _seen: tuple[float, float] = (0.0, 0.0)
    _cached: ServingCert | None = None

    async def current(self) -> ServingCert:
        cert, key = self.directory / TLS_CERT, self.directory / TLS_KEY
        stamp = (cert.stat().st_mtime, key.stat().st_mtime)
        if self._cached is None or stamp != self._seen:
            ca = self.directory / CA_CERT
            bundle = ca.read_bytes() if ca.exists() else b""
            self._cached = _serving(cert.read_bytes(), key.read_bytes(), bundle)
            self._seen = stamp
            log.info(
                "webhook certificate loaded from %s, serial %x, valid until %s",
                self.directory,
                self._cached.serial,
                self._cached.not_after.isoformat(),
            )
        return self._cached


def _serving(cert_pem: bytes, key_pem: bytes, bundle: bytes) -> ServingCert:
    leaf = x509.load_pem_x509_certificate(cert_pem)
    return ServingCert(cert_pem, key_pem, bundle, leaf.serial_number, leaf.not_valid_after_utc)
