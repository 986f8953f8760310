"""Local mode's stand-in for the Gateway API deployment: a Gateway of ours that gets a
deployment in a cluster (`translate/gateway_api/deployment.py`) and that no pod of the
config serves gets a gateway pod `<gateway>-<class>` in the store, with a loopback
address of its own, so local mode runs its Envoy as for any gateway pod (the state file
names it). A pod of the config labelled with the Gateway's name replaces it.
"""

from __future__ import annotations

from typing import Any

from ..api import Pod
from ..api.gateway_api import KubernetesGateway
from ..store import Key, Store
from ..translate.gateway_api import deployment
from ..translate.gateways import is_gateway

MADE_UP = "pilotfish.io/local-gateway"
"""Annotation on the gateway pods local mode adds itself."""


class LocalGateways:
    def __init__(self, store: Store, subnet: str) -> None:
        self.store = store
        self.subnet = subnet
        """Addresses `<subnet>.254`, `.253`… go to the gateway pods made up here."""
        self._seen = store.generation  # nothing to make up before a change
        self._addresses: dict[Key, str] = {}

    @property
    def current(self) -> bool:
        """The made-up pods follow the store as it is."""
        return self._seen == self.store.generation

    def reconcile(self) -> None:
        """Add, change or remove the made-up gateway pods after a store change."""
        if self.current:
            return
        pods = [p for p in self.store.of_kind("Pod") if isinstance(p, Pod)]
        ours = {p.key: p for p in pods if MADE_UP in p.metadata.annotations}
        served = {
            (p.namespace, p.metadata.labels.get(deployment.GATEWAY_NAME_LABEL))
            for p in pods
            if p.key not in ours and is_gateway(p)
        }
        wanted = {
            ("Pod", gw.namespace, deployment.name_of(gw)): gw
            for gw in deployment.deployed(self.store)
            if (gw.namespace, gw.name) not in served
        }
        for key in ours.keys() - wanted.keys():
            self.store.delete(key)
            self._addresses.pop(key, None)
        taken = {p.status.pod_ip for p in pods if p.key not in ours} | set(self._addresses.values())
        for key, gw in sorted(wanted.items()):
            address = self._addresses.get(key)
            if address is None:
                free = next(
                    (
                        f"{self.subnet}.{n}"
                        for n in range(254, 0, -1)
                        if f"{self.subnet}.{n}" not in taken
                    ),
                    None,
                )
                if free is None:
                    continue  # no address left in the subnet
                address = self._addresses[key] = free
                taken.add(free)
            self.store.apply(_pod(key, gw, address))
        self._seen = self.store.generation


def _pod(key: Key, gw: KubernetesGateway, address: str) -> dict[str, Any]:
    _, namespace, name = key
    ports = [{"name": n, "containerPort": p} for n, p in deployment.ports(gw)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": deployment.pod_labels(gw),
            "annotations": {MADE_UP: "true"},
        },
        "spec": {
            "serviceAccountName": name,
            "containers": [{"name": deployment.PROXY_CONTAINER, "ports": ports}],
        },
        "status": {"podIP": address, "phase": "Running"},
    }
