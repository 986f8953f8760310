"""Where the cluster's mesh CA comes from (kube/mesh_ca.py), against the in-memory
Secret store the webhook certificate tests use (create/replace as the API server)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from cryptography import x509

from pilotfish_operator.kube.mesh_ca import CaSecrets
from pilotfish_operator.security import pki
from pilotfish_operator.security.ca import ROOT_VALIDITY, CAError
from pilotfish_operator.webhook.certs import StoredSecret

sys.path.append(str(Path(__file__).resolve().parents[1] / "webhook"))
from webhookharness import FakeCertStore

NS = "pilotfish-system"


async def test_replicas_racing_at_first_start_agree_on_one_generated_root() -> None:
    store = FakeCertStore()
    cas = await asyncio.gather(*(CaSecrets(store, NS, "cluster.local").load() for _ in range(3)))
    assert len({ca.signer_pem for ca in cas}) == 1
    assert store.types[(NS, "pilotfish-ca")] == "Opaque"
    assert set(store.secrets[(NS, "pilotfish-ca")].data) == {
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    }


async def test_cert_managers_secret_layout_is_read_as_a_plugged_in_ca() -> None:
    store = FakeCertStore()
    root_pem, root_key = pki.new_ca(pki.utcnow(), ROOT_VALIDITY, pki.name("plugged-in root"))
    store.secrets[(NS, "cacerts")] = StoredSecret(
        {"tls.crt": root_pem, "tls.key": root_key, "ca.crt": root_pem}, "1"
    )
    ca = await CaSecrets(store, NS, "example.org").load()
    leaf = ca.issue("spiffe://example.org/ns/a/sa/b", pki.utcnow())
    cert = x509.load_pem_x509_certificates(leaf.chain_pem)[0]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(root_pem))
    assert (NS, "pilotfish-ca") not in store.secrets  # nothing generated next to it


async def test_unusable_plugged_in_material_names_the_secret() -> None:
    store = FakeCertStore()
    store.secrets[(NS, "cacerts")] = StoredSecret({"ca-cert.pem": b"junk"}, "1")
    with pytest.raises(CAError, match=r"Secret pilotfish-system/cacerts: missing ca-key.pem"):
        await CaSecrets(store, NS, "cluster.local").load()
