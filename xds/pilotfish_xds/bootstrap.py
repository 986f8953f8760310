"""The Envoy bootstrap a sidecar starts with: who it is and where its ADS server is.

Local mode writes it to a file; in-cluster injection renders the same document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ir
from .ports import ADMIN_PORT
from .translate import telemetry

XDS_CLUSTER = "xds-grpc"
_BYTE_BUCKETS = [10.0**n for n in range(10)]


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
    workload: ir.Workload | None = None,
) -> dict[str, Any]:
    """A JSON-able bootstrap: ADS over gRPC for CDS/LDS (and through them EDS/RDS).

    Envoy waits for its clusters and listeners however long they take: its default
    gives up after 15 s, goes on to ask for listeners while clusters still warm (a
    loaded machine starting tens of sidecars gets there), and reports ready empty.
    Readiness then means "has its config", and the app waits for it.

    `workload`: who the pod is, in the node metadata the standard metrics read."""
    ads = {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    grpc_service = (
        _protected(xds_tls, xds_host, xds_port)
        if xds_tls is not None
        else {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    )
    return {
        "node": {
            "id": node_id,
            "cluster": f"{labels.get('app', pod)}.{namespace}",
            "metadata": {
                **telemetry.node_metadata(workload),
                "NAMESPACE": namespace,
                "POD_NAME": pod,
                "LABELS": labels,
            },
        },
        # Istio's buckets for its byte-size histograms (durations use Envoy's defaults,
        # which are Istio's).
        "stats_config": {
            "histogram_bucket_settings": [
                {
                    "match": {"prefix": f"{telemetry.PREFIX}.request_bytes"},
                    "buckets": _BYTE_BUCKETS,
                },
                {
                    "match": {"prefix": f"{telemetry.PREFIX}.response_bytes"},
                    "buckets": _BYTE_BUCKETS,
                },
            ]
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
            "clusters": []
            if xds_tls is not None
            else [
                {
                    "name": XDS_CLUSTER,
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
    roots (a file the pod can read) for the server's name, and the sidecar's token
    (a file: the kubelet's projected token, or local mode's), sent with every stream;
    the server gives a stream only the node that token proves."""

    roots_file: str
    server_name: str
    token_file: str


def _protected(tls: XdsTls, host: str, port: int) -> dict[str, Any]:
    """Envoy's Google gRPC client: its file-based call credentials read the token file
    each time a stream starts, so a token the kubelet rotated is what the next
    reconnection sends (`envoy_grpc`'s `initial_metadata` is fixed at start-up).
    The name override makes the certificate check use the control plane's name
    whatever address `host` is (local mode dials an IP)."""
    return {
        "google_grpc": {
            "target_uri": f"{host}:{port}",
            "stat_prefix": XDS_CLUSTER,
            "channel_credentials": {
                "ssl_credentials": {"root_certs": {"filename": tls.roots_file}}
            },
            "call_credentials": [
                {
                    "from_plugin": {
                        "name": _FILE_TOKEN,
                        "typed_config": {
                            "@type": "type.googleapis.com/"
                            "envoy.config.grpc_credential.v3.FileBasedMetadataConfig",
                            "secret_data": {"filename": tls.token_file},
                            "header_prefix": "Bearer ",
                        },
                    }
                }
            ],
            "credentials_factory_name": _FILE_TOKEN,
            "channel_args": {
                "args": {
                    "grpc.ssl_target_name_override": {"string_value": tls.server_name},
                    # gRPC's default 4 MiB cap refuses a large mesh's clusters (10,000
                    # services: ~8 MiB) and Envoy sees the stream cancelled (status 1),
                    # again on every retry (bench/scoping.py). Envoy's own client has none.
                    "grpc.max_receive_message_length": {"int_value": -1},
                }
            },
        }
    }


_FILE_TOKEN = "envoy.grpc_credentials.file_based_metadata"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}
