"""The Envoy bootstrap a sidecar starts with: who it is and where its ADS server is.

Local mode writes it to a file; in-cluster injection renders the same document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ports import ADMIN_PORT

XDS_CLUSTER = "xds-grpc"


def bootstrap(
    node_id: str,
    *,
    namespace: str,
    pod: str,
    labels: dict[str, str],
    xds_host: str,
    xds_port: int,
    admin_host: str = "127.0.0.1",
    admin_port: int = ADMIN_PORT,
    delta: bool = False,
    xds_tls: XdsTls | None = None,
) -> dict[str, Any]:
    """A JSON-able bootstrap: ADS over gRPC for CDS/LDS (and through them EDS/RDS).

    Envoy waits for its clusters and listeners however long they take: its default
    gives up after 15 s, goes on to ask for listeners while clusters still warm (a
    loaded machine starting tens of sidecars gets there), and reports ready empty.
    Readiness then means "has its config", and the app waits for it."""
    ads = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    xds_cluster: dict[str, Any] = {}
    if xds_tls is not None:
        grpc_service["initial_metadata"] = [
            {"key": "authorization", "value": f"Bearer {xds_tls.token}"}
        ]
        xds_cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": xds_tls.server_name,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],  # gRPC servers insist on it
                    "validation_context": {
                        "trusted_ca": {"filename": xds_tls.roots_file},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": xds_tls.server_name}}
                        ],
                    },
                },
            },
        }
    return {
        "node": {
            "id": node_id,
            "cluster": f"{labels.get('app', pod)}.{namespace}",
            "metadata": {"NAMESPACE": namespace, "POD_NAME": pod, "LABELS": labels},
        },
        "admin": {"address": _socket(admin_host, admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [grpc_service],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    **xds_cluster,
                    "type": "STRICT_DNS",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {"endpoint": {"address": _socket(xds_host, xds_port)}}
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }


@dataclass(frozen=True)
class XdsTls:
    """How a sidecar reaches a protected control plane: TLS verified against the mesh
    roots (a file the pod can read) for the server's name, and the sidecar's token,
    sent with every stream (the server gives a stream only the node it proves)."""

    roots_file: str
    server_name: str
    token: str = field(repr=False)


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}
