"""The sidecar's well-known ports (Istio's numbers, which users already know).

A module of its own, free of Envoy imports, so the CLI and the capture step can use
them without loading envoy-data-plane.
"""

ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
HEALTH_PORT = 15021
STATS_PORT = 15090
PROXY_UID = 1337
"""Envoy runs as this user; its own traffic is never captured."""
XDS_PORT = 15010
WEBHOOK_PORT = 15017
SIDECAR_PORTS = (ADMIN_PORT, OUTBOUND_PORT, INBOUND_PORT, HEALTH_PORT, STATS_PORT)
"""The ports the sidecar itself listens on: never captured, never a service's."""
