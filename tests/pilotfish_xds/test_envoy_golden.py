"""Golden tests for the IR → Envoy seam: `in/<case>.yaml` (mesh IR + which proxy) →
`out/<case>.<type>.yaml`, decoded from the exact bytes the ADS server would send.
Telemetry's shared blocks appear by name (whole in the `telemetry` case)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration, VirtualHost
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
)
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy
from envoy_data_plane.google.protobuf import Any as AnyPb
from pydantic import TypeAdapter

from pilotfish_xds import ir, types
from pilotfish_xds.codec import EncodeCache, decode
from pilotfish_xds.on_demand import OnDemand
from pilotfish_xds.translate import WorkloadSecrets, telemetry, translate

CASES = Path(__file__).parent / "testdata" / "envoy"
MESH = TypeAdapter(ir.Mesh)
OUTPUTS = {
    "clusters": types.CLUSTER,
    "endpoints": types.ENDPOINT,
    "listeners": types.LISTENER,
    "routes": types.ROUTE,
}


def _shared_blocks() -> dict[str, Any]:
    """Telemetry's blocks, identical on every listener and mesh route: named in each
    golden (the `telemetry` case shows them whole), as decoded from the wire."""
    logs = [telemetry.source_log(), telemetry.destination_log(True)]
    logs.append(telemetry.destination_log(False))
    hcm = HttpConnectionManager(access_log=logs, http_filters=[telemetry.peer_filter()])
    vhost = VirtualHost(name="x", request_headers_to_add=list(telemetry.peer_headers()))
    listener = Listener(
        name="x",
        filter_chains=[FilterChain(filters=[Filter(name="hcm", typed_config=AnyPb.pack(hcm))])],
    )
    decoded = decode(types.LISTENER, bytes(listener)).to_dict()
    config = decoded["filterChains"][0]["filters"][0]["typedConfig"]
    route = decode(types.ROUTE, bytes(RouteConfiguration(virtual_hosts=[vhost]))).to_dict()
    tcp_logs = {
        "tcp_source_logs()": telemetry.tcp_source_logs(),
        "tcp_destination_logs(mutual_tls=True)": telemetry.tcp_destination_logs(True),
        "tcp_destination_logs(mutual_tls=False)": telemetry.tcp_destination_logs(False),
    }
    tcp = {}
    for label, logs in tcp_logs.items():
        proxy = TcpProxy(stat_prefix="x", cluster="x", access_log=list(logs))
        chain = FilterChain(filters=[Filter(name="tcp", typed_config=AnyPb.pack(proxy))])
        found = decode(types.LISTENER, bytes(Listener(name="x", filter_chains=[chain]))).to_dict()
        tcp[f"<telemetry.{label}>"] = found["filterChains"][0]["filters"][0]["typedConfig"][
            "accessLog"
        ]
    return {
        **tcp,
        "<telemetry.source_log()>": config["accessLog"][0],
        "<telemetry.destination_log(mutual_tls=True)>": config["accessLog"][1],
        "<telemetry.destination_log(mutual_tls=False)>": config["accessLog"][2],
        "<telemetry.peer_filter()>": config["httpFilters"][0],
        "<telemetry.peer_headers()>": route["virtualHosts"][0]["requestHeadersToAdd"],
    }


def _elide(node: Any, blocks: dict[str, Any]) -> Any:
    for label, block in blocks.items():
        if node == block:
            return label
    if isinstance(node, dict):
        return {k: _elide(v, blocks) for k, v in node.items()}
    if isinstance(node, list):
        return [_elide(v, blocks) for v in node]
    return node


def _cases() -> list[str]:
    return sorted(p.stem for p in (CASES / "in").glob("*.yaml"))


@pytest.mark.parametrize("case", _cases())
def test_envoy(case: str, golden: Callable[[Path, str], None]) -> None:
    doc = yaml.safe_load((CASES / "in" / f"{case}.yaml").read_text())
    mesh = MESH.validate_python(doc["mesh"])
    proxy = mesh.proxy(doc["proxy"])
    assert proxy is not None
    # `mesh_tls: true`: the proxy holds a workload certificate (stand-in PEM bytes; the
    # goldens show where secrets are referenced, never their content).
    secrets = WorkloadSecrets(b"<chain>", b"<key>", b"<roots>") if doc.get("mesh_tls") else None
    snapshot = translate(mesh, proxy, EncodeCache(), secrets)
    assert snapshot.consistent(), snapshot.missing()
    assert sorted(snapshot.resources(types.SECRET)) == (["ROOTCA", "default"] if secrets else [])
    blocks = {} if case == "telemetry" else _shared_blocks()
    for short, type_url in OUTPUTS.items():
        resources = [
            _elide(decode(type_url, r.body).to_dict(), blocks)
            for _, r in sorted(snapshot.resources(type_url).items())
        ]
        golden(
            CASES / "out" / f"{case}.{short}.yaml",
            yaml.safe_dump(resources, sort_keys=False, width=100),
        )
    if snapshot.on_demand is not None:  # a scoped proxy: what it may fetch
        golden(
            CASES / "out" / f"{case}.on-demand.yaml",
            yaml.safe_dump(_on_demand(snapshot.on_demand, blocks), sort_keys=False, width=100),
        )


def _on_demand(catalogue: OnDemand, blocks: dict[str, Any]) -> dict[str, Any]:
    """The catalogue: each virtual host once (decoded) with the aliases that find it and
    the clusters sent before it; clusters by name (their content is as when pushed)."""
    aliases: dict[str, list[str]] = {}
    offers = {}
    for alias, offer in sorted(catalogue.virtual_hosts.items()):
        aliases.setdefault(offer.resource.name, []).append(alias)
        offers[offer.resource.name] = offer
    unknown = {
        t: decode(types.VIRTUAL_HOST, f("<host>").body).to_dict()
        for t, f in sorted(catalogue.fallbacks.items())
    }
    return {
        "tables": list(catalogue.tables),
        "unknown_host": unknown,
        "clusters": sorted(catalogue.clusters),
        "virtual_hosts": [
            {
                "aliases": aliases[name],
                "clusters": list(offer.clusters),
                "resource": _elide(
                    decode(types.VIRTUAL_HOST, offer.resource.body).to_dict(), blocks
                ),
            }
            for name, offer in sorted(offers.items())
        ],
    }


def test_no_orphan_outputs() -> None:
    cases = set(_cases())
    orphans = {p.name for p in (CASES / "out").glob("*.yaml") if p.name.split(".")[0] not in cases}
    assert not orphans, f"golden outputs without inputs: {sorted(orphans)}"
