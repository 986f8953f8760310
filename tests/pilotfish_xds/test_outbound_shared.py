"""Proxies with the same outbound view share one built outbound part
(`translate/outbound.py`): sharing must never change what any proxy is sent.
Checked over every golden case's mesh, for every sidecar in it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from pilotfish_xds import ir, types
from pilotfish_xds.codec import EncodeCache
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.translate import WorkloadSecrets, outbound, translate

CASES = Path(__file__).parent / "testdata" / "envoy" / "in"
MESH = TypeAdapter(ir.Mesh)
SECRETS = WorkloadSecrets(b"<chain>", b"<key>", b"<roots>")


def _case(name: str) -> tuple[ir.Mesh, WorkloadSecrets | None]:
    doc = yaml.safe_load((CASES / f"{name}.yaml").read_text())
    return MESH.validate_python(doc["mesh"]), SECRETS if doc.get("mesh_tls") else None


def _content(s: Snapshot) -> dict[str, Any]:
    """Everything a stream could send from the snapshot, by type and name."""
    out: dict[str, Any] = {
        t: {n: r.body for n, r in s.resources(t).items()} for t in sorted(s.type_urls())
    }
    out["versions"] = {t: s.version(t) for t in s.type_urls()}
    if s.on_demand is not None:
        out["on_demand"] = (
            {n: r.body for n, r in s.on_demand.clusters.items()},
            {a: (o.resource.body, o.clusters) for a, o in s.on_demand.virtual_hosts.items()},
            s.on_demand.tables,
        )
    return out


def _twin(proxy: ir.Proxy) -> ir.Proxy:
    """Another pod of the same Deployment: same view, its own name, address and ports."""
    return dataclasses.replace(
        proxy, id=f"{proxy.id}-twin", name=f"{proxy.name}-twin", ip="10.99.0.7", app_ports=(9999,)
    )


def _stranger(proxy: ir.Proxy) -> ir.Proxy:
    """A pod with other labels and elsewhere: whether it shares a view depends on
    whether any rule selects by what differs."""
    labels = tuple(sorted({**dict(proxy.labels), "version": "v9", "pod-hash": "x1"}.items()))
    where = ir.Locality("far-region", "far-zone", "")
    return dataclasses.replace(_twin(proxy), id=f"{proxy.id}-x", labels=labels, locality=where)


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.yaml")))
def test_sharing_changes_nothing(case: str) -> None:
    mesh, secrets = _case(case)
    sidecars = [p for p in mesh.proxies if p.kind == "sidecar"]
    sidecars += [_twin(p) for p in sidecars] + [_stranger(p) for p in sidecars]
    common = EncodeCache()
    for p in sidecars:  # warm: every view built, by whichever proxy came first
        translate(mesh, p, common, secrets)
    for p in sidecars:
        alone = translate(mesh, p, EncodeCache(), secrets)
        assert _content(translate(mesh, p, common, secrets)) == _content(alone), p.id


def test_pods_of_a_deployment_share_their_outbound_part() -> None:
    mesh, secrets = _case("on-demand-iptables")
    proxy = next(p for p in mesh.proxies if p.on_demand)
    cache = EncodeCache()
    one, two = (translate(mesh, p, cache, secrets) for p in (proxy, _twin(proxy)))
    assert one.on_demand is not None
    assert one.on_demand is two.on_demand  # the catalogue of every service: held once
    assert one.resources(types.ENDPOINT) is two.resources(types.ENDPOINT)
    # ...while each keeps its own inbound side.
    assert one.resources(types.CLUSTER) != two.resources(types.CLUSTER)
    # Labels no rule selects by do not split the view; another namespace does.
    relabelled = dataclasses.replace(_twin(proxy), labels=(("pod-hash", "x1"),))
    assert translate(mesh, relabelled, cache, secrets).on_demand is one.on_demand
    elsewhere = dataclasses.replace(_twin(proxy), namespace="elsewhere")
    three = translate(mesh, elsewhere, cache, secrets)
    assert three.on_demand is not one.on_demand


def test_labels_a_rule_selects_by_split_the_view() -> None:
    """A sourceLabels route: pods with and without the label see different routes."""
    mesh, _ = _case("http-matches")
    keys = outbound.selection(mesh).label_keys
    assert keys, "the case has a sourceLabels match"
    proxy = next(p for p in mesh.proxies if p.kind == "sidecar")
    key = sorted(keys)[0]
    a = dataclasses.replace(proxy, labels=((key, "one"),))
    b = dataclasses.replace(_twin(proxy), labels=((key, "two"),))
    assert outbound.viewer(a, outbound.selection(mesh)) != outbound.viewer(
        b, outbound.selection(mesh)
    )


def test_a_new_mesh_builds_new_parts_and_sweeps_the_old() -> None:
    mesh, _ = _case("canary-subsets")
    proxy = next(p for p in mesh.proxies if p.kind == "sidecar")
    cache = EncodeCache()
    before = translate(mesh, proxy, cache)
    cache.sweep()
    rebuilt = MESH.validate_python(MESH.dump_python(mesh))  # equal content, a new object
    after = translate(rebuilt, proxy, cache)
    assert after.resources(types.ENDPOINT) is not before.resources(types.ENDPOINT)
    assert _content(after) == _content(before)
    cache.sweep()
    assert translate(rebuilt, proxy, cache).resources(types.ENDPOINT) is after.resources(
        types.ENDPOINT
    )


def test_versions_are_the_same_on_every_replica() -> None:
    """Content versions: another control plane replica (its own caches, other proxies
    built first) tells a reconnecting proxy the versions it already holds."""
    mesh, secrets = _case("locality-lb")
    sidecars = [p for p in mesh.proxies if p.kind == "sidecar"]
    first = EncodeCache()
    other = EncodeCache()
    for p in reversed(sidecars):
        translate(mesh, _twin(p), other, secrets)
    for p in sidecars:
        a, b = translate(mesh, p, first, secrets), translate(mesh, p, other, secrets)
        assert {t: a.version(t) for t in a.type_urls()} == {t: b.version(t) for t in b.type_urls()}
