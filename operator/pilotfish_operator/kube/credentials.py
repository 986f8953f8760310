"""Where the API server is and how to authenticate: in-cluster (the pod's service
account) or a kubeconfig. One `Configuration` feeds both kopf and our own client."""

from __future__ import annotations

import kopf
import kubernetes


def load(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """`--kubeconfig` if given; else in-cluster, else the default kubeconfig."""
    cfg = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        return cfg
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


def authorization(cfg: kubernetes.client.Configuration) -> str | None:
    """The Authorization header. Asked on every use: in-cluster tokens are rotated and
    the client library re-reads them through its refresh hook."""
    # The client moved the bearer token from "authorization" to "BearerToken" in v36.
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    if header and " " not in header:
        header = f"Bearer {header}"
    return str(header) if header else None


def connection_info(cfg: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    scheme = token = None
    header = authorization(cfg)
    if header:
        scheme, token = header.split(" ", 1)
    return kopf.ConnectionInfo(
        server=str(cfg.host).rstrip("/"),
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
    )
