"""The xDS channel in local mode: TLS with the mesh's certificate, and each stream
served only the node its pod token names. A process presenting another pod's
identity (or none) gets nothing, with a clear log line; a sidecar with its own
token gets its own workload key."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from harness import Harness, namespace, pod, service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pilotfish_xds"))
from adsclient import SotwClient

from pilotfish_xds.codec import decode
from pilotfish_xds.types import SECRET

pytestmark = pytest.mark.envoy


async def test_a_stream_gets_only_the_node_its_token_names(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    client, web = harness.ip(80), harness.ip(81)
    harness.backend("web-1", web, 8080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("client", "shop", client, {"app": "client"}, service_account="frontend"),
        pod("web-1", "shop", web, {"app": "web"}, (8080,), service_account="web"),
    )
    await harness.start()
    mesh = harness.mesh
    assert mesh is not None
    # The real sidecars got in over the protected channel.
    assert (await harness.get(client, "http://web.shop/")).served_by == "web-1"
    tls = (mesh.roots_file.read_bytes(), "pilotfish.pilotfish-system.svc")
    mine = mesh.tokens.issue("shop", "client", "frontend")

    async def secrets_for(node: str, token: str | None) -> dict[str, str]:
        async with SotwClient(mesh.xds, node, tls=tls, token=token) as ads:
            await ads.request(SECRET, ["default"])
            response = await ads.recv()
        out = {}
        for any_ in response.resources:
            secret = decode(SECRET, any_.value)
            chain = secret.tls_certificate.certificate_chain.inline_bytes
            leaf = x509.load_pem_x509_certificates(chain)[0]
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            out[secret.name] = san.get_values_for_type(x509.UniformResourceIdentifier)[0]
        return out

    assert await secrets_for("client.shop", mine) == {
        "default": "spiffe://cluster.local/ns/shop/sa/frontend"
    }

    caplog.set_level(logging.WARNING)
    refusals = [
        ("web-1.shop", mine, "its token is for pod shop/client"),
        ("web-1.shop", None, "it presents no token"),
        ("web-1.shop", mine[:-4] + "AAAA", "a token this control plane did not issue"),
        # A token for the right pod but a service account it does not run as.
        ("client.shop", mesh.tokens.issue("shop", "client", "web"), "is not pod shop/client's"),
    ]
    for node, token, why in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await secrets_for(node, token)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert why in (refused.value.details() or "")
        assert f"names node '{node}' but" in caplog.text and why in caplog.text
    # The token itself never reaches the log.
    assert mine not in caplog.text

    # Without TLS the control plane does not talk at all.
    with pytest.raises(grpc.aio.AioRpcError):
        async with SotwClient(mesh.xds, "client.shop", token=mine) as ads:
            await ads.request(SECRET, ["default"])
            await ads.recv()
