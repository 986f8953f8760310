"""The mesh CA: signs each workload's short-lived certificate with its SPIFFE identity.

The signer is a self-signed root the control plane generates (kept in the Secret
`pilotfish-ca` in `pilotfish-system`, or only in memory in local mode), or an
intermediate the user plugs in with Istio's `cacerts` Secret layout: `ca-cert.pem`
(the signer), `ca-key.pem`, `cert-chain.pem` (the signer up to, not including, the
root; may be just the signer) and `root-cert.pem` (the roots every workload trusts).
The generated Secret uses the same layout, so moving to a plugged-in CA is a copy.

Keys leave this module only inside `WorkloadCert` (repr hides them) and `to_secret`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import pki

CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT = (
    "ca-cert.pem",
    "ca-key.pem",
    "cert-chain.pem",
    "root-cert.pem",
)
ROOT_VALIDITY = datetime.timedelta(days=3650)
WORKLOAD_TTL = datetime.timedelta(hours=24)


class CAError(ValueError):
    """The plugged-in CA material is unusable; the message says why (never the key)."""


@dataclass(frozen=True)
class WorkloadCert:
    """One workload's certificate: its chain (leaf first), key and the trusted roots."""

    identity: str
    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    roots_pem: bytes
    serial: int
    not_before: datetime.datetime
    not_after: datetime.datetime
    issued: datetime.datetime
    """When it was signed (not_before is earlier, to allow for clock skew)."""

    def renew_at(self, ratio: float = 0.5) -> datetime.datetime:
        """When to replace it: half its lifetime by default (Istio's grace period)."""
        return self.issued + (self.not_after - self.issued) * ratio


@dataclass(frozen=True)
class MeshCA:
    signer_pem: bytes
    signer_key_pem: bytes = field(repr=False)
    chain_pem: bytes
    """Intermediates from the signer up to the root (the signer itself included)."""
    roots_pem: bytes
    """Every root a workload trusts: during a root rotation the new and the old."""
    trust_domain: str = "cluster.local"

    @classmethod
    def self_signed(
        cls, trust_domain: str, now: datetime.datetime, validity: datetime.timedelta = ROOT_VALIDITY
    ) -> MeshCA:
        cert, key = pki.new_ca(now, validity, pki.name("pilotfish mesh root", trust_domain))
        return cls(cert, key, cert, cert, trust_domain)

    @classmethod
    def from_secret(cls, data: Mapping[str, bytes], trust_domain: str) -> MeshCA:
        """Istio's `cacerts` layout (a plugged-in intermediate) or our generated root."""
        missing = [k for k in (CA_CERT, CA_KEY, ROOT_CERT) if not data.get(k)]
        if missing:
            raise CAError(f"missing {', '.join(missing)}")
        try:
            signer = x509.load_pem_x509_certificate(data[CA_CERT])
            key = pki.load_key(data[CA_KEY])
            roots = x509.load_pem_x509_certificates(data[ROOT_CERT])
        except ValueError as exc:
            raise CAError(f"unreadable CA material: {exc}") from None
        if signer.public_key() != key.public_key():
            raise CAError(f"{CA_KEY} is not the key of {CA_CERT}")
        constraints = signer.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise CAError(f"{CA_CERT} is not a CA certificate")
        chain = data.get(CERT_CHAIN) or data[CA_CERT]
        if not _chains_to(signer, x509.load_pem_x509_certificates(chain), roots):
            raise CAError(f"{CA_CERT} does not chain to any certificate in {ROOT_CERT}")
        return cls(data[CA_CERT], data[CA_KEY], chain, data[ROOT_CERT], trust_domain)

    def to_secret(self) -> dict[str, bytes]:
        return {
            CA_CERT: self.signer_pem,
            CA_KEY: self.signer_key_pem,
            CERT_CHAIN: self.chain_pem,
            ROOT_CERT: self.roots_pem,
        }

    def identity(self, namespace: str, service_account: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/{namespace}/sa/{service_account}"

    def issue(
        self, identity: str, now: datetime.datetime, ttl: datetime.timedelta = WORKLOAD_TTL
    ) -> WorkloadCert:
        """A leaf for `identity` (its only SAN, a URI), usable as client and server."""
        if not identity.startswith(f"spiffe://{self.trust_domain}/"):
            raise CAError(f"{identity!r} is not in trust domain {self.trust_domain!r}")
        cert, key = pki.new_leaf(
            self.signer_pem,
            self.signer_key_pem,
            [x509.UniformResourceIdentifier(identity)],
            now,
            ttl,
            usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        leaf = x509.load_pem_x509_certificate(cert)
        # The chain a peer needs to reach a root: the leaf, then every intermediate.
        intermediates = b"" if self.chain_pem == self.roots_pem else self.chain_pem
        return WorkloadCert(
            identity=identity,
            chain_pem=cert + intermediates,
            key_pem=key,
            roots_pem=self.roots_pem,
            serial=leaf.serial_number,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            issued=now,
        )

    def issue_server(
        self, dns_names: list[str], now: datetime.datetime, ttl: datetime.timedelta
    ) -> tuple[bytes, bytes]:
        """A serving certificate for the control plane itself (its xDS port): (chain, key)."""
        cert, key = pki.new_leaf(
            self.signer_pem,
            self.signer_key_pem,
            [x509.DNSName(n) for n in dns_names],
            now,
            ttl,
            subject=pki.name(dns_names[0], self.trust_domain),
        )
        intermediates = b"" if self.chain_pem == self.roots_pem else self.chain_pem
        return cert + intermediates, key

    def rotated(
        self, now: datetime.datetime, validity: datetime.timedelta = ROOT_VALIDITY
    ) -> MeshCA:
        """A new self-signed root that signs from now on; the old roots stay trusted
        (until they expire or `retire_old_roots`), so peers holding leaves of either
        keep accepting each other while workloads move to the new one."""
        return MeshCA.self_signed(self.trust_domain, now, validity).also_trusting(
            self.roots_pem, now
        )

    def also_trusting(self, roots_pem: bytes, now: datetime.datetime) -> MeshCA:
        """This signer, trusting `roots_pem` (unexpired) next to its own roots: how a
        replaced CA keeps the workloads holding leaves of the old one talking."""
        roots = pki.bundle([self.roots_pem, roots_pem], now)
        return MeshCA(
            self.signer_pem, self.signer_key_pem, self.chain_pem, roots, self.trust_domain
        )

    def retire_old_roots(self, now: datetime.datetime) -> MeshCA:
        """Trust only the root the signer chains to (every workload has moved)."""
        signer = x509.load_pem_x509_certificate(self.signer_pem)
        chain = x509.load_pem_x509_certificates(self.chain_pem)
        keep = [
            r
            for r in x509.load_pem_x509_certificates(self.roots_pem)
            if _chains_to(signer, chain, [r])
        ]
        roots = pki.bundle([pki.pem(r) for r in keep], now)
        return MeshCA(
            self.signer_pem, self.signer_key_pem, self.chain_pem, roots, self.trust_domain
        )


def _chains_to(
    signer: x509.Certificate, chain: list[x509.Certificate], roots: list[x509.Certificate]
) -> bool:
    """Whether `signer`, through `chain`, is issued by (or is) one of `roots`."""
    path = [signer, *(c for c in chain if c != signer)]
    for cert in path:
        for root in roots:
            if cert == root:
                return True
            try:
                cert.verify_directly_issued_by(root)
                return True
            except Exception:  # InvalidSignature, or a name/type mismatch
                continue
    return False
