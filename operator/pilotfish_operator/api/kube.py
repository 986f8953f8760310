"""The Kubernetes objects the mesh reads. Only the fields we use are modelled (and type-checked);
everything else a real object carries is ignored."""

from __future__ import annotations

import base64
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, WithJsonSchema

from .meta import Bool, KubeObject, Port, Str, StrMap, kube_object

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Protocol = Literal["TCP", "UDP", "SCTP"]


def _int_or_string(value: Any) -> int | str:
    # bool is an int subclass in Python but not in Kubernetes.
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ValueError("must be an integer or a string")


IntOrString = Annotated[
    int | str,
    PlainValidator(_int_or_string),
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]


@kube_object
class Namespace(KubeObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "Namespace"
    CLUSTER_SCOPED: ClassVar[bool] = True


@kube_object
class ConfigMap(KubeObject):
    """Read for one object only: the mesh config (api/mesh_config.py)."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "ConfigMap"

    data: StrMap = Field(default_factory=dict)


@kube_object
class Secret(KubeObject):
    """A gateway's TLS credential (a Gateway server's `credentialName`). The values are
    never shown (repr) or logged; `stringData` (local mode's YAML) is folded into
    `data` as the API server does."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "Secret"

    type: Str = "Opaque"
    data: StrMap = Field(default_factory=dict, repr=False)
    string_data: StrMap = Field(default_factory=dict, repr=False)

    def value(self, key: str) -> bytes | None:
        """One key's bytes (base64 `data`, else `stringData`), or None."""
        if key in self.string_data:
            return self.string_data[key].encode()
        found = self.data.get(key)
        if found is None:
            return None
        try:
            return base64.b64decode(found, validate=True)
        except ValueError:
            return None


@kube_object
class ServicePort:
    port: Port
    name: Str | None = None
    target_port: IntOrString | None = None
    protocol: Protocol = "TCP"
    app_protocol: Str | None = None


@kube_object
class ServiceSpec:
    selector: StrMap = Field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: Str | None = Field(default=None, alias="clusterIP")
    type: Str = "ClusterIP"


@kube_object
class LoadBalancerIngress:
    ip: Str | None = None
    hostname: Str | None = None


@kube_object
class LoadBalancerStatus:
    ingress: tuple[LoadBalancerIngress, ...] = ()


@kube_object
class ServiceStatus:
    """Read for the addresses of a Gateway API Gateway's Service."""

    load_balancer: LoadBalancerStatus = Field(default_factory=LoadBalancerStatus)


@kube_object
class Service(KubeObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "Service"

    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus = Field(default_factory=ServiceStatus)


@kube_object
class ContainerPort:
    container_port: Port
    name: Str | None = None
    protocol: Protocol = "TCP"


@kube_object
class Container:
    name: Str
    ports: tuple[ContainerPort, ...] = ()


@kube_object
class PodSpec:
    containers: tuple[Container, ...] = ()
    service_account_name: Str | None = None
    node_name: Str | None = None


@kube_object
class PodCondition:
    type: Str
    status: Str


@kube_object
class PodStatus:
    pod_ip: Str | None = Field(default=None, alias="podIP")
    phase: Str | None = None
    conditions: tuple[PodCondition, ...] = ()


@kube_object
class Pod(KubeObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "Pod"

    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus = Field(default_factory=PodStatus)

    @property
    def service_account(self) -> str:
        return self.spec.service_account_name or "default"

    @property
    def ready(self) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in self.status.conditions)


@kube_object
class EndpointConditions:
    # Kubernetes: nil ready/serving means "unknown, treat as ready"; terminating nil is false.
    ready: Bool | None = None
    serving: Bool | None = None
    terminating: Bool | None = None


@kube_object
class ObjectReference:
    kind: Str | None = None
    name: Str | None = None
    namespace: Str | None = None
    uid: Str | None = None


@kube_object
class Endpoint:
    addresses: tuple[Str, ...] = ()
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    target_ref: ObjectReference | None = None
    node_name: Str | None = None
    zone: Str | None = None


@kube_object
class EndpointPort:
    name: Str | None = None
    port: Port | None = None
    protocol: Protocol = "TCP"
    app_protocol: Str | None = None


@kube_object
class EndpointSlice(KubeObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("discovery.k8s.io/v1",)
    KIND: ClassVar[str] = "EndpointSlice"

    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def service_name(self) -> str | None:
        return self.metadata.labels.get(SERVICE_NAME_LABEL)


@kube_object
class ServiceAccount(KubeObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "ServiceAccount"


@kube_object
class Node(KubeObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "Node"
    CLUSTER_SCOPED: ClassVar[bool] = True


__all__ = [
    "SERVICE_NAME_LABEL",
    "Container",
    "ContainerPort",
    "Endpoint",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "IntOrString",
    "Namespace",
    "Node",
    "ObjectReference",
    "Pod",
    "PodCondition",
    "PodSpec",
    "PodStatus",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "ServiceSpec",
]
