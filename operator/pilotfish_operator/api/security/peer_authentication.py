"""PeerAuthentication (security.istio.io): what a workload's sidecar accepts from peers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from annotated_types import Ge, Le
from pydantic import model_validator

from ..errors import invalid
from ..meta import IstioModel, IstioResource
from ..networking.common import WorkloadSelector

SECURITY_VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")

Mode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
# Map keys arrive as strings from JSON (the API server) and as ints from YAML.
PortKey = Annotated[int, Ge(1), Le(65535)]


class PeerMtls(IstioModel):
    mode: Mode = "UNSET"


class PeerAuthenticationSpec(IstioModel):
    selector: WorkloadSelector | None = None
    mtls: PeerMtls | None = None
    port_level_mtls: dict[PortKey, PeerMtls] = {}

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("portLevelMtls") == {}:
            raise invalid("must name at least one port when set", "portLevelMtls")
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        # Istio's rule: port numbers are the workload's, so only a policy selecting
        # workloads may name them.
        if self.port_level_mtls and (self.selector is None or not self.selector.match_labels):
            raise invalid("portLevelMtls requires a workload selector", "portLevelMtls")
        return self


class PeerAuthentication(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = SECURITY_VERSIONS
    KIND: ClassVar[str] = "PeerAuthentication"

    spec: PeerAuthenticationSpec = PeerAuthenticationSpec()
