"""`--kubeconfig` reaches both kopf and our own client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pilotfish_operator.kube import credentials


def test_kubeconfig_gives_kopf_and_our_client_the_same_server_and_token(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://10.1.2.3:6443",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "s3cret"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    cfg = credentials.load(str(path))
    info = credentials.connection_info(cfg)
    assert info.server == "https://10.1.2.3:6443"
    assert (info.scheme, info.token) == ("Bearer", "s3cret")
    assert info.insecure is True
    assert credentials.authorization(cfg) == "Bearer s3cret"


def test_in_cluster_uses_the_service_account(tmp_path: Path, monkeypatch: Any) -> None:
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token")
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = credentials.load(None)  # no --kubeconfig: the pod's service account
    info = credentials.connection_info(cfg)
    assert info.server == "https://10.96.0.1:443"
    assert (str(info.scheme).lower(), info.token) == ("bearer", "sa-token")
    assert info.ca_path == str(ca)
    # The client library re-reads rotated tokens through its refresh hook; our client
    # asks for the header on every use, so it follows.
    assert cfg.refresh_api_key_hook is not None
