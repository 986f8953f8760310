"""Experiment (bench only): how much would a hand-written wire encoder for the two
most numerous resources (ClusterLoadAssignment, EDS Cluster) save over building an
envoy-data-plane message and `bytes()`-ing it? Checks the bytes are identical.

    python bench/wire_experiment.py --n 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from build import client, load_store
from pilotfish_operator.translate import translate as to_ir
from pilotfish_xds import ir
from pilotfish_xds.translate import clusters, view


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def cla_bytes(name: str, endpoints: tuple[ir.Endpoint, ...]) -> bytes:
    """ClusterLoadAssignment{cluster_name=1, endpoints=2{lb_endpoints=2{endpoint=1{
    address=1{socket_address=1{address=2, port_value=3}}}, health_status=2}}}"""
    lbs = b"".join(
        _len(
            2,
            _len(1, _len(1, _len(1, _len(2, e.address.encode()) + b"\x18" + _varint(e.port))))
            + (b"\x10\x01" if e.healthy else b"\x10\x02"),
        )
        for e in endpoints
    )
    return _len(1, name.encode()) + (_len(2, lbs) if endpoints else b"")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    store = load_store(args.n)
    mesh = to_ir(store).mesh
    cs = [c for c in view.visible_clusters(mesh, client(mesh)) if c.lb.policy != "PASSTHROUGH"]
    shipped, wire = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        a = [bytes(clusters.load_assignment(c.name, c.endpoints)) for c in cs]
        t1 = time.perf_counter()
        b = [cla_bytes(c.name, c.endpoints) for c in cs]
        t2 = time.perf_counter()
        shipped.append((t1 - t0) / len(cs) * 1e6)
        wire.append((t2 - t1) / len(cs) * 1e6)
    json.dump(
        {
            "n": args.n,
            "resources": len(cs),
            "cla_us_shipped": statistics.median(shipped),
            "cla_us_wire": statistics.median(wire),
            "identical": a == b,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
