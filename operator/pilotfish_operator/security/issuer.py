"""Keeps one current certificate per workload identity, renewed at half its life.

The pipeline asks for a proxy's certificate each time it builds the proxy's config;
the same certificate comes back until it is due (or the CA changed), so an unrelated
edit never re-keys anyone. `next_renewal` tells the pipeline when to wake up.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from .ca import WORKLOAD_TTL, MeshCA, WorkloadCert
from .pki import utcnow

log = logging.getLogger(__name__)


class Issuer:
    def __init__(
        self,
        ca: MeshCA,
        ttl: datetime.timedelta = WORKLOAD_TTL,
        now: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.ca = ca
        self.ttl = ttl
        self.now = now
        self._certs: dict[str, WorkloadCert] = {}

    def set_ca(self, ca: MeshCA) -> None:
        """A new signer or trust bundle: every identity is re-issued when next asked."""
        if ca != self.ca:
            self.ca = ca
            self._certs.clear()

    def certificate(self, identity: str) -> WorkloadCert:
        now = self.now()
        cert = self._certs.get(identity)
        if cert is None or now >= cert.renew_at():
            cert = self._certs[identity] = self.ca.issue(identity, now, self.ttl)
            log.info(
                "certificate issued for %s, serial %x, valid until %s",
                identity,
                cert.serial,
                cert.not_after.isoformat(),
            )
        return cert

    def forget(self, keep: set[str]) -> None:
        """Drop identities no proxy holds any more."""
        for identity in self._certs.keys() - keep:
            del self._certs[identity]

    def next_renewal(self) -> datetime.datetime | None:
        return min((c.renew_at() for c in self._certs.values()), default=None)
