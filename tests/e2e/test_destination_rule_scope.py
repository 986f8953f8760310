"""DestinationRules scoped by namespace, exportTo and workloadSelector, through real
Envoy: clients in different namespaces, calling the same VirtualService route to the
subset `stable`, reach the backend their own applicable rule defines."""

from __future__ import annotations

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


def _rule(name: str, ns: str, version: str, **extra: object) -> dict[str, object]:
    spec = {
        "host": "web.shop.svc.cluster.local",
        "subsets": [{"name": "stable", "labels": {"version": version}}],
        **extra,
    }
    return istio("DestinationRule", name, ns, spec)


async def test_each_client_reaches_the_subset_its_rule_defines(harness: Harness) -> None:
    names = ("v1", "v2", "v3", "shop", "a", "canary", "b")
    ips = {name: harness.ip(n) for n, name in enumerate(names, 30)}
    for version in ("v1", "v2", "v3"):
        harness.backend(f"web-{version}", ips[version], 8080)
    stable = {"destination": {"host": "web.shop.svc.cluster.local", "subset": "stable"}}
    route = {"hosts": ["web.shop.svc.cluster.local"], "http": [{"route": [stable]}]}
    harness.write("owner.yaml", _rule("web", "shop", "v1", exportTo=[".", "team-b"]))
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("team-a"),
        namespace("team-b"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("web-v1", "shop", ips["v1"], {"app": "web", "version": "v1"}, (8080,)),
        pod("web-v2", "shop", ips["v2"], {"app": "web", "version": "v2"}, (8080,)),
        pod("web-v3", "shop", ips["v3"], {"app": "web", "version": "v3"}, (8080,)),
        pod("client", "shop", ips["shop"], {"app": "client"}),
        pod("client", "team-a", ips["a"], {"app": "client"}),
        pod("canary", "team-a", ips["canary"], {"app": "client", "track": "canary"}),
        pod("client", "team-b", ips["b"], {"app": "client"}),
        istio("VirtualService", "web", "shop", route),
        # With the owner's rule (owner.yaml: its own namespace and team-b), the
        # mesh-wide fallback in the root namespace, and team-a's for its canaries.
        _rule("web-default", "pilotfish-system", "v2"),
        _rule("web-canary", "team-a", "v3", workloadSelector={"matchLabels": {"track": "canary"}}),
    )
    await harness.start()

    async def served(client: str) -> set[str | None]:
        url = "http://web.shop:80/"
        return {(await harness.get(ips[client], url)).served_by for _ in range(10)}

    assert await served("shop") == {"web-v1"}
    assert await served("b") == {"web-v1"}  # exported to team-b
    assert await served("a") == {"web-v2"}  # not exported to team-a: the root's rule
    assert await served("canary") == {"web-v3"}  # its own namespace's selector rule

    # Export the owner's rule to everyone: team-a's plain client now gets it too, the
    # canary keeps its own.
    await harness.apply("owner.yaml", _rule("web", "shop", "v1"))
    assert await served("a") == {"web-v1"}
    assert await served("canary") == {"web-v3"}
    assert await served("shop") == {"web-v1"}
