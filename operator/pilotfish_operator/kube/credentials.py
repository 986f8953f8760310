"""Where the API server is and how to authenticate: in-cluster (the pod's service
account) or a kubeconfig. One `Configuration` feeds both kopf and our own client."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import kopf
import kubernetes
import yaml
from kubernetes.config import incluster_config

log = logging.getLogger(__name__)


def load(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """`--kubeconfig` if given; else in-cluster, else the default kubeconfig.

    A bearer token that comes from a file (the pod's projected service-account token,
    a kubeconfig's `tokenFile`) is read again whenever the file changes: the kubelet
    rotates projected tokens (1 h here), and a token read once would expire under us."""
    cfg = kubernetes.client.Configuration()
    token_file: str | None
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        token_file = _kubeconfig_token_file(kubeconfig)
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            token_file = incluster_config.SERVICE_TOKEN_FILENAME
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            token_file = _kubeconfig_token_file(None)
    if token_file:
        cfg.refresh_api_key_hook = TokenFile(token_file)  # type: ignore[assignment]  # stub says None
    return cfg


def _kubeconfig_token_file(path: str | None) -> str | None:
    """The current context's user's `tokenFile`, resolved against the kubeconfig's folder."""
    path = path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
    file = Path(path).expanduser()
    try:
        config = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    current = config.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or ()}
    user_name = contexts.get(current, {}).get("user")
    users = {u.get("name"): u.get("user") or {} for u in config.get("users") or ()}
    token_file = users.get(user_name, {}).get("tokenFile")
    if not isinstance(token_file, str) or not token_file:
        return None
    return str(file.parent / Path(token_file).expanduser())


class TokenFile:
    """The client library's api-key refresh hook: the token, read again when the file
    changes (checked with one stat per use; rotation is an atomic symlink swap)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None

    def __call__(self, cfg: kubernetes.client.Configuration) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._seen:
                return
            token = Path(self.path).read_text().strip()  # a trailing newline is no token
        except OSError as exc:
            log.warning("cannot read the API token from %s: %s", self.path, exc.strerror)
            return  # keep the one we have
        if not token:
            return  # being rewritten: read it next time
        if self._seen is not None:
            log.info("API token re-read from %s", self.path)
        self._seen = stamp
        cfg.api_key.pop("authorization", None)
        cfg.api_key_prefix.pop("BearerToken", None)
        cfg.api_key["BearerToken"] = f"Bearer {token}"


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
    """What kopf logs in with. kopf asks again after a 401 and refuses the credentials it
    saw fail, so this must hand it the token the file holds now, not a cached one."""
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
