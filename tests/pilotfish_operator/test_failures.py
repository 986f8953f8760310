"""A bug in translating one object leaves that object out and reports it; everything
else keeps flowing and the control plane keeps running (issue 7)."""

from __future__ import annotations

from typing import Any

import pytest
from test_pipeline import objects, virtual_service

from pilotfish_operator import pipeline as pipeline_module
from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Translator, destination_rules, routes
from pilotfish_xds.cache import SnapshotCache


def store_of(objs: list[dict[str, Any]]) -> Store:
    store = Store()
    for obj in objs:
        store.apply(obj)
    assert not store.errors()
    return store


def rule(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": f"svc-{i}", "namespace": "ns"},
        "spec": {"host": f"svc-{i}", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
    }


@pytest.fixture
def broken_vs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that fires on one VirtualService only (svc-1's)."""
    real = routes.virtual_service_routes

    def buggy(vs: Any, *args: Any) -> Any:
        if vs.name == "svc-1":
            raise KeyError("boom")
        return real(vs, *args)

    monkeypatch.setattr(routes, "virtual_service_routes", buggy)


def timeouts(translation: Any) -> dict[str, Any]:
    out = {}
    for vh in translation.mesh.virtual_hosts:
        routes_ = vh.tables[0].routes if vh.tables else vh.routes
        out[vh.hostname.split(".")[0]] = routes_[0].action.traffic.timeout.total_seconds()
    return out


def test_a_failing_virtual_service_is_left_out_and_named(broken_vs: None) -> None:
    translation = Translator().translate(store_of(objects(3)))
    # svc-1 is still served (its default route); the others keep their VirtualService.
    assert timeouts(translation) == {"svc-0": 0.1, "svc-1": 0.0, "svc-2": 0.1}
    (key,) = translation.failures
    assert key == ("VirtualService", "ns", "svc-1")
    message = str(translation.failures[key])
    assert message.startswith("VirtualService ns/svc-1: could not be translated (KeyError")
    assert "Pilotfish bug" in message


def test_a_failing_destination_rule_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    real = destination_rules.cluster_policy

    def buggy(policy: Any) -> Any:
        if policy.load_balancer is not None:
            raise ValueError("bad merge")
        return real(policy)

    monkeypatch.setattr(destination_rules, "cluster_policy", buggy)
    translation = Translator().translate(store_of([*objects(2), rule(0)]))
    assert set(translation.failures) == {("DestinationRule", "ns", "svc-0")}
    assert len(translation.mesh.clusters) == 2  # both services, svc-0 without its rule
    assert len(translation.mesh.virtual_hosts) == 2


def test_failures_are_reported_again_when_reused_and_cleared_when_fixed(broken_vs: None) -> None:
    store = store_of(objects(3))
    translator = Translator()
    assert set(translator.translate(store).failures) == {("VirtualService", "ns", "svc-1")}
    store.apply(virtual_service(0, 300))  # an unrelated edit reuses svc-1's host
    assert set(translator.translate(store).failures) == {("VirtualService", "ns", "svc-1")}
    store.delete(("VirtualService", "ns", "svc-1"))
    assert translator.translate(store).failures == {}


async def test_pipeline_survives_a_translator_bug_and_a_proxy_bug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, cache = store_of(objects(2)), SnapshotCache()
    pipe = Pipeline(store, cache)
    cache.stream_opened("client.ns", {})
    pipe.rebuild()
    good = cache.get("client.ns")
    assert good is not None

    def broken(*_: Any) -> Any:
        raise RuntimeError("translator bug")

    monkeypatch.setattr(pipe.translator, "translate", broken)
    store.apply(virtual_service(0, 300))
    pipe.rebuild()  # logged; the proxy keeps its config
    assert cache.get("client.ns") is good
    assert pipe.stats.failed == 1

    monkeypatch.setattr(pipeline_module, "to_envoy", broken)
    store.apply(virtual_service(0, 400))
    pipe.rebuild()  # a fresh translator works; building this proxy's config fails
    assert cache.get("client.ns") is good
    assert pipe.stats.failed == 2

    monkeypatch.undo()
    store.apply(virtual_service(0, 500))
    pipe.rebuild()
    assert cache.get("client.ns") is not good
