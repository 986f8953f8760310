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
