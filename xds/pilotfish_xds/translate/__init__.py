"""IR → Envoy resources for one proxy: the single entry point is `translate`.

The proxy's layout (`layouts/`) decides its listeners; features are shared modules:
`routes` (virtual hosts and routes), `clusters` (clusters and endpoints), `filters/`
(HTTP filters, one module each), `hcm` (the connection manager every listener uses).
Every resource is encoded through the shared `EncodeCache`, keyed by its builder and
the IR it was built from, so an edit re-encodes only what it changed.
"""

from __future__ import annotations

from .. import ir
from ..codec import EncodeCache
from ..snapshot import Snapshot
from .layouts import LAYOUTS, gateway
from .mtls import WorkloadSecrets


def translate(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, secrets: WorkloadSecrets | None = None
) -> Snapshot:
    """`secrets`: the proxy's workload certificate; with it, mesh mTLS is on (auto mTLS
    out, the PeerAuthentication mode in)."""
    if proxy.kind == "gateway":
        return gateway.translate(mesh, proxy, cache, secrets)
    return LAYOUTS[proxy.capture](mesh, proxy, cache, secrets)


__all__ = ["WorkloadSecrets", "translate"]
