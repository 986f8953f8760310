"""The webhooks' serving certificate: generated, shared through the Secret, rotated in time."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from webhookharness import SERVICE_HOST, FakeCertStore, FakeEvents, FakeNamespaces, client_context

from pilotfish_operator.webhook.certs import (
    BUNDLE,
    CA_CERT,
    TLS_KEY,
    FileCerts,
    SecretCerts,
    new_ca,
    new_leaf,
)
from pilotfish_operator.webhook.inject import Config, Injector
from pilotfish_operator.webhook.server import WebhookServer

SECRET = ("pilotfish-system", "pilotfish-webhook-certs")
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime.datetime:
        return self.now


def installed() -> FakeCertStore:
    store = FakeCertStore()
    store.install_webhooks()
    return store


def cas(bundle: bytes) -> list[int]:
    return [c.serial_number for c in x509.load_pem_x509_certificates(bundle)]


async def test_generated_kept_in_the_secret_and_ca_bundle_patched() -> None:
    store, clock = installed(), Clock()
    cert = await SecretCerts(store, now=clock).current()
    leaf = x509.load_pem_x509_certificate(cert.cert_pem)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_HOST in names.get_values_for_type(x509.DNSName)
    secret = store.secrets[SECRET]
    assert set(secret.data) >= {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert secret.data["tls.crt"] == cert.cert_pem
    # Both configurations trust the CA that signed the leaf.
    assert set(store.ca_bundles.values()) == {cert.ca_bundle}
    ca = x509.load_pem_x509_certificate(secret.data[CA_CERT])
    leaf.verify_directly_issued_by(ca)

    # Another replica (or a restart) adopts it instead of making its own.
    again = await SecretCerts(store, now=clock).current()
    assert (again.serial, store.writes) == (cert.serial, 1)


async def test_leaf_renewed_before_expiry_under_the_same_ca() -> None:
    store, clock = installed(), Clock()
    certs = SecretCerts(store, now=clock)
    first = await certs.current()
    clock.now = START + datetime.timedelta(days=200)  # 165 of 365 days left: still fine
    assert (await certs.current()).serial == first.serial
    clock.now = START + datetime.timedelta(days=250)  # under a third left: renew
    second = await certs.current()
    assert second.serial != first.serial
    assert second.not_after > first.not_after
    assert second.ca_bundle == first.ca_bundle  # nothing for the API server to relearn


async def test_ca_renewed_keeps_trusting_the_previous_one() -> None:
    store, clock = installed(), Clock()
    certs = SecretCerts(store, now=clock)
    first = await certs.current()
    clock.now = START + datetime.timedelta(days=2500)  # the 10-year CA is due
    second = await certs.current()
    old_ca = x509.load_pem_x509_certificate(first.ca_bundle).serial_number
    assert old_ca in cas(second.ca_bundle) and len(cas(second.ca_bundle)) == 2
    assert set(store.ca_bundles.values()) == {second.ca_bundle}
    # Once the old CA has expired it is dropped from the bundle.
    clock.now = START + datetime.timedelta(days=3660 + 2400)
    third = await certs.current()
    assert old_ca not in cas(third.ca_bundle)


async def test_a_racing_replica_wins_and_is_adopted() -> None:
    clock = Clock()
    other = FakeCertStore()
    await SecretCerts(other, now=clock).current()

    class Racing(FakeCertStore):
        raced = False

        async def write_secret(self, *args: object, **kwargs: object) -> None:
            if not self.raced:  # the other replica writes between our read and write
                self.raced = True
                self.put(*SECRET, other.secrets[SECRET].data)
            await super().write_secret(*args, **kwargs)  # type: ignore[arg-type]

    racing = Racing()
    racing.install_webhooks()
    ours = await SecretCerts(racing, now=clock).current()
    assert ours.cert_pem == other.secrets[SECRET].data["tls.crt"]
    assert racing.writes == 0  # ours was refused; theirs is served


async def test_garbled_secret_is_replaced() -> None:
    store, clock = installed(), Clock()
    store.put(*SECRET, {"tls.crt": b"garbage", "ca.crt": b"more garbage"})
    cert = await SecretCerts(store, now=clock).current()
    assert store.secrets[SECRET].data["tls.crt"] == cert.cert_pem


async def test_missing_webhook_configurations_are_reported_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    await SecretCerts(FakeCertStore()).current()
    assert "pilotfish-sidecar-injector not found" in caplog.text


async def test_key_material_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store, clock = installed(), Clock()
    certs = SecretCerts(store, now=clock)
    server = WebhookServer(Injector(Config()), certs, FakeNamespaces(), FakeEvents())
    await server.start("127.0.0.1", 0)
    clock.now = START + datetime.timedelta(days=2500)
    await server.refresh()
    await server.stop()
    data = store.secrets[SECRET].data
    assert "PRIVATE KEY" not in caplog.text
    for key in (data[TLS_KEY], data["ca.key"]):
        body = b"".join(key.splitlines()[1:-1]).decode()
        assert body[:40] not in caplog.text
    assert "serial" in caplog.text  # what is logged instead
    assert "key_pem" not in repr(server.serving)


def served_serial(port: int, ca_bundle: bytes) -> int:
    context = client_context(ca_bundle)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_HOST) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_server_serves_the_renewed_certificate_without_restart() -> None:
    store, clock = installed(), Clock()
    server = WebhookServer(
        Injector(Config()), SecretCerts(store, now=clock), FakeNamespaces(), FakeEvents()
    )
    port = await server.start("127.0.0.1", 0)
    try:
        assert server.serving is not None
        first = server.serving
        assert await asyncio.to_thread(served_serial, port, first.ca_bundle) == first.serial
        clock.now = START + datetime.timedelta(days=300)
        assert await server.refresh() is True
        assert server.serving.serial != first.serial
        serial = await asyncio.to_thread(served_serial, port, server.serving.ca_bundle)
        assert serial == server.serving.serial
        # A client holding only the old bundle still trusts it: same CA.
        assert await asyncio.to_thread(served_serial, port, first.ca_bundle) == serial
        assert await server.refresh() is False
    finally:
        await server.stop()


async def test_untrusted_client_is_refused() -> None:
    store = installed()
    server = WebhookServer(Injector(Config()), SecretCerts(store), FakeNamespaces(), FakeEvents())
    port = await server.start("127.0.0.1", 0)
    try:
        other_ca, _ = new_ca(START)
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.to_thread(served_serial, port, other_ca)
    finally:
        await server.stop()


async def test_files_from_cert_manager_are_reloaded_on_change(tmp_path: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)

    def write() -> bytes:
        ca, ca_key = new_ca(now)
        cert, key = new_leaf(ca, ca_key, [SERVICE_HOST], now)
        (tmp_path / "tls.crt").write_bytes(cert)
        (tmp_path / "tls.key").write_bytes(key)
        (tmp_path / "ca.crt").write_bytes(ca)
        return cert

    files = FileCerts(tmp_path)
    write()
    first = await files.current()
    assert (await files.current()) is first
    cert = write()
    later = (tmp_path / "tls.crt").stat().st_mtime + 5
    os.utime(tmp_path / "tls.crt", (later, later))
    second = await files.current()
    assert second.cert_pem == cert and second.serial != first.serial
    assert second.ca_bundle == (tmp_path / "ca.crt").read_bytes()
    assert BUNDLE not in os.listdir(tmp_path)
