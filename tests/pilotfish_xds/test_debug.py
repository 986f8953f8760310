"""The debug service the CLI talks to: status JSON and config YAML over gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import yaml
from adsclient import Running, SotwClient
from envoyconfig import config

from pilotfish_xds.debug import fetch_config, fetch_status
from pilotfish_xds.types import CLUSTER

NODE = "debug-node"


async def test_status_and_config(xds: Running) -> None:
    xds.cache.set(NODE, config(10080, "hi"))
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        response = await client.recv()
        await client.ack(response)
        # The blocking client runs in a thread: the server shares this loop.
        status = await asyncio.to_thread(fetch_status, xds.address)
        node = status["nodes"][NODE]
        assert node["types"][CLUSTER]["sent_nonce"] == response.nonce
        assert [s["kind"] for s in node["streams"].values()] == ["sotw"]
        assert status["nacks_total"] == 0

    listeners = yaml.safe_load(
        await asyncio.to_thread(fetch_config, xds.address, NODE, "listeners")
    )
    [listener] = listeners["listeners"]["resources"]
    assert listener["name"] == "http"
    assert listener["address"]["socketAddress"]["portValue"] == 10080
    everything = yaml.safe_load(await asyncio.to_thread(fetch_config, xds.address, NODE, "all"))
    assert set(everything) == {"clusters", "endpoints", "listeners", "routes"}
    route = everything["routes"]["resources"][0]
    assert route["virtualHosts"][0]["routes"][0]["directResponse"]["body"]["inlineString"] == "hi"


async def test_config_errors(xds: Running) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        await asyncio.to_thread(fetch_config, xds.address, "nobody", "all")
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    xds.cache.set(NODE, config(10080, "hi"))
    with pytest.raises(grpc.RpcError, match="unknown type"):
        await asyncio.to_thread(fetch_config, xds.address, NODE, "bogus")


async def test_secrets_show_certificates_never_the_key(xds: Running) -> None:
    import datetime

    from pilotfish_operator.security.ca import MeshCA
    from pilotfish_xds import ir
    from pilotfish_xds.codec import EncodeCache
    from pilotfish_xds.translate import WorkloadSecrets, translate

    now = datetime.datetime.now(datetime.UTC)
    identity = "spiffe://cluster.local/ns/shop/sa/web"
    cert = MeshCA.self_signed("cluster.local", now).issue(identity, now)
    proxy = ir.Proxy(id=NODE, name="web", namespace="shop", ip="127.0.0.9", identity=identity)
    secrets = WorkloadSecrets(cert.chain_pem, cert.key_pem, cert.roots_pem)
    xds.cache.set(NODE, translate(ir.Mesh(proxies=(proxy,)), proxy, EncodeCache(), secrets))

    text = await asyncio.to_thread(fetch_config, xds.address, NODE, "secrets")
    shown = {s["name"]: s for s in yaml.safe_load(text)["secrets"]["resources"]}
    [leaf] = shown["default"]["certificateChain"]
    assert leaf["spiffeID"] == identity
    assert leaf["serial"] == format(cert.serial, "x")
    assert leaf["notAfter"] == cert.not_after.isoformat()
    assert shown["ROOTCA"]["trustedCA"][0]["subject"].endswith("O=cluster.local")
    key_body = cert.key_pem.decode().splitlines()[1]
    assert "PRIVATE KEY" not in text and key_body not in text
