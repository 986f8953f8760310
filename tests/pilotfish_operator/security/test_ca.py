"""The mesh CA and the issuer: SPIFFE leaves that verify against the roots, Istio's
`cacerts` layout, renewal at half life, root rotation keeping the old root trusted,
and no key material in reprs or logs."""

from __future__ import annotations

import datetime
import logging
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pilotfish_operator.security import pki
from pilotfish_operator.security.ca import (
    CA_CERT,
    CA_KEY,
    CERT_CHAIN,
    ROOT_CERT,
    CAError,
    MeshCA,
)
from pilotfish_operator.security.issuer import Issuer

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
ID = "spiffe://cluster.local/ns/shop/sa/reviews"


def _verifies(chain_pem: bytes, roots_pem: bytes) -> bool:
    """OpenSSL's own verification (via an SSL context), not ours."""
    leaf, *rest = x509.load_pem_x509_certificates(chain_pem)
    store = [*x509.load_pem_x509_certificates(roots_pem)]
    from cryptography.x509.verification import PolicyBuilder, Store

    verifier = (
        PolicyBuilder()
        .store(Store(store))
        .time(NOW + datetime.timedelta(hours=1))
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, rest)
        return True
    except Exception:
        return False


def test_workload_leaf_carries_only_its_spiffe_identity_and_verifies() -> None:
    ca = MeshCA.self_signed("cluster.local", NOW)
    cert = ca.issue(ID, NOW)
    leaf = x509.load_pem_x509_certificates(cert.chain_pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ID]
    assert san.get_values_for_type(x509.DNSName) == []
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_after - cert.not_before == datetime.timedelta(hours=24, minutes=5)
    assert _verifies(cert.chain_pem, cert.roots_pem)
    ssl.create_default_context(cadata=cert.roots_pem.decode())  # a usable trust bundle


def test_identity_outside_the_trust_domain_is_refused() -> None:
    ca = MeshCA.self_signed("cluster.local", NOW)
    with pytest.raises(CAError, match="not in trust domain"):
        ca.issue("spiffe://other.domain/ns/shop/sa/reviews", NOW)


def test_plugged_in_intermediate_with_istios_cacerts_layout() -> None:
    root_pem, root_key = pki.new_ca(NOW, datetime.timedelta(days=3650), pki.name("corp root"))
    inter_pem, inter_key = pki.new_leaf(
        root_pem,
        root_key,
        [x509.DNSName("istiod")],
        NOW,
        datetime.timedelta(days=365),
        subject=pki.name("mesh intermediate"),
    )
    # new_leaf makes leaves; an intermediate needs CA constraints: rebuild it as one.
    inter = _intermediate(root_pem, root_key)
    data = {CA_CERT: inter[0], CA_KEY: inter[1], CERT_CHAIN: inter[0], ROOT_CERT: root_pem}
    ca = MeshCA.from_secret(data, "cluster.local")
    cert = ca.issue(ID, NOW)
    assert len(x509.load_pem_x509_certificates(cert.chain_pem)) == 2  # leaf + intermediate
    assert _verifies(cert.chain_pem, root_pem)
    # Not a CA, a key that does not match, a chain to another root: clear refusals.
    with pytest.raises(CAError, match="is not a CA certificate"):
        MeshCA.from_secret({**data, CA_CERT: inter_pem, CA_KEY: inter_key}, "cluster.local")
    with pytest.raises(CAError, match="is not the key of"):
        MeshCA.from_secret({**data, CA_KEY: root_key}, "cluster.local")
    other_root, _ = pki.new_ca(NOW, datetime.timedelta(days=1), pki.name("other"))
    with pytest.raises(CAError, match="does not chain"):
        MeshCA.from_secret({**data, ROOT_CERT: other_root}, "cluster.local")
    with pytest.raises(CAError, match=r"missing ca-key\.pem"):
        MeshCA.from_secret({CA_CERT: inter[0], ROOT_CERT: root_pem}, "cluster.local")


def _intermediate(root_pem: bytes, root_key: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import hashes

    root = x509.load_pem_x509_certificate(root_pem)
    key = pki.new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.name("mesh intermediate"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(pki.load_key(root_key), hashes.SHA256())
    )
    return pki.pem(cert), pki.key_pem(key)


def test_the_generated_ca_round_trips_through_its_secret() -> None:
    ca = MeshCA.self_signed("cluster.local", NOW)
    again = MeshCA.from_secret(ca.to_secret(), "cluster.local")
    assert again == ca
    assert _verifies(again.issue(ID, NOW).chain_pem, ca.roots_pem)


def test_issuer_reuses_until_half_life_then_renews() -> None:
    clock = [NOW]
    issuer = Issuer(MeshCA.self_signed("cluster.local", NOW), now=lambda: clock[0])
    first = issuer.certificate(ID)
    assert issuer.certificate(ID) is first
    clock[0] = NOW + datetime.timedelta(hours=11)
    assert issuer.certificate(ID) is first
    assert issuer.next_renewal() == first.renew_at()
    clock[0] = NOW + datetime.timedelta(hours=12, minutes=3)
    second = issuer.certificate(ID)
    assert second.serial != first.serial and second.not_after > first.not_after


def test_root_rotation_keeps_old_leaves_trusted_until_retired() -> None:
    old = MeshCA.self_signed("cluster.local", NOW)
    old_leaf = old.issue(ID, NOW)
    new = old.rotated(NOW)
    new_leaf = new.issue(ID, NOW)
    # Both generations verify against the bundle every workload now trusts.
    assert _verifies(old_leaf.chain_pem, new.roots_pem)
    assert _verifies(new_leaf.chain_pem, new.roots_pem)
    assert not _verifies(new_leaf.chain_pem, old.roots_pem)  # the new root was needed
    retired = new.retire_old_roots(NOW)
    assert _verifies(new_leaf.chain_pem, retired.roots_pem)
    assert not _verifies(old_leaf.chain_pem, retired.roots_pem)


def test_no_key_in_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ca = MeshCA.self_signed("cluster.local", NOW)
    issuer = Issuer(ca, now=lambda: NOW)
    cert = issuer.certificate(ID)
    for secret in (ca.signer_key_pem, cert.key_pem):
        body = secret.decode().split("-----")[2].strip().splitlines()[0]
        assert body not in repr(ca) + repr(cert) + caplog.text
    assert "PRIVATE KEY" not in repr(ca) + repr(cert) + caplog.text
