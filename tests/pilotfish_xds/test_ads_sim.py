"""The many-proxies benchmark's harness (bench/ads_clients.py, ads_sim.py, ads_wire.py): its
simulated sidecars speak the wire format the server does, converge, and see an edit,
so the benchmark cannot silently measure nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    Resource,
)

from pilotfish_xds import codec, types
from pilotfish_xds.codec import Encoded

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import ads_wire as ads_sim  # noqa: E402


def number(cls: type, name: str) -> int:
    return int(cls._betterproto.meta_by_field_name[name].number)  # type: ignore[attr-defined]


def test_field_numbers_are_envoys() -> None:
    assert tuple(
        number(DeltaDiscoveryRequest, n)
        for n in ("node", "type_url", "resource_names_subscribe", "resource_names_unsubscribe")
    ) == (ads_sim.REQ_NODE, ads_sim.REQ_TYPE, ads_sim.REQ_SUB, ads_sim.REQ_UNSUB)
    assert (
        number(DeltaDiscoveryRequest, "response_nonce"),
        number(DeltaDiscoveryRequest, "error_detail"),
    ) == (ads_sim.REQ_NONCE, ads_sim.REQ_ERROR)
    assert tuple(number(Resource, n) for n in ("version", "resource", "name", "aliases")) == (
        ads_sim.RES_VERSION,
        ads_sim.RES_ANY,
        ads_sim.RES_NAME,
        ads_sim.RES_ALIASES,
    )
    assert tuple(
        number(DeltaDiscoveryResponse, n)
        for n in ("system_version_info", "resources", "type_url", "nonce", "removed_resources")
    ) == (
        ads_sim.RESP_VERSION,
        ads_sim.RESP_RESOURCES,
        ads_sim.RESP_TYPE,
        ads_sim.RESP_NONCE,
        ads_sim.RESP_REMOVED,
    )


def test_requests_and_responses_round_trip() -> None:
    body = ads_sim.request(
        types.VIRTUAL_HOST, subscribe=["8080/a:80"], unsubscribe=["x"], nonce="n-1", error="bad"
    )
    parsed = DeltaDiscoveryRequest.parse(body)
    assert parsed.type_url == types.VIRTUAL_HOST
    assert parsed.resource_names_subscribe == ["8080/a:80"]
    assert parsed.resource_names_unsubscribe == ["x"]
    assert parsed.response_nonce == "n-1"
    assert parsed.error_detail is not None and parsed.error_detail.message == "bad"

    vhost = Encoded("8080/a", b"\x0a\x06" + b"8080/a")
    wire = codec.delta_response(
        types.VIRTUAL_HOST, "v9", "n-2", [vhost], ["gone"], {"8080/a": ["8080/a:80"]}
    )
    r = ads_sim.parse_response(wire)
    assert (r.type_url, r.nonce, r.system_version, r.removed) == (
        types.VIRTUAL_HOST,
        "n-2",
        "v9",
        ["gone"],
    )
    assert [(i.name, i.version, i.body, i.aliases) for i in r.resources] == [
        ("8080/a", vhost.hash, vhost.body, ("8080/a:80",))
    ]


def test_simulated_sidecars_converge_and_see_every_edit() -> None:
    """The whole benchmark at a tiny size: 4 proxies, one told to reject the edit."""
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH / "ads_clients.py"),
            "--services",
            "20",
            "--clients",
            "4",
            "--edits",
            "2",
            "--idle",
            "1",
            "--nack-fraction",
            "0.25",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    out = json.loads(run.stdout)
    assert out["connect"]["converged_s"]["n"] == 4 and not out["connect"]["errors"]
    assert out["fetch"]["latency_s"]["n"] == 4 and not out["fetch"]["errors"]
    stats = out["converged_stats"]
    assert stats["connected"] == 4 and stats["distinct_peers"] == 4
    for edit in out["edits"]:
        # every proxy got the edited virtual host: three accept it, one rejects it
        assert (edit["acked"], edit["nacked"], edit["missing"]) == (3, 1, 0)
        assert (edit["server_acks"], edit["server_nacks"]) == (3, 1)
        assert 0 < edit["from_rebuild_start_s"]["max"] < 60
        assert edit["first_send_s"] is not None and edit["first_send_s"] >= edit["rebuild_s"]
        # and a rejected virtual host is not offered again
        assert edit["vhds_responses_per_proxy"] == [1]
    assert out["final_stats"]["nacks_total"] == 2
    assert out["idle"]["cores"] >= 0
