"""A small gRPC debug service next to ADS: proxy status and served config.

Requests and responses are plain bytes (JSON in, JSON or YAML out), so the CLI
needs no generated stubs, only grpcio.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import yaml

from .cache import SnapshotCache
from .status import StatusRegistry
from .types import ROUTE, SECRET, SHORT_NAMES, VIRTUAL_HOST

DEBUG_SERVICE = "pilotfish.debug.v1.Debug"
_TIMEOUT = 10.0


def register(server: grpc.aio.Server, cache: SnapshotCache, status: StatusRegistry) -> None:
    async def proxy_status(request: bytes, context: Any) -> bytes:
        return json.dumps(status.to_dict(), sort_keys=True).encode()

    async def proxy_config(request: bytes, context: Any) -> bytes:
        try:
            query = json.loads(request or b"{}")
            return render_config(cache, str(query["node"]), str(query.get("type", "all"))).encode()
        except (KeyError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this keeps type checkers satisfied

    handlers = {
        "ProxyStatus": grpc.unary_unary_rpc_method_handler(proxy_status),
        "ProxyConfig": grpc.unary_unary_rpc_method_handler(proxy_config),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(DEBUG_SERVICE, handlers),)
    )


def render_config(cache: SnapshotCache, node: str, kind: str) -> str:
    """YAML of what the server holds for `node`; `kind` is a short type name or
    "all". Secrets show their certificates (`describe_secret`), never a key."""
    from .codec import decode  # imports the Envoy modules (~1 s): only when asked

    snapshot = cache.get(node)
    if snapshot is None:
        raise KeyError(f"no snapshot for node {node!r}")
    if kind == "all":
        kinds = [k for k in SHORT_NAMES if k != "secrets"]
    elif kind in SHORT_NAMES:
        kinds = [kind]
    else:
        raise ValueError(f"unknown type {kind!r}; one of {', '.join(SHORT_NAMES)}, all")
    out: dict[str, Any] = {}
    for short in kinds:
        type_url = SHORT_NAMES[short]
        resources = snapshot.resources(type_url)
        if type_url == SECRET:
            items: list[Any] = [
                describe_secret(decode(type_url, r.body), n, r.hash)
                for n, r in sorted(resources.items())
            ]
        else:
            items = [decode(type_url, r.body).to_dict() for _, r in sorted(resources.items())]
        out[short] = {"version": snapshot.version(type_url), "resources": items}
        if type_url == ROUTE and snapshot.on_demand is not None:
            # A scoped proxy's tables hold no virtual host: these are what it fetches by
            # Host on a first call (VHDS). What it fetched is in its admin /config_dump.
            offers = {
                o.resource.name: o.resource for o in snapshot.on_demand.virtual_hosts.values()
            }
            out[short]["onDemand"] = {
                "version": snapshot.version(VIRTUAL_HOST),
                "virtualHosts": [
                    decode(VIRTUAL_HOST, r.body).to_dict() for _, r in sorted(offers.items())
                ],
            }
    return yaml.safe_dump(out, sort_keys=False)


def describe_secret(secret: Any, name: str, version: str) -> dict[str, Any]:
    """What an operator may see of a secret: each certificate's subject, SPIFFE ID,
    issuer, serial and validity. The private key is never decoded or shown."""
    out: dict[str, Any] = {"name": name, "hash": version}
    if secret.tls_certificate is not None:
        out["certificateChain"] = _certificates(secret.tls_certificate.certificate_chain)
    if secret.validation_context is not None:
        out["trustedCA"] = _certificates(secret.validation_context.trusted_ca)
    return out


def _certificates(source: Any) -> list[dict[str, Any]]:
    from cryptography import x509

    pem = source.inline_bytes or (source.inline_string or "").encode() if source else b""
    out = []
    for cert in x509.load_pem_x509_certificates(pem) if pem.strip() else ():
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        out.append(
            {
                "subject": cert.subject.rfc4514_string(),
                "spiffeID": next((u for u in uris if u.startswith("spiffe://")), None),
                "issuer": cert.issuer.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "notBefore": cert.not_valid_before_utc.isoformat(),
                "notAfter": cert.not_valid_after_utc.isoformat(),
            }
        )
    return out


Tls = tuple[bytes, str]
"""(trusted roots PEM, the server's name) for a control plane serving over TLS."""


def _call(address: str, method: str, request: bytes, tls: Tls | None = None) -> bytes:
    if tls is None:
        channel = grpc.insecure_channel(address)
    else:
        roots, name = tls
        channel = grpc.secure_channel(
            address,
            grpc.ssl_channel_credentials(root_certificates=roots),
            options=[("grpc.ssl_target_name_override", name)],
        )
    with channel:
        stub = channel.unary_unary(f"/{DEBUG_SERVICE}/{method}")
        response: bytes = stub(request, timeout=_TIMEOUT)
        return response


def fetch_status(address: str, tls: Tls | None = None) -> dict[str, Any]:
    """All nodes' xDS status from the control plane at `address` (blocking)."""
    result: dict[str, Any] = json.loads(_call(address, "ProxyStatus", b"", tls))
    return result


def fetch_config(address: str, node: str, type: str = "all", tls: Tls | None = None) -> str:
    """YAML of the config served to `node` (blocking)."""
    query = json.dumps({"node": node, "type": type}).encode()
    return _call(address, "ProxyConfig", query, tls).decode()
