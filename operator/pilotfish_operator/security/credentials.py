"""Gateway TLS credentials: the Kubernetes Secret a Gateway server names in
`credentialName`, read from the gateway workload's own namespace (Istio's rule: a
gateway serves only certificates its namespace holds). Istio's two layouts are read:
`kubernetes.io/tls` (`tls.crt`, `tls.key`, `ca.crt`) and generic (`cert`, `key`,
`cacert`); a MUTUAL server's client CA may also be in the Secret `<name>-cacert`.
Nothing here logs or returns a key's bytes except to the proxy that serves it."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilotfish_xds.translate.mtls import Credential

from ..api import Secret
from ..store import Store

SDS_PREFIX = "kubernetes://"
GATEWAY_API_PREFIX = "kubernetes-gateway://"
"""`kubernetes-gateway://<namespace>/<name>` (Istio's form): a Gateway API certificateRef
to another namespace that a ReferenceGrant allows. Only the Gateway API conversion
makes it; an Istio Gateway naming it is refused (`translate/gateways.py`)."""
_LAYOUTS = (("tls.crt", "tls.key", "ca.crt"), ("cert", "key", "cacert"))


def granted(namespace: str, name: str) -> str:
    return f"{GATEWAY_API_PREFIX}{namespace}/{name}"


def locate(namespace: str, credential_name: str) -> tuple[str, str]:
    """(namespace, Secret name) of a credential named by a server of `namespace`."""
    if credential_name.startswith(GATEWAY_API_PREFIX):
        other, _, name = credential_name.removeprefix(GATEWAY_API_PREFIX).partition("/")
        return other, name
    return namespace, credential_name


def sds_name(credential_name: str) -> str:
    if credential_name.startswith(GATEWAY_API_PREFIX):
        return credential_name
    return f"{SDS_PREFIX}{credential_name}"


def read(store: Store, namespace: str, credential_name: str, mutual: bool) -> Credential | str:
    """The credential, or why it cannot be served (never with the key's contents)."""
    namespace, name = locate(namespace, credential_name)
    found = store.get(("Secret", namespace, name))
    if not isinstance(found, Secret):
        return f"Secret {namespace}/{name} not found"
    layout = next((k for k in _LAYOUTS if found.value(k[0]) and found.value(k[1])), None)
    if layout is None:
        return f"Secret {namespace}/{name} has no tls.crt and tls.key (nor cert and key)"
    cert_key, key_key, ca_key = layout
    chain, key = found.value(cert_key) or b"", found.value(key_key) or b""
    try:
        x509.load_pem_x509_certificates(chain)
    except ValueError:
        return f"Secret {namespace}/{name}: {cert_key} is not a PEM certificate"
    try:
        serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        return f"Secret {namespace}/{name}: {key_key} is not an unencrypted PEM private key"
    ca = found.value(ca_key) or b""
    if mutual and not ca:
        other = store.get(("Secret", namespace, f"{name}-cacert"))
        if isinstance(other, Secret):
            ca = other.value("ca.crt") or other.value("cacert") or b""
    if mutual:
        if not ca:
            return f"Secret {namespace}/{name} (or {name}-cacert) has no ca.crt for MUTUAL"
        try:
            x509.load_pem_x509_certificates(ca)
        except ValueError:
            return f"Secret {namespace}/{name}: the client CA is not a PEM certificate"
    return Credential(sds_name(credential_name), chain, key, ca if mutual else b"")
