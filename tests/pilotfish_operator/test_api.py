"""The typed API layer: Istio's documented shapes parse, bad input gets one exact message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish_operator.api import (
    NETWORKING_VERSIONS,
    ConfigError,
    DestinationRule,
    EndpointSlice,
    Namespace,
    Pod,
    Service,
    VirtualService,
    parse,
)
from pilotfish_operator.api.meta import format_duration, parse_duration

TESTDATA = Path(__file__).parent / "testdata" / "api"
VALID: list[dict[str, Any]] = list(yaml.safe_load_all((TESTDATA / "valid.yaml").read_text()))


@pytest.mark.parametrize("api_version", NETWORKING_VERSIONS)
@pytest.mark.parametrize("obj", VALID, ids=[o["metadata"]["name"] for o in VALID])
def test_valid_examples_parse_under_every_version(obj: dict[str, Any], api_version: str) -> None:
    res = parse({**obj, "apiVersion": api_version})
    assert isinstance(res, VirtualService | DestinationRule)
    assert res.key == (obj["kind"], obj["metadata"].get("namespace", "default"), res.name)
    # Dumped by alias, the model has the user's shape (nothing dropped or renamed) and reads
    # back to the same model.
    dumped = res.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    assert _shape(dumped["spec"]) == _shape(obj["spec"])
    assert parse(dumped) == res


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return None


def test_models_are_typed_and_frozen() -> None:
    vs = parse(VALID[2])
    assert isinstance(vs, VirtualService)
    route = vs.spec.http[0]
    assert route.timeout == timedelta(seconds=10)
    assert route.retries is not None and route.retries.per_try_timeout == timedelta(seconds=2)
    assert route.match[0].headers["x-canary"].is_empty
    assert route.cors_policy is not None and route.cors_policy.max_age == timedelta(hours=24)
    with pytest.raises(ValueError):
        route.timeout = None  # type: ignore[misc]
    dr = parse(VALID[1])
    assert isinstance(dr, DestinationRule)
    assert [s.name for s in dr.spec.subsets] == ["v1", "v2"]
    assert dr.spec.subset("v2") is not None


# Each case: (object as YAML, the exact str(ConfigError)).
_VS = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
_DR = "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\n"
_DR += "metadata: {name: reviews, namespace: prod}\n"
_ROUTE = "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n"
_GW = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
_SERVER = (
    "spec:\n  servers:\n  - {{port: {{number: 443, name: p, protocol: {proto}}}, hosts: {hosts}"
)
INVALID = {
    "unknown field": (
        _VS + _ROUTE + "    retry: {attempts: 3}\n",
        "VirtualService default/reviews: spec.http[0].retry: unknown field",
    ),
    "wrong type": (
        _VS + _ROUTE + "    retries: {attempts: three}\n",
        "VirtualService default/reviews: spec.http[0].retries.attempts: "
        'must be an integer (got "three")',
    ),
    "string where a list goes": (
        _VS + "spec: {hosts: reviews}\n",
        'VirtualService default/reviews: spec.hosts: must be a list (got "reviews")',
    ),
    "negative weight": (
        _VS
        + "spec:\n  hosts: [reviews]\n  http:\n  - route:\n"
        + "    - destination: {host: reviews, subset: v1}\n"
        + "    - {destination: {host: reviews, subset: v2}, weight: -5}\n",
        "VirtualService default/reviews: spec.http[0].route[1].weight: must be >= 0 (got -5)",
    ),
    "all weights zero": (
        _VS
        + "spec:\n  hosts: [reviews]\n  http:\n  - route:\n"
        + "    - {destination: {host: reviews, subset: v1}, weight: 0}\n"
        + "    - {destination: {host: reviews, subset: v2}, weight: 0}\n",
        "VirtualService default/reviews: spec.http[0].route: "
        "weights must not all be zero when there are several destinations",
    ),
    "bad RE2 regex": (
        _VS + _ROUTE + "    match: [{headers: {x-user: {regex: '(?=x)'}}}]\n",
        "VirtualService default/reviews: spec.http[0].match[0].headers.x-user.regex: "
        'not a valid RE2 regex: invalid perl operator: (?= (got "(?=x)")',
    ),
    "regex Envoy would refuse as too complex": (
        _VS + _ROUTE + "    match: [{uri: {regex: '/a{200}'}}]\n",
        "VirtualService default/reviews: spec.http[0].match[0].uri.regex: "
        'regex too complex for Envoy: RE2 program size 205 > 100 (got "/a{200}")',
    ),
    "header operation on the host header": (
        _VS
        + "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n"
        + "    headers: {request: {set: {Host: evil}}}\n",
        "VirtualService default/reviews: spec.http[0].headers.request.set.Host: "
        "header 'Host' cannot be modified (host and pseudo-headers; "
        "use rewrite.authority to change the host)",
    ),
    "header operation with an invalid name": (
        _VS
        + "spec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n"
        + "    headers: {response: {remove: [x-ok, 'bad name']}}\n",
        "VirtualService default/reviews: spec.http[0].headers.response.remove[1]: "
        "'bad name' is not a valid HTTP header name",
    ),
    "unparsable duration": (
        _VS + _ROUTE + "    timeout: 10 seconds\n",
        "VirtualService default/reviews: spec.http[0].timeout: "
        'must be a duration such as 1h2m3.5s, 10s or 100ms (got "10 seconds")',
    ),
    "duration below 1ms": (
        _DR
        + "spec: {host: reviews, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 10us}}}}\n",
        "DestinationRule prod/reviews: spec.trafficPolicy.connectionPool.tcp.connectTimeout: "
        'must be >= 1ms (got "10us")',
    ),
    "out-of-range port": (
        _VS
        + "spec:\n  hosts: [reviews]\n  http:\n"
        + "  - route: [{destination: {host: reviews, port: {number: 70000}}}]\n",
        "VirtualService default/reviews: spec.http[0].route[0].destination.port.number: "
        "must be <= 65535 (got 70000)",
    ),
    "two of a one-of": (
        _VS + _ROUTE + "    match: [{uri: {exact: /a, prefix: /b}}]\n",
        "VirtualService default/reviews: spec.http[0].match[0].uri: "
        "only one of exact, prefix, regex may be set (got exact, prefix)",
    ),
    "route and redirect": (
        _VS + _ROUTE + "    redirect: {uri: /x}\n",
        "VirtualService default/reviews: spec.http[0]: "
        "only one of route, redirect, directResponse, delegate may be set (got route, redirect)",
    ),
    "no action": (
        _VS + "spec:\n  hosts: [reviews]\n  http:\n  - name: nothing\n",
        "VirtualService default/reviews: spec.http[0]: "
        "must set one of route, redirect, directResponse, delegate",
    ),
    "empty uri match": (
        _VS + _ROUTE + "    match: [{uri: {}}]\n",
        "VirtualService default/reviews: spec.http[0].match[0].uri: "
        "must set one of exact, prefix, regex",
    ),
    "direct response status": (
        _VS + "spec:\n  hosts: [reviews]\n  http:\n  - directResponse: {status: 99}\n",
        "VirtualService default/reviews: spec.http[0].directResponse.status: "
        "must be >= 200 (got 99)",
    ),
    "redirect code": (
        _VS + "spec:\n  hosts: [reviews]\n  http:\n  - redirect: {uri: /x, redirectCode: 200}\n",
        "VirtualService default/reviews: spec.http[0].redirect.redirectCode: "
        "must be >= 300 (got 200)",
    ),
    "retryOn": (
        _VS + _ROUTE + "    retries: {attempts: 2, retryOn: '5xx,gateway-eror'}\n",
        "VirtualService default/reviews: spec.http[0].retries.retryOn: 'gateway-eror' is "
        "not a retry condition; use status codes or 5xx, cancelled, connect-failure, "
        "deadline-exceeded, envoy-ratelimited, gateway-error, http3-post-connect-failure, "
        "internal, refused-stream, reset, reset-before-request, resource-exhausted, "
        "retriable-4xx, retriable-headers, retriable-status-codes, unavailable "
        '(got "5xx,gateway-eror")',
    ),
    "retryOn status": (
        _VS + _ROUTE + "    retries: {attempts: 2, retryOn: '5xx,999'}\n",
        "VirtualService default/reviews: spec.http[0].retries.retryOn: "
        '999 is not an HTTP status code (got "5xx,999")',
    ),
    "perTryTimeout": (
        _VS + _ROUTE + "    retries: {attempts: 2, perTryTimeout: 0s}\n",
        "VirtualService default/reviews: spec.http[0].retries.perTryTimeout: "
        'must be >= 1ms (got "0s")',
    ),
    "delay without duration": (
        _VS + _ROUTE + "    fault: {delay: {percentage: {value: 10}}}\n",
        "VirtualService default/reviews: spec.http[0].fault.delay: "
        "must set one of fixedDelay, exponentialDelay",
    ),
    "grpc status": (
        _VS + _ROUTE + "    fault: {abort: {grpcStatus: NOPE, percentage: {value: 10}}}\n",
        "VirtualService default/reviews: spec.http[0].fault.abort.grpcStatus: must be one of "
        "'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', "
        "'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', "
        "'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS' or "
        """'UNAUTHENTICATED' (got "NOPE")""",
    ),
    "percent": (
        _VS + _ROUTE + "    fault: {abort: {httpStatus: 503, percentage: {value: 101}}}\n",
        "VirtualService default/reviews: spec.http[0].fault.abort.percentage.value: "
        "must be <= 100 (got 101)",
    ),
    "body string and bytes": (
        _VS
        + "spec:\n  hosts: [reviews]\n  http:\n"
        + "  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n",
        "VirtualService default/reviews: spec.http[0].directResponse.body: "
        "only one of string, bytes may be set (got string, bytes)",
    ),
    "enum": (
        _DR + "spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: FASTEST}}}\n",
        "DestinationRule prod/reviews: spec.trafficPolicy.loadBalancer.simple: must be one of "
        "'UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN' or 'LEAST_REQUEST' "
        '(got "FASTEST")',
    ),
    "simple and consistentHash": (
        _DR
        + "spec: {host: reviews, trafficPolicy: {loadBalancer: "
        + "{simple: RANDOM, consistentHash: {useSourceIp: true}}}}\n",
        "DestinationRule prod/reviews: spec.trafficPolicy.loadBalancer: "
        "only one of simple, consistentHash may be set (got simple, consistentHash)",
    ),
    "two hash keys": (
        _DR
        + "spec: {host: reviews, trafficPolicy: {loadBalancer: "
        + "{consistentHash: {useSourceIp: true, httpHeaderName: x}}}}\n",
        "DestinationRule prod/reviews: spec.trafficPolicy.loadBalancer.consistentHash: "
        "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName "
        "may be set (got httpHeaderName, useSourceIp)",
    ),
    "duplicate subset": (
        _DR + "spec: {host: reviews, subsets: [{name: v1}, {name: v1}]}\n",
        "DestinationRule prod/reviews: spec.subsets[1].name: duplicate subset name 'v1'",
    ),
    "empty subset name": (
        _DR + "spec: {host: reviews, subsets: [{name: ''}]}\n",
        "DestinationRule prod/reviews: spec.subsets[0].name: must be a DNS label "
        "(lowercase letters, digits and '-', at most 63) (got \"\")",
    ),
    "subset name not a DNS label": (
        _DR + "spec: {host: reviews, subsets: [{name: v1}, {name: 'Bad Name!'}]}\n",
        "DestinationRule prod/reviews: spec.subsets[1].name: must be a DNS label "
        "(lowercase letters, digits and '-', at most 63) (got \"Bad Name!\")",
    ),
    "missing host": (
        _DR + "spec: {subsets: [{name: v1}]}\n",
        "DestinationRule prod/reviews: spec.host: required field is missing",
    ),
    "empty host entry": (
        _VS + "spec: {hosts: ['']}\n",
        "VirtualService default/reviews: spec.hosts[0]: must not be empty",
    ),
    "delegate with gateways": (
        _VS + "spec: {gateways: [mesh]}\n",
        "VirtualService default/reviews: spec.gateways: "
        "must be empty in a delegate VirtualService (no hosts)",
    ),
    "SNI host not among the VirtualService's hosts": (
        _VS
        + "spec:\n  hosts: ['*.shop.example']\n  tls:\n"
        + "  - match: [{sniHosts: [api.shop.example, db.other.example]}]\n"
        + "    route: [{destination: {host: db}}]\n",
        "VirtualService default/reviews: spec.tls[0].match[0].sniHosts[1]: "
        "SNI host 'db.other.example' is not one of the VirtualService's hosts",
    ),
    "destination subnet that is not a CIDR block": (
        _VS
        + "spec:\n  hosts: [db]\n  tcp:\n"
        + "  - match: [{destinationSubnets: [10.0.0.0/33]}]\n"
        + "    route: [{destination: {host: db}}]\n",
        "VirtualService default/reviews: spec.tcp[0].match[0].destinationSubnets[0]: "
        "not an IP address or CIDR block: '10.0.0.0/33' does not appear to be an IPv4 or "
        'IPv6 network (got "10.0.0.0/33")',
    ),
    "PeerAuthentication mode": (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: pa, namespace: shop}\nspec: {mtls: {mode: STRIC}}\n",
        "PeerAuthentication shop/pa: spec.mtls.mode: must be one of 'UNSET', 'DISABLE', "
        "'PERMISSIVE' or 'STRICT' (got \"STRIC\")",
    ),
    "portLevelMtls without a selector": (
        "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
        "metadata: {name: pa, namespace: shop}\nspec: {portLevelMtls: {8080: {mode: DISABLE}}}\n",
        "PeerAuthentication shop/pa: spec.portLevelMtls: "
        "portLevelMtls requires a workload selector",
    ),
    "portLevelMtls port out of range": (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: pa, namespace: shop}\n"
        "spec: {selector: {matchLabels: {app: a}}, portLevelMtls: {'0': {mode: DISABLE}}}\n",
        'PeerAuthentication shop/pa: spec.portLevelMtls.0.[key]: must be >= 1 (got "0")',
    ),
    "RequestAuthentication with both jwks and jwksUri": (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: ra, namespace: shop}\nspec:\n  jwtRules:\n"
        "  - {issuer: i, jwksUri: 'https://i/keys', jwks: '{\"keys\": [{}]}'}\n",
        "RequestAuthentication shop/ra: spec.jwtRules[0].jwksUri: set one of jwks and jwksUri",
    ),
    "RequestAuthentication jwks that is not a key set": (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        "metadata: {name: ra, namespace: shop}\nspec:\n  jwtRules:\n"
        "  - {issuer: i, jwks: 'not json'}\n",
        "RequestAuthentication shop/ra: spec.jwtRules[0].jwks: "
        'not a JWK set (JSON with "keys") (got "not json")',
    ),
    "AuthorizationPolicy unknown when key": (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: ap, namespace: shop}\nspec:\n  rules:\n"
        "  - when: [{key: request.time, values: [x]}]\n",
        "AuthorizationPolicy shop/ap: spec.rules[0].when[0].key: unknown attribute; one of "
        "request.headers[<name>], request.auth.claims[<claim>], "
        "experimental.envoy.filters.<filter>[<key>], connection.sni, "
        "destination.ip, destination.port, remote.ip, request.auth.audiences, "
        "request.auth.presenter, request.auth.principal, source.ip, source.namespace, "
        'source.principal, source.trustDomain (got "request.time")',
    ),
    "apiVersion": (
        _VS.replace("networking.istio.io/v1", "networking.istio.io/v2") + "spec: {hosts: [a]}\n",
        "VirtualService default/reviews: apiVersion: must be one of networking.istio.io/v1, "
        'networking.istio.io/v1beta1, networking.istio.io/v1alpha3 (got "networking.istio.io/v2")',
    ),
    "recognised kind": (
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef}\n",
        "EnvoyFilter default/ef: kind: networking.istio.io/EnvoyFilter is recognised but not "
        "supported yet by Pilotfish",
    ),
    "kind": (
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFiltr\nmetadata: {name: ef}\n",
        "EnvoyFiltr default/ef: kind: unknown kind 'EnvoyFiltr'; expected one of VirtualService, "
        "DestinationRule, Gateway, PeerAuthentication, AuthorizationPolicy, "
        "RequestAuthentication, Telemetry, ServiceEntry, WorkloadEntry, Sidecar, GatewayClass, "
        "HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, ReferenceGrant, Namespace, Service, Pod, "
        "EndpointSlice, ServiceAccount, Node, ConfigMap, Secret",
    ),
    "gateway without servers": (
        _GW + "spec: {selector: {istio: ingressgateway}}\n",
        "Gateway default/gw: spec.servers: at least one server is required",
    ),
    "gateway host": (
        _GW + _SERVER.format(proto="HTTP", hosts="[a/b/c.com]") + "}\n",
        "Gateway default/gw: spec.servers[0].hosts[0]: at most one '/' (namespace/host)",
    ),
    "gateway wildcard": (
        _GW + _SERVER.format(proto="HTTP", hosts="['a.*.com']") + "}\n",
        "Gateway default/gw: spec.servers[0].hosts[0]: a wildcard is allowed only as the "
        "whole first label ('*.example.com')",
    ),
    "gateway protocol": (
        _GW + _SERVER.format(proto="QUIC", hosts="['*']") + "}\n",
        "Gateway default/gw: spec.servers[0].port.protocol: unsupported protocol 'QUIC'",
    ),
    "https without tls": (
        _GW + _SERVER.format(proto="HTTPS", hosts="['*']") + "}\n",
        "Gateway default/gw: spec.servers[0].tls: a HTTPS server requires tls settings",
    ),
    "simple without certificate": (
        _GW + _SERVER.format(proto="HTTPS", hosts="['*']") + ", tls: {mode: SIMPLE}}\n",
        "Gateway default/gw: spec.servers[0].tls.mode: SIMPLE requires credentialName or "
        "serverCertificate",
    ),
    "istio mutual with credential": (
        _GW
        + _SERVER.format(proto="HTTPS", hosts="['*']")
        + ", tls: {mode: ISTIO_MUTUAL, credentialName: c}}\n",
        "Gateway default/gw: spec.servers[0].tls.mode: ISTIO_MUTUAL uses the mesh's "
        "certificates: no credentialName, serverCertificate, privateKey or caCertificates",
    ),
}


@pytest.mark.parametrize(("text", "expected"), INVALID.values(), ids=INVALID.keys())
def test_invalid_objects_give_one_clear_message(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(yaml.safe_load(text))
    assert str(info.value) == expected
    assert len(info.value.problems) == 1


def test_several_problems_one_line_each() -> None:
    text = _VS + _ROUTE + "    timeout: soon\n    retries: {attempts: -1}\n    bogus: 1\n"
    with pytest.raises(ConfigError) as info:
        parse(yaml.safe_load(text))
    err = info.value
    assert (err.kind, err.namespace, err.name) == ("VirtualService", "default", "reviews")
    assert [p.path for p in err.problems] == [
        "spec.http[0].timeout",
        "spec.http[0].retries.attempts",
        "spec.http[0].bogus",
    ]
    assert str(err).count("\n") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("10s", timedelta(seconds=10)),
        ("1.5s", timedelta(seconds=1.5)),
        ("100ms", timedelta(milliseconds=100)),
        ("1h2m3.5s", timedelta(hours=1, minutes=2, seconds=3.5)),
        ("250us", timedelta(microseconds=250)),
    ],
)
def test_go_durations_round_trip(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "10", "s", "1.s5", "-1s", "1d", "1 s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


KUBE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo, managedFields: [{manager: kubectl}]}
spec:
  selector: {app: reviews}
  clusterIP: 10.0.0.12
  clusterIPs: [10.0.0.12]
  type: ClusterIP
  ports:
  - {name: http, port: 9080, targetPort: 9080, protocol: TCP, appProtocol: http}
  - {name: grpc, port: 9090, targetPort: grpc}
status: {loadBalancer: {}}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1-abc, namespace: bookinfo, labels: {app: reviews, version: v1}}
spec:
  serviceAccountName: bookinfo-reviews
  nodeName: node-1
  containers:
  - name: reviews
    image: reviews:v1
    ports: [{containerPort: 9080, name: http, protocol: TCP}]
status:
  podIP: 127.0.0.10
  phase: Running
  conditions: [{type: Ready, status: "True", lastTransitionTime: null}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-xyz
  namespace: bookinfo
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [127.0.0.10]
  conditions: {ready: true, serving: true, terminating: false}
  targetRef: {kind: Pod, name: reviews-v1-abc, namespace: bookinfo}
  nodeName: node-1
  zone: zone-a
ports: [{name: http, port: 9080, protocol: TCP}]
---
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {mesh-injection: enabled}}
"""


def test_kubernetes_kinds_ignore_unread_fields() -> None:
    svc, pod, eps, ns = (parse(d) for d in yaml.safe_load_all(KUBE))
    assert isinstance(svc, Service)
    assert svc.spec.cluster_ip == "10.0.0.12"
    assert [p.target_port for p in svc.spec.ports] == [9080, "grpc"]
    assert isinstance(pod, Pod)
    assert (pod.status.pod_ip, pod.ready, pod.service_account) == (
        "127.0.0.10",
        True,
        "bookinfo-reviews",
    )
    assert pod.spec.containers[0].ports[0].container_port == 9080
    assert isinstance(eps, EndpointSlice)
    assert eps.service_name == "reviews"
    assert eps.endpoints[0].target_ref is not None
    assert eps.endpoints[0].target_ref.name == "reviews-v1-abc"
    assert isinstance(ns, Namespace)
    assert ns.key == ("Namespace", "", "bookinfo")


def test_kubernetes_kinds_still_type_check_what_we_read() -> None:
    obj = yaml.safe_load(KUBE.split("---")[0])
    obj["spec"]["ports"][0]["port"] = "9080"
    obj["spec"]["ports"][1]["targetPort"] = 1.5
    with pytest.raises(ConfigError) as info:
        parse(obj)
    assert str(info.value) == (
        'Service bookinfo/reviews: spec.ports[0].port: must be an integer (got "9080")\n'
        "Service bookinfo/reviews: spec.ports[1].targetPort: "
        "must be an integer or a string (got 1.5)"
    )


def test_kubernetes_null_means_unset_for_every_kind() -> None:
    """The API server writes unset lists, maps and pointers without omitempty as null:
    an empty EndpointSlice arrives as `endpoints: null, ports: null` (issue 12)."""
    meta = {"name": "x", "namespace": "shop", "labels": None, "annotations": None}
    empty = parse(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {**meta, "labels": {"kubernetes.io/service-name": "ratings"}},
            "addressType": "IPv4",
            "endpoints": None,
            "ports": None,
        }
    )
    assert isinstance(empty, EndpointSlice)
    assert (empty.endpoints, empty.ports, empty.service_name) == ((), (), "ratings")
    slice_ = parse(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta,
            "addressType": "IPv4",
            "endpoints": [{"addresses": None, "conditions": None, "targetRef": None}],
            "ports": [{"name": None, "port": None, "protocol": None}],
        }
    )
    assert isinstance(slice_, EndpointSlice)
    assert slice_.endpoints[0].addresses == () and slice_.endpoints[0].conditions.ready is None
    assert slice_.ports[0].protocol == "TCP"
    svc = parse(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": None, "ports": None, "clusterIP": None},
        }
    )
    assert isinstance(svc, Service)
    assert (svc.spec.selector, svc.spec.ports, svc.metadata.labels) == ({}, (), {})
    pod = parse(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": [{"name": "app", "ports": None}], "nodeName": None},
            "status": {"podIP": None, "conditions": None},
        }
    )
    assert isinstance(pod, Pod)
    assert pod.spec.containers[0].ports == () and pod.status.conditions == ()
    for kind, version in (("Namespace", "v1"), ("Node", "v1"), ("ServiceAccount", "v1")):
        obj = parse({"apiVersion": version, "kind": kind, "metadata": {**meta, "namespace": None}})
        assert obj.metadata.labels == {}
