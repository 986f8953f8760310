"""`pilotfish demo security`: zero-trust in three steps, live.

Real Envoy sidecars in local mode. Callers: `frontend` and `intruder` (pods with
sidecars, each its own service account) and `legacy` (no sidecar: it calls the web
pod's sidecar directly, in plaintext). Each step counts what every caller observes:

1. nothing configured: sidecars already speak mutual TLS to each other (auto mTLS,
   the app sees the caller's SPIFFE identity), and the legacy client still gets in
   (PERMISSIVE, Istio's default);
2. PeerAuthentication STRICT: the legacy client is refused, mesh callers unaffected;
3. AuthorizationPolicy allowing only `frontend`: the intruder, despite a valid mesh
   certificate, gets 403.

It exits 0 when every step is within bounds.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from . import demo
from .demo import _bar
from .local.runner import LocalMesh

NS = "secure"
WEB_IP = "127.0.12.11"
CALLERS = {"frontend": "127.0.12.10", "intruder": "127.0.12.12"}
PORT = 8080


def _pod(name: str, ip: str, labels: dict[str, str], ports: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app"}
    if ports:
        container["ports"] = [{"containerPort": PORT}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"serviceAccountName": name, "containers": [container]},
        "status": {"podIP": ip, "phase": "Running"},
    }


def mesh_objects() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": PORT}]},
        },
        _pod("web", WEB_IP, {"app": "web"}, ports=True),
        *(_pod(name, ip, {"app": name}) for name, ip in CALLERS.items()),
    ]


def _security(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _one(caller: str) -> str:
    """One request as `caller`: how it went, as the caller (and the app) saw it."""
    if caller == "legacy":  # no sidecar: straight to the web pod's sidecar, plaintext
        conn = http.client.HTTPConnection(WEB_IP, 15006, timeout=5)
        target = "/"
    else:
        conn = http.client.HTTPConnection(CALLERS[caller], 15001, timeout=5)
        target = f"http://web.{NS}:{PORT}/"
    try:
        conn.request("GET", target, headers={"host": f"web.{NS}:{PORT}"})
        r = conn.getresponse()
        body = r.read()
    except (OSError, http.client.HTTPException):
        return "refused"
    finally:
        conn.close()
    if r.status != 200:
        return f"status {r.status}"
    return "200 mTLS" if b"x-forwarded-client-cert" in body else "200 plaintext"


def _counts(n: int) -> dict[str, Counter[str]]:
    return {c: Counter(_one(c) for _ in range(n)) for c in ("frontend", "intruder", "legacy")}


def _show(title: str, counts: dict[str, Counter[str]], n: int) -> None:
    print(f"  {title}")
    for caller, got in counts.items():
        for outcome, k in sorted(got.items()):
            print(f"    {caller:9s} {outcome:14s} {k:4d} {_bar(k, n, 30)}")


async def _steps(mesh: LocalMesh, config: Path, n: int) -> bool:
    ok = True

    async def apply(name: str, obj: dict[str, Any]) -> float:
        ms = await demo.apply(mesh, config, name, obj)
        await asyncio.sleep(1.5)  # listener changes drain old connections (local mode: 1 s)
        return ms + 1500

    def check(label: str, good: bool) -> None:
        nonlocal ok
        ok &= good
        print(f"  → {label}: {'ok' if good else 'OUT OF BOUNDS'}\n")

    print("1. nothing configured")
    counts = await asyncio.to_thread(_counts, n)
    _show("who gets in, and how", counts, n)
    check(
        "sidecars speak mTLS on their own; the legacy client still gets in (PERMISSIVE)",
        counts["frontend"] == {"200 mTLS": n} and counts["legacy"] == {"200 plaintext": n},
    )

    print("2. PeerAuthentication STRICT for the namespace")
    ms = await apply(
        "peer.yaml", _security("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}})
    )
    counts = await asyncio.to_thread(_counts, n)
    _show(f"mtls.mode STRICT (applied in {ms:.0f} ms)", counts, n)
    check(
        "plaintext refused, mesh callers unaffected",
        counts["legacy"] == {"refused": n}
        and counts["frontend"] == {"200 mTLS": n}
        and counts["intruder"] == {"200 mTLS": n},
    )

    print("3. AuthorizationPolicy: only frontend may call web")
    allow = {
        "selector": {"matchLabels": {"app": "web"}},
        "rules": [{"from": [{"source": {"principals": [f"cluster.local/ns/{NS}/sa/frontend"]}}]}],
    }
    ms = await apply("authz.yaml", _security("AuthorizationPolicy", "web", allow))
    counts = await asyncio.to_thread(_counts, n)
    _show(f"ALLOW from principals [.../sa/frontend] (applied in {ms:.0f} ms)", counts, n)
    check(
        "the intruder's valid certificate is not enough",
        counts["frontend"] == {"200 mTLS": n} and counts["intruder"] == {"status 403": n},
    )
    return ok


def run_demo_security(requests: int = 20, envoy: str | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="pilotfish-demo-") as tmp:
        args = [sys.executable, "-m", "pilotfish_operator.local.echo", "--name", "web"]
        backend = subprocess.Popen(
            [*args, "--listen", f"{WEB_IP}:{PORT}"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert backend.stdout is not None
            backend.stdout.readline()  # "ready"
            steps = functools.partial(_steps, n=requests)
            ok = asyncio.run(demo.in_local_mesh(Path(tmp), mesh_objects(), envoy, steps))
        finally:
            backend.terminate()
            backend.wait()
    print("security: " + ("every step within bounds" if ok else "FAILED"))
    return 0 if ok else 1
