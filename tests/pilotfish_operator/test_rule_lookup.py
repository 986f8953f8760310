"""Which DestinationRule a client gets when rules differ by client (exportTo,
workloadSelector, namespace), as Istio looks it up: the client's own namespace (a
matching workloadSelector first), then the service's namespace if exported to the
client, then the root namespace, then none."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish_operator.store import Store
from pilotfish_operator.translate import translate
from pilotfish_xds.translate import view

HOST = "web.shop.svc.cluster.local"
CANARY = {"track": "canary"}


def _obj(kind: str, name: str, ns: str, spec: dict[str, Any], labels: Any = None) -> Any:
    api = "networking.istio.io/v1" if kind == "DestinationRule" else "v1"
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _pod(name: str, ns: str, ip: str, labels: dict[str, str]) -> Any:
    pod = _obj("Pod", name, ns, {"containers": [{"name": "app"}]}, labels)
    pod["status"] = {"podIP": ip}
    return pod


def _rule(name: str, ns: str, policy: str, **extra: Any) -> Any:
    spec = {"host": HOST, "trafficPolicy": {"loadBalancer": {"simple": policy}}, **extra}
    return _obj("DestinationRule", name, ns, spec)


def _policies(*rules: Any) -> dict[str, str]:
    """Each client proxy → the load-balancing policy of the web cluster it is given."""
    store = Store()
    for ns in ("shop", "team-a", "team-b", "team-c"):
        meta = {"name": ns, "labels": {"mesh-injection": "enabled"}}
        store.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    store.apply(
        _obj("Service", "web", "shop", {"selector": {"app": "web"}, "ports": [{"port": 80}]})
    )
    store.apply(_pod("in-shop", "shop", "127.0.8.1", {}))
    store.apply(_pod("a", "team-a", "127.0.8.2", {}))
    store.apply(_pod("a-canary", "team-a", "127.0.8.3", {"track": "canary"}))
    store.apply(_pod("b", "team-b", "127.0.8.4", {}))
    store.apply(_pod("c", "team-c", "127.0.8.5", {}))
    for r in rules:
        store.apply(r)
    assert not store.errors()
    mesh = translate(store).mesh
    out = {}
    for proxy in mesh.proxies:
        (web,) = [c for c in view.visible_clusters(mesh, proxy) if c.hostname == HOST]
        out[proxy.name] = web.policy.lb.policy
    return out


def test_each_client_gets_the_rule_istio_would_pick() -> None:
    got = _policies(
        _rule("owner", "shop", "RANDOM", exportTo=[".", "team-b"]),
        _rule("fallback", "pilotfish-system", "LEAST_REQUEST"),
        _rule("canary", "team-a", "ROUND_ROBIN", workloadSelector={"matchLabels": CANARY}),
    )
    assert got == {
        "in-shop": "RANDOM",  # the service's namespace is its own
        "a": "LEAST_REQUEST",  # not exported to team-a; its selector rule is not for it
        "a-canary": "ROUND_ROBIN",  # a matching workloadSelector in its own namespace
        "b": "RANDOM",  # exported to team-b
        "c": "LEAST_REQUEST",  # the root namespace's rule
    }


def test_a_client_namespace_rule_beats_the_service_owners() -> None:
    got = _policies(
        _rule("owner", "shop", "RANDOM"),
        _rule("mine", "team-c", "LEAST_REQUEST"),
    )
    assert got == {
        "in-shop": "RANDOM",
        "a": "RANDOM",
        "a-canary": "RANDOM",
        "b": "RANDOM",
        "c": "LEAST_REQUEST",
    }


@pytest.mark.parametrize("export_to", [["."], ["team-b"]])
def test_without_a_visible_rule_a_client_gets_none(export_to: list[str]) -> None:
    got = _policies(_rule("owner", "shop", "RANDOM", exportTo=export_to))
    seen = {name for name, policy in got.items() if policy == "RANDOM"}
    assert seen == {"in-shop", *(["b"] if export_to == ["team-b"] else [])}
    assert {p for n, p in got.items() if n not in seen} == {"ROUND_ROBIN"}


def test_one_rule_for_everyone_stays_one_unscoped_cluster() -> None:
    store = Store()
    store.apply(
        _obj("Service", "web", "shop", {"selector": {"app": "web"}, "ports": [{"port": 80}]})
    )
    store.apply(_rule("owner", "shop", "RANDOM"))
    mesh = translate(store).mesh
    assert [(c.name, c.scope) for c in mesh.clusters] == [(f"outbound|80||{HOST}", None)]
