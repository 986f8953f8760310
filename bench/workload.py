"""Deterministic benchmark workload: N services, 3 endpoints each, one VirtualService
per service, and a DestinationRule with two subsets for every `SUBSET_EVERY`-th one.

Layout (no randomness; the same N always gives the same objects):

- namespaces `team-0` … `team-9` (not injected), plus `client` (injected) holding
  one client pod, the only sidecar, whose Envoy is the one being measured;
- service `svc-<i>` in `team-<i % 10>`, port 8080 (`http`), selector `app: svc-<i>`;
- pods `svc-<i>-0..2` (labels `version: v1, v1, v2`), opted out of injection, and one
  EndpointSlice naming them (how a cluster's endpoint controller would describe them;
  `endpoints="pods"` leaves the slices out, as local mode does);
- every `SUBSET_EVERY`-th service: DestinationRule with subsets v1/v2 and a
  VirtualService splitting 90/10 between them; the others: a VirtualService with a
  header match (`end-user: jason` gets a request header added) and a default route.

Service 0 is the one the edit benchmarks change. `backend_ips` lets the Envoy
benchmark put real echo servers behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

NAMESPACES = 10
SUBSET_EVERY = 5
PORT = 8080
EDITED = 0
CLIENT_NS = "client"
CLIENT_POD = "bench-client"

Obj = dict[str, Any]


def namespace_of(i: int) -> str:
    return f"team-{i % NAMESPACES}"


def host(i: int) -> str:
    """The Host header a client sends for service i."""
    return f"svc-{i}.{namespace_of(i)}:{PORT}"


def has_subsets(i: int) -> bool:
    return i % SUBSET_EVERY == 0


def endpoint_ip(i: int, k: int) -> str:
    """Unique loopback addresses 127.1.0.0 upwards (3 per service)."""
    n = i * 3 + k + 1
    return f"127.{1 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def _meta(name: str, ns: str, **extra: Any) -> Obj:
    return {"name": name, "namespace": ns, **extra}


def namespace(name: str, injected: bool) -> Obj:
    labels = {"mesh-injection": "enabled"} if injected else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def client_pod(ip: str, name: str = CLIENT_POD) -> Obj:
    """An injected client pod (more than one: the fan-out benchmark's sidecars)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, CLIENT_NS, labels={"app": "client"}),
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9000}]}]},
        "status": {"podIP": ip, "phase": "Running"},
    }


def virtual_service(i: int, weights: tuple[int, int] = (90, 10)) -> Obj:
    ns, name = namespace_of(i), f"svc-{i}"
    if has_subsets(i):
        http = [
            {
                "route": [
                    {"destination": {"host": name, "subset": "v1"}, "weight": weights[0]},
                    {"destination": {"host": name, "subset": "v2"}, "weight": weights[1]},
                ]
            }
        ]
    else:
        http = [
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "route": [{"destination": {"host": name}}],
                "headers": {"request": {"set": {"x-canary": "jason"}}},
            },
            {"route": [{"destination": {"host": name}}]},
        ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta(name, ns),
        "spec": {"hosts": [name], "http": http},
    }


def service_objects(
    i: int, endpoints: str = "slices", backend_ips: list[str] | None = None
) -> list[Obj]:
    ns, name = namespace_of(i), f"svc-{i}"
    ips = backend_ips or [endpoint_ip(i, k) for k in range(3)]
    versions = ("v1", "v1", "v2")
    out: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, ns),
            "spec": {
                "selector": {"app": name},
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
            },
        }
    ]
    for k in range(3):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": _meta(
                    f"{name}-{k}",
                    ns,
                    labels={
                        "app": name,
                        "version": versions[k],
                        "sidecar.pilotfish.io/inject": "false",
                    },
                ),
                "spec": {"containers": [{"name": "app", "ports": [{"containerPort": PORT}]}]},
                "status": {"podIP": ips[k], "phase": "Running"},
            }
        )
    if endpoints == "slices":
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": _meta(f"{name}-abcde", ns, labels={"kubernetes.io/service-name": name}),
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": [ips[k]],
                        "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": f"{name}-{k}", "namespace": ns},
                    }
                    for k in range(3)
                ],
            }
        )
    if has_subsets(i):
        out.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": _meta(name, ns),
                "spec": {
                    "host": name,
                    "subsets": [
                        {"name": "v1", "labels": {"version": "v1"}},
                        {"name": "v2", "labels": {"version": "v2"}},
                    ],
                },
            }
        )
    out.append(virtual_service(i))
    return out


def objects(
    n: int,
    *,
    client_ip: str = "127.0.9.10",
    endpoints: str = "slices",
    edited_backends: list[str] | None = None,
) -> Iterator[Obj]:
    """Every object of an N-service mesh, in a fixed order."""
    yield namespace(CLIENT_NS, injected=True)
    for k in range(NAMESPACES):
        yield namespace(f"team-{k}", injected=False)
    yield client_pod(client_ip)
    for i in range(n):
        backends = edited_backends if i == EDITED else None
        yield from service_objects(i, endpoints, backends)


def counts(n: int) -> dict[str, int]:
    """What the mesh holds once translated (for the report)."""
    subsetted = len([i for i in range(n) if has_subsets(i)])
    return {
        "services": n,
        "endpoints": 3 * n,
        "virtual_services": n,
        "destination_rules": subsetted,
        "clusters": n + 2 * subsetted,
    }
