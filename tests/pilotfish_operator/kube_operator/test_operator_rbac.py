"""Every API call the operator makes is allowed by the chart's RBAC (issue 12).

The operator runs against the emulator with a token of its own, through what it does
in a cluster: kopf's discovery and watches, status, Events, the Lease, the webhook
certificate Secret and caBundle patches, the mesh CA Secret, the roots ConfigMap and
the TokenReview of a sidecar's token. Each request bearing its token is turned
into the attributes the API server authorizes (group, resource, verb, namespace,
name) and checked against the rendered ClusterRole and Role. The chart's RBAC had
missed kopf's list/watch of CRDs: 403s at every start, then a silent watch gap.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from adsclient import SotwClient
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, objects
from test_operator_e2e import accepted

from conftest import VS, Start, create, free_port, wait_for
from pilotfish_operator.webhook.service import webhooks
from pilotfish_xds.types import CLUSTER

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "charts"))
from chartrender import NAMESPACE, documents, find, render

pytestmark = pytest.mark.kmock(cls=Emulator)

XDS_NAME = "pilotfish.pilotfish-system.svc"

TOKEN = "operator-token"
# Discovery and version are open to every authenticated user (system:discovery).
NON_RESOURCE = ("/api", "/apis", "/version")


@dataclass(frozen=True)
class Call:
    group: str
    resource: str  # with "/subresource"
    verb: str
    namespace: str  # "" for cluster-scoped or all namespaces
    name: str  # "" for collections

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.group or 'core'}/{self.resource} {self.name}{where}".strip()


def attributes(method: str, path: str, watch: bool) -> Call | None:
    """What the API server authorizes for a request; None for discovery."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if not rest:
        return None  # /api/v1, /apis/<group>/<version>: discovery
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource += "/" + rest[2]
    if method == "GET":
        verb = "watch" if watch else ("get" if name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return Call(group, resource, verb, namespace, name)


def allowed(call: Call, rules: list[dict[str, Any]]) -> bool:
    return any(
        call.group in rule["apiGroups"]
        and call.resource in rule["resources"]
        and call.verb in rule["verbs"]
        and (not rule.get("resourceNames") or call.name in rule["resourceNames"])
        for rule in rules
    )


def chart_rules() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    docs = documents(render())
    return find(docs, "ClusterRole", "pilotfish")["rules"], find(docs, "Role", "pilotfish")["rules"]


@pytest.mark.timeout(120)
async def test_every_call_the_operator_makes_is_granted_by_the_chart(
    k8s: Any, start_operator: Start
) -> None:
    for kind, name in (
        ("MutatingWebhookConfiguration", "pilotfish-sidecar-injector"),
        ("ValidatingWebhookConfiguration", "pilotfish-validator"),
    ):
        await k8s.post(
            f"/apis/admissionregistration.k8s.io/v1/{kind.lower()}s",
            json={
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": name},
                "webhooks": [{"name": "x.pilotfish.io", "clientConfig": {}}],
            },
        )
    for obj in objects():
        await create(k8s, obj)
    k8s.tokens = {TOKEN}
    cfg = kubernetes.client.Configuration()
    cfg.host = str(k8s.url).rstrip("/")
    cfg.api_key["BearerToken"] = f"Bearer {TOKEN}"
    k8s.pod_tokens = {"pod-token": (NS, "bookinfo", "productpage-1")}
    operator = await start_operator(cfg=cfg, security=True)
    # A sidecar's stream: its projected token goes to TokenReview.
    roots = await wait_for(lambda: configmap_roots(k8s), what="the roots ConfigMap")
    address = f"127.0.0.1:{operator.xds_port}"
    async with SotwClient(address, CLIENT_NODE, tls=(roots, XDS_NAME), token="pod-token") as ads:
        await ads.request(CLUSTER)
        await ads.recv()
    async with webhooks(
        operator.client,
        operator.store,
        address=f"127.0.0.1:{free_port()}",
        namespace=NAMESPACE,
        cert_secret="pilotfish-webhook-certs",
        cert_dir=None,
        injection_template=None,
        cluster_domain="cluster.local",
        on_configuration_change=operator.webhook_changed,
    ):
        await wait_for(lambda: accepted(k8s, VS, "reviews", 1), what="status written")
        bad = {"spec": {"http": [{"route": [{"destination": {"host": "reviews"}, "weight": -5}]}]}}
        await k8s.patch(
            f"/apis/{VS.replace('/virtualservices', '')}/namespaces/{NS}/virtualservices/reviews",
            json=bad,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        await wait_for(
            lambda: any(
                str(r.method.value).upper() == "POST" and "/events" in r.url.path for r in ours(k8s)
            ),
            what="an Event for the invalid object",
        )

    calls = set()
    for request in ours(k8s):
        if request.url.path in NON_RESOURCE:
            continue
        method = str(request.method.value).upper()
        call = attributes(method, request.url.path, bool(request.params.get("watch")))
        if call is not None:
            calls.add(call)
    cluster, namespaced = chart_rules()
    denied = sorted(
        str(c)
        for c in calls
        if not allowed(c, cluster) and not (c.namespace == NAMESPACE and allowed(c, namespaced))
    )
    assert denied == [], "the chart's RBAC denies: " + "; ".join(denied)
    # The scenario did reach every kind of call the operator makes.
    made = {(c.resource, c.verb) for c in calls}
    for expected in (
        ("customresourcedefinitions", "watch"),
        ("virtualservices", "watch"),
        ("virtualservices/status", "patch"),
        ("leases", "update"),
        ("events", "create"),
        ("secrets", "create"),
        ("secrets", "get"),
        ("configmaps", "create"),
        ("configmaps", "get"),
        ("tokenreviews", "create"),
        ("mutatingwebhookconfigurations", "update"),
        ("mutatingwebhookconfigurations", "watch"),
    ):
        assert expected in made, f"{expected} not exercised: {sorted(made)}"


def configmap_roots(k8s: Any) -> bytes | None:
    try:
        configmap = k8s.objects["v1/configmaps", NS, "pilotfish-ca-root-cert"]
    except KeyError:
        return None
    return str(configmap["data"]["root-cert.pem"]).encode()


def ours(k8s: Any) -> list[Any]:
    """The operator's requests (the test's own carry no token)."""
    return [r for r in list(k8s._requests) if r.headers.get("Authorization") == f"Bearer {TOKEN}"]
