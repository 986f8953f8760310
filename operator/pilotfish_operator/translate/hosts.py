"""Service host names: Istio resolves short names relative to the object's namespace."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    domain: str = "cluster.local"
    entries: frozenset[str] = frozenset()
    """ServiceEntry hosts: names as they are (`api.example` is not `api.example.svc…`)."""

    def fqdn(self, host: str, namespace: str) -> str:
        """`reviews` → reviews.<ns>.svc.<domain>; `reviews.other` → reviews.other.svc.<domain>."""
        if host.endswith("." + self.domain) or host == "*" or host in self.entries:
            return host
        parts = host.split(".")
        if len(parts) == 1:
            return f"{host}.{namespace}.svc.{self.domain}"
        if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc"):
            return f"{parts[0]}.{parts[1]}.svc.{self.domain}"
        return host  # an external name (ServiceEntry territory)

    def service(self, name: str, namespace: str) -> str:
        return f"{name}.{namespace}.svc.{self.domain}"

    @staticmethod
    def aliases(name: str, namespace: str) -> tuple[str, ...]:
        return (f"{name}.{namespace}.svc", f"{name}.{namespace}")
