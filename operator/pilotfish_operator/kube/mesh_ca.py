"""Where the mesh CA's key lives in a cluster, and how every replica agrees on it.

In the control-plane namespace, first found wins:
- `cacerts`: a CA the user plugs in, Istio's layout (ca-cert.pem, ca-key.pem,
  cert-chain.pem, root-cert.pem), or a cert-manager CA Certificate's Secret of that
  name (tls.crt, tls.key, ca.crt: the chart's `security.ca.certManager`);
- `pilotfish-ca`: a self-signed root the operator generates on first start, in the
  same Istio layout. Replicas race to create it; the loser adopts the winner's.

The Secret is read again every minute: a replaced CA (cert-manager renewing it, a user
plugging one in) signs from then on, and the roots it replaces stay trusted next to
the new ones, so workloads holding leaves of either keep talking while they move.
Only serial numbers reach the log.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping

from cryptography import x509

from ..security import ca as mesh_ca
from ..security.ca import CAError, MeshCA
from ..security.pki import utcnow
from ..webhook.certs import CertStore, Conflict

log = logging.getLogger(__name__)

PLUGGED = "cacerts"
GENERATED = "pilotfish-ca"
RELOAD_EVERY = 60.0
# cert-manager's Secret keys, mapped onto Istio's layout.
_CERT_MANAGER = {
    mesh_ca.CA_CERT: "tls.crt",
    mesh_ca.CA_KEY: "tls.key",
    mesh_ca.CERT_CHAIN: "tls.crt",
    mesh_ca.ROOT_CERT: "ca.crt",
}


class CaSecrets:
    def __init__(
        self,
        store: CertStore,
        namespace: str,
        trust_domain: str,
        now: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.trust_domain = trust_domain
        self.now = now

    async def load(self) -> MeshCA:
        """The CA to sign with (creating the generated root when there is none).
        CAError names the Secret and why its material is unusable."""
        plugged = await self.store.read_secret(self.namespace, PLUGGED)
        if plugged is not None:
            return self._parse(PLUGGED, _istio_layout(plugged.data))
        for _ in range(5):
            stored = await self.store.read_secret(self.namespace, GENERATED)
            if stored is not None:
                return self._parse(GENERATED, stored.data)
            ca = MeshCA.self_signed(self.trust_domain, self.now())
            try:
                await self.store.write_secret(
                    self.namespace, GENERATED, ca.to_secret(), None, secret_type="Opaque"
                )
            except Conflict:
                continue  # another replica created it first: read theirs
            log.info(
                "mesh root CA generated, serial %x, kept in Secret %s/%s",
                _serial(ca.signer_pem),
                self.namespace,
                GENERATED,
            )
            return ca
        raise Conflict(f"Secret {self.namespace}/{GENERATED} kept changing under us")

    def _parse(self, name: str, data: Mapping[str, bytes]) -> MeshCA:
        try:
            return MeshCA.from_secret(data, self.trust_domain)
        except CAError as exc:
            raise CAError(f"Secret {self.namespace}/{name}: {exc}") from None

    async def follow(self, current: MeshCA, changed: Callable[[MeshCA], None]) -> None:
        """Every minute, read the Secret again; call `changed` with the CA to use when
        it was replaced: the new signer, trusting the new roots and the old."""
        loaded = current
        while True:
            await asyncio.sleep(RELOAD_EVERY)
            try:
                fresh = await self.load()
            except (CAError, Conflict, OSError) as exc:
                log.error("mesh CA not reloaded, still signing with the one loaded: %s", exc)
                continue
            except Exception:
                log.exception("mesh CA not reloaded")
                continue
            if (fresh.signer_pem, fresh.roots_pem) == (loaded.signer_pem, loaded.roots_pem):
                continue
            loaded = fresh
            current = fresh.also_trusting(current.roots_pem, self.now())
            log.info(
                "mesh CA replaced: signing with serial %x; the previous roots stay trusted",
                _serial(fresh.signer_pem),
            )
            changed(current)


def _istio_layout(data: Mapping[str, bytes]) -> Mapping[str, bytes]:
    if mesh_ca.CA_CERT in data or "tls.crt" not in data:
        return data
    return {ours: data[theirs] for ours, theirs in _CERT_MANAGER.items() if theirs in data}


def _serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number
