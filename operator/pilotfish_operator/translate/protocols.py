"""Which protocol a service port speaks, as Istio selects it: the port's `appProtocol`,
else the prefix of its name (`grpc-api`, `http2`, `tcp-db`…). Anything else is sniffed by
Istio; Pilotfish treats it as HTTP/1.1, as it did before protocols were selected."""

from __future__ import annotations

KNOWN = frozenset(
    {"http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "mongo", "mysql", "redis", "udp"}
)
# Kubernetes' standard appProtocol values for HTTP/2 over cleartext.
_ALIASES = {"kubernetes.io/h2c": "http2", "h2c": "http2", "kubernetes.io/ws": "http"}


def protocol_of(name: str | None, app_protocol: str | None) -> str:
    if app_protocol:
        value = app_protocol.lower()
        value = _ALIASES.get(value, value)
        if value in KNOWN:
            return value
    lowered = (name or "").lower()
    if lowered.startswith("grpc-web"):
        return "grpc-web"  # the one protocol with a hyphen (Istio checks it first)
    prefix = lowered.split("-", 1)[0]
    return prefix if prefix in KNOWN else "http"
