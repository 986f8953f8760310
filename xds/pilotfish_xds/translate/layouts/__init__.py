"""Listener layouts: how a proxy's traffic reaches its listeners. A layout decides the
listeners, their addresses and which route tables they use; features (filters,
routes, clusters) are written once and shared by every layout.

- `local`: local mode, no capture: ip:15001 is an HTTP proxy, ip:15006 the inbound side.
- `iptables`: in a cluster, iptables redirects the pod's traffic and the original
  destination picks the listener.
"""

from __future__ import annotations

from collections.abc import Callable

from ... import ir
from ...codec import EncodeCache
from ...snapshot import Snapshot
from ..mtls import WorkloadSecrets
from . import iptables, local

Layout = Callable[[ir.Mesh, ir.Proxy, EncodeCache, WorkloadSecrets | None], Snapshot]

LAYOUTS: dict[str, Layout] = {
    "local": local.translate,
    "iptables": iptables.translate,
}
