"""Gateway certificates in a cluster: the Secrets Gateway servers name in
`credentialName`, read by name from each gateway pod's namespace (a Gateway API
certificateRef: from the namespace a ReferenceGrant opens) every few seconds
(and their `<name>-cacert` companions), put into the store and dropped when gone or no
longer named. Only those Secrets are read (no watch of every Secret in the cluster);
an edited Secret reaches the gateway within `EVERY` seconds by SDS. Their contents are
never logged."""

from __future__ import annotations

import logging

from ..api import Gateway, Pod, Secret
from ..api.gateway_api import KubernetesGateway, ReferenceGrant
from ..store import Store
from ..translate.gateway_api import GATEWAY_NAME_LABEL, certificate_granted
from ..translate.gateways import is_gateway, selecting
from .client import ApiError, KubeClient
from .polling import poll

log = logging.getLogger(__name__)

EVERY = 5.0

Key = tuple[str, str, str]


def wanted(store: Store) -> set[Key]:
    """The Secrets the gateways' servers name: (Secret, pod namespace, name)."""
    pods = [p for p in store.of_kind("Pod") if isinstance(p, Pod) and is_gateway(p)]
    gateways = [g for g in store.of_kind("Gateway") if isinstance(g, Gateway)]
    out: set[Key] = set()
    for pod in pods:
        for g in selecting(gateways, pod):
            for server in g.spec.servers:
                tls = server.tls
                if tls is not None and tls.credential_name:
                    for name in (tls.credential_name, f"{tls.credential_name}-cacert"):
                        out.add(("Secret", pod.namespace, name))
    # The Gateway API's HTTPS listeners: certificateRefs of the Gateway's namespace, or
    # of another one whose ReferenceGrant allows it.
    grants = [g for g in store.of_kind("ReferenceGrant") if isinstance(g, ReferenceGrant)]
    served = {(p.namespace, p.metadata.labels.get(GATEWAY_NAME_LABEL)) for p in pods}
    for gw in store.of_kind("KubernetesGateway"):
        if not isinstance(gw, KubernetesGateway) or (gw.namespace, gw.name) not in served:
            continue
        for listener in gw.spec.listeners:
            for ref in listener.tls.certificate_refs if listener.tls else ():
                if ref.namespace in (None, gw.namespace):
                    out.add(("Secret", gw.namespace, ref.name))
                elif certificate_granted(gw, ref.namespace, ref.name, grants):
                    out.add(("Secret", ref.namespace, ref.name))
    return out


class GatewaySecrets:
    def __init__(self, client: KubeClient, store: Store) -> None:
        self.client = client
        self.store = store

    async def read(self) -> None:
        want = wanted(self.store)
        for key in sorted(want):
            _, namespace, name = key
            try:
                obj = await self.client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
            except ApiError as exc:
                if exc.status == 404:
                    self.store.delete(key)
                else:
                    log.warning("Secret %s/%s not read: HTTP %d", namespace, name, exc.status)
                continue
            self.store.apply({**obj, "apiVersion": "v1", "kind": "Secret"})
        for held in self.store.of_kind("Secret"):
            if isinstance(held, Secret) and held.key not in want:
                self.store.delete(held.key)

    async def run(self) -> None:
        await poll(lambda: EVERY, self.read, "gateway Secrets")
