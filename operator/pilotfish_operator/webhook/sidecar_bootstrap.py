"""The bootstrap an injected sidecar starts with: the shared one plus what a pod needs.

`pilotfish_xds.bootstrap` gives identity, admin and the ADS server. A pod also serves its
readiness on 15021 and Prometheus stats on 15090; both are static listeners forwarding one
path each to the admin interface, which stays on 127.0.0.1 so nothing else of it is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pilotfish_xds import ir
from pilotfish_xds.bootstrap import XdsTls, bootstrap

from ..injection import ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY, XDS_TOKEN_AUDIENCE
from .traffic import ADMIN_PORT, HEALTH_PORT, STATS_PORT

ADMIN_CLUSTER = "pilotfish-admin"
# Expanded by the kubelet from the downward-API env: generateName pods have no name yet.
POD_NAME = "$(POD_NAME)"
_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "envoy.extensions.filters.http.router.v3.Router"


@dataclass(frozen=True)
class PodXdsSecurity:
    """How an injected sidecar proves itself to the control plane: the pod's projected
    ServiceAccount token (audience ours, rotated by the kubelet, re-read by Envoy on
    every stream) and the mesh roots from the namespace's ConfigMap, both mounted."""

    server_name: str
    audience: str = XDS_TOKEN_AUDIENCE
    token_dir: str = "/var/run/secrets/pilotfish/token"
    token_path: str = "xds-token"
    token_seconds: int = 43200
    roots_dir: str = "/var/run/secrets/pilotfish/roots"
    roots_configmap: str = ROOT_CONFIGMAP
    roots_key: str = ROOT_CONFIGMAP_KEY

    def xds_tls(self) -> XdsTls:
        return XdsTls(
            f"{self.roots_dir}/{self.roots_key}",
            self.server_name,
            f"{self.token_dir}/{self.token_path}",
        )


def sidecar_bootstrap(
    *,
    namespace: str,
    labels: dict[str, str],
    service_account: str,
    xds_host: str,
    xds_port: int,
    security: PodXdsSecurity | None = None,
    workload: ir.Workload | None = None,
    delta: bool = True,
) -> dict[str, Any]:
    config = bootstrap(
        f"{POD_NAME}.{namespace}",
        namespace=namespace,
        pod=POD_NAME,
        labels=labels,
        xds_host=xds_host,
        xds_port=xds_port,
        admin_host="127.0.0.1",
        admin_port=ADMIN_PORT,
        xds_tls=security.xds_tls() if security is not None else None,
        workload=workload,
        delta=delta,
    )
    config["node"]["metadata"]["SERVICE_ACCOUNT"] = service_account
    static = config["static_resources"]
    static["clusters"].append(
        {
            "name": ADMIN_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": ADMIN_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _local(ADMIN_PORT)}}]}],
            },
        }
    )
    # Envoy's /ready answers 200 once the first CDS/LDS responses are applied.
    static["listeners"] = [
        _forward("health", HEALTH_PORT, {"path": "/healthz/ready"}, "/ready"),
        _forward("prometheus", STATS_PORT, {"prefix": "/stats/prometheus"}, "/stats/prometheus"),
    ]
    return config


def _local(port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _forward(name: str, port: int, match: dict[str, str], rewrite: str) -> dict[str, Any]:
    route = {"match": match, "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": rewrite}}
    hcm = {
        "@type": f"type.googleapis.com/{_HCM}",
        "stat_prefix": name,
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"type.googleapis.com/{_ROUTER}"},
            }
        ],
    }
    return {
        "name": name,
        "address": _local(port, "0.0.0.0"),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
