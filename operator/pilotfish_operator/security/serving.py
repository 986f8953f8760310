"""The control plane's own serving certificate for its xDS port, from the mesh CA.

gRPC asks for it on every new connection (dynamic server credentials); a new one is
issued at half its lifetime or when the CA changed, so neither a long-running operator
nor a root rotation leaves sidecars facing an expired or untrusted certificate.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence

import grpc

from .ca import MeshCA
from .pki import utcnow

log = logging.getLogger(__name__)

TTL = datetime.timedelta(days=30)


class ServingCert:
    def __init__(
        self,
        ca: Callable[[], MeshCA],
        dns_names: Sequence[str],
        ttl: datetime.timedelta = TTL,
        now: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.ca = ca
        self.dns_names = list(dns_names)
        self.ttl = ttl
        self.now = now
        self._issued_by: MeshCA | None = None
        self._renew_at = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        self._config: grpc.ServerCertificateConfiguration | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up each renewal on the next handshake."""
        initial = self._fetch()
        assert initial is not None
        return grpc.dynamic_ssl_server_credentials(initial, self._fetch)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when due, else None (gRPC keeps the current one)."""
        ca, now = self.ca(), self.now()
        if self._config is not None and ca is self._issued_by and now < self._renew_at:
            return None
        chain, key = ca.issue_server(self.dns_names, now, self.ttl)
        self._issued_by, self._renew_at = ca, now + self.ttl / 2
        self._config = grpc.ssl_server_certificate_configuration([(key, chain)])
        log.info("xDS serving certificate issued for %s", ", ".join(self.dns_names))
        return self._config
