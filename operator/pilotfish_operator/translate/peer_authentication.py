"""PeerAuthentication → what each workload's sidecar accepts (ir.PeerAuth), as Istio
composes it: the mesh-wide policy (root namespace, no selector), overridden by the
namespace's (no selector), overridden by the oldest policy whose selector matches the
workload, whose `portLevelMtls` then sets single ports. UNSET inherits at every level;
with no policy at all a workload is PERMISSIVE (Istio's default)."""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish_xds import ir

from ..api import PeerAuthentication
from .precedence import age


def _mode(p: PeerAuthentication | None) -> ir.PeerMode | None:
    if p is None or p.spec.mtls is None or p.spec.mtls.mode == "UNSET":
        return None
    return p.spec.mtls.mode


class PeerPolicies:
    def __init__(self, policies: Iterable[PeerAuthentication], root_namespace: str) -> None:
        self.root = root_namespace
        self.wide: dict[str, PeerAuthentication] = {}
        """namespace → its oldest policy without a selector"""
        self.selecting: dict[str, list[PeerAuthentication]] = {}
        for p in sorted(policies, key=age):
            selector = p.spec.selector.match_labels if p.spec.selector is not None else {}
            if selector:
                self.selecting.setdefault(p.namespace, []).append(p)
            else:
                self.wide.setdefault(p.namespace, p)

    def for_workload(self, namespace: str, labels: dict[str, str]) -> ir.PeerAuth:
        mode: ir.PeerMode = "PERMISSIVE"
        for level in (self.wide.get(self.root), self.wide.get(namespace)):
            mode = _mode(level) or mode
        selected = next(
            (
                p
                for p in self.selecting.get(namespace, ())
                if p.spec.selector is not None
                and all(labels.get(k) == v for k, v in p.spec.selector.match_labels.items())
            ),
            None,
        )
        if selected is None:
            return ir.PeerAuth(mode)
        mode = _mode(selected) or mode
        ports = tuple(
            sorted(
                (port, m.mode if m.mode != "UNSET" else mode)
                for port, m in selected.spec.port_level_mtls.items()
            )
        )
        return ir.PeerAuth(mode, ports)
