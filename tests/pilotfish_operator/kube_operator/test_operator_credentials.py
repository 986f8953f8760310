"""`--kubeconfig` reaches both kopf and our own client."""

from __future__ import annotations

from pathlib import Path

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
