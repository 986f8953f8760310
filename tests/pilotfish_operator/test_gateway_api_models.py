"""The Gateway API kinds: identity beside Istio's kinds of the same name, and validation."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish_operator.api import ConfigError, parse
from pilotfish_operator.api.gateway_api import KubernetesGateway, KubernetesHTTPRoute
from pilotfish_operator.kube.gateway_secrets import wanted
from pilotfish_operator.kube.kinds import BY_KIND, key_of, to_store
from pilotfish_operator.store import Store

GW = "gateway.networking.k8s.io/v1"


def k8s_gateway(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "gatewayClassName": "pilotfish",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            **spec,
        },
    }


def istio_gateway(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }


def route(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GW,
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": spec,
    }


def test_both_gateway_kinds_live_side_by_side_with_one_name() -> None:
    store = Store()
    istio = store.apply(istio_gateway())
    kube = store.apply(k8s_gateway())
    assert istio == ("Gateway", "shop", "web")
    assert kube == ("KubernetesGateway", "shop", "web")
    assert isinstance(store.get(kube), KubernetesGateway)
    assert store.errors() == {}
    store.delete(kube)
    assert store.get(istio) is not None and store.get(kube) is None


def test_an_invalid_gateway_api_gateway_is_reported_under_its_own_key() -> None:
    store = Store()
    store.apply(istio_gateway())
    key = store.apply(k8s_gateway(listeners=[]))
    assert key == ("KubernetesGateway", "shop", "web")
    assert "spec.listeners" in str(store.errors()[key])
    assert store.get(("Gateway", "shop", "web")) is not None


def test_a_watched_gateway_api_object_keeps_its_wire_kind() -> None:
    watched = BY_KIND["KubernetesGateway"]
    assert (watched.group, watched.plural, watched.wire_kind) == (
        "gateway.networking.k8s.io",
        "gateways",
        "Gateway",
    )
    listed = {k: v for k, v in k8s_gateway().items() if k not in ("apiVersion", "kind")}
    obj = to_store(watched, listed)
    assert (obj["apiVersion"], obj["kind"]) == (GW, "Gateway")
    assert key_of(watched, listed) == ("KubernetesGateway", "shop", "web")
    assert key_of(BY_KIND["Gateway"], listed) == ("Gateway", "shop", "web")


def test_a_kind_in_two_groups_needs_its_api_version() -> None:
    with pytest.raises(ConfigError) as err:
        parse({**k8s_gateway(), "apiVersion": "v1"})
    assert "apiVersion" in str(err.value) and GW in str(err.value)


def test_defaults_are_the_specs() -> None:
    r = parse(
        route(parentRefs=[{"name": "web"}], rules=[{"backendRefs": [{"name": "a", "port": 80}]}])
    )
    assert isinstance(r, KubernetesHTTPRoute)
    (rule,) = r.spec.rules
    assert rule.matches[0].path is not None
    assert (rule.matches[0].path.type, rule.matches[0].path.value) == ("PathPrefix", "/")
    assert rule.backend_refs[0].weight == 1
    assert (r.spec.parent_refs[0].group, r.spec.parent_refs[0].kind) == (
        GW.split("/")[0],
        "Gateway",
    )


@pytest.mark.parametrize(
    ("obj", "path", "why"),
    [
        (
            k8s_gateway(listeners=[{"name": "s", "port": 443, "protocol": "HTTPS"}]),
            "spec.listeners[0].tls",
            "needs tls",
        ),
        (
            k8s_gateway(
                listeners=[
                    {"name": "a", "port": 80, "protocol": "HTTP"},
                    {"name": "a", "port": 81, "protocol": "HTTP"},
                ]
            ),
            "spec.listeners[1].name",
            "already",
        ),
        (
            k8s_gateway(
                listeners=[
                    {
                        "name": "a",
                        "port": 80,
                        "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "Selector"}},
                    }
                ]
            ),
            "spec.listeners[0].allowedRoutes.namespaces.selector",
            "needs a selector",
        ),
        (
            route(rules=[{"matches": [{"path": {"type": "RegularExpression", "value": "(?=a)"}}]}]),
            "spec.rules[0].matches[0].path.value",
            "RE2",
        ),
        (
            route(
                rules=[
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                        "filters": [
                            {
                                "type": "URLRewrite",
                                "urlRewrite": {
                                    "path": {
                                        "type": "ReplacePrefixMatch",
                                        "replacePrefixMatch": "/b",
                                    }
                                },
                            }
                        ],
                    }
                ]
            ),
            "spec.rules[0].filters",
            "PathPrefix",
        ),
        (
            route(
                rules=[
                    {
                        "filters": [
                            {"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}},
                            {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example"}},
                        ]
                    }
                ]
            ),
            "spec.rules[0].filters",
            "cannot be combined",
        ),
        (route(hostnames=["10.0.0.1"]), "spec.hostnames[0]", "IP address"),
        (
            route(rules=[{"filters": [{"type": "RequestHeaderModifier"}]}]),
            "spec.rules[0].filters[0].requestHeaderModifier",
            "needs",
        ),
        (
            route(
                rules=[
                    {
                        "matches": [
                            {
                                "headers": [
                                    {"name": "X-A", "value": "1"},
                                    {"name": "x-a", "value": "2"},
                                ]
                            }
                        ]
                    }
                ]
            ),
            "spec.rules[0].matches[0].headers[1].name",
            "twice",
        ),
    ],
)
def test_invalid_objects_name_the_field(obj: dict[str, Any], path: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(obj)
    found = {(p.path, p.reason) for p in err.value.problems}
    assert any(p == path and why in r for p, r in found), found


def test_a_cluster_reads_the_certificate_refs_of_served_gateways() -> None:

    store = Store()
    https = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "web-cert"}]},
    }
    store.apply(k8s_gateway(listeners=[https]))
    assert wanted(store) == set()  # no pod serves it yet
    labels = {"gateway.networking.k8s.io/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    store.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": labels},
            "spec": {"containers": [{"name": "proxy"}]},
            "status": {"podIP": "10.0.0.9"},
        }
    )
    assert wanted(store) == {("Secret", "shop", "web-cert")}


def _listener_conditions(store: Store) -> dict[str, tuple[str, str]]:
    from pilotfish_operator.translate import translate

    status = translate(store).statuses[("KubernetesGateway", "shop", "web")]
    (listener,) = status["listeners"]
    return {c["type"]: (c["status"], c["reason"]) for c in listener["conditions"]}


def test_a_certificate_of_another_namespace_needs_a_reference_grant() -> None:
    store = Store()
    https = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "cert", "namespace": "certs"}]},
    }
    store.apply(k8s_gateway(listeners=[https]))
    found = _listener_conditions(store)
    assert found["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert found["Programmed"] == ("False", "Invalid")
    store.apply(
        {
            "apiVersion": f"{GW.split('/')[0]}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "gateways", "namespace": "certs"},
            "spec": {
                "from": [{"group": GW.split("/")[0], "kind": "Gateway", "namespace": "shop"}],
                "to": [{"group": "", "kind": "Secret"}],
            },
        }
    )
    found = _listener_conditions(store)
    assert found["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert found["Programmed"] == ("True", "Programmed")
    # In a cluster, the operator reads that Secret by name from the granted namespace.
    labels = {"gateway.networking.k8s.io/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    store.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": labels},
            "spec": {"containers": [{"name": "proxy"}]},
            "status": {"podIP": "10.0.0.9"},
        }
    )
    assert wanted(store) == {("Secret", "certs", "cert")}


def test_an_istio_gateway_cannot_name_the_gateway_api_credential_form() -> None:
    """`kubernetes-gateway://ns/name` is made up only for certificateRefs a ReferenceGrant
    allows: an Istio Gateway naming it would read another namespace's Secret."""
    from pilotfish_operator.translate import translate

    store = Store()
    store.apply(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "sneaky", "namespace": "shop"},
            "spec": {
                "selector": {"pilotfish.io/proxy": "gateway"},
                "servers": [
                    {
                        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["*"],
                        "tls": {
                            "mode": "SIMPLE",
                            "credentialName": "kubernetes-gateway://certs/cert",
                        },
                    }
                ],
            },
        }
    )
    store.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "gw-1",
                "namespace": "shop",
                "labels": {"pilotfish.io/proxy": "gateway"},
            },
            "spec": {"containers": [{"name": "proxy"}]},
            "status": {"podIP": "10.0.0.9"},
        }
    )
    result = translate(store)
    (proxy,) = [p for p in result.mesh.proxies if p.kind == "gateway"]
    assert proxy.servers == ()
    assert any("Gateway API certificateRefs only" in w for w in result.warnings), result.warnings
