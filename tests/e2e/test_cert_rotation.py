"""Certificates rotate under steady load with zero failed requests: workload
certificates renewed at half life (here every few seconds), and the mesh root
replaced (old and new trusted together, then the old retired)."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import threading
import urllib.request

import pytest
from harness import Harness, namespace, pod, service

pytestmark = pytest.mark.envoy


def _serial(admin: str) -> str:
    """The serial of the workload certificate the sidecar holds now (Envoy's /certs)."""
    certs = json.loads(urllib.request.urlopen(f"http://{admin}/certs", timeout=5).read())
    for entry in certs["certificates"]:
        for chain in entry.get("cert_chain", []):
            if any(
                s.get("uri", "").startswith("spiffe://") for s in chain.get("subject_alt_names", [])
            ):
                return str(chain["serial_number"])
    raise AssertionError(f"no workload certificate in {certs}")


class Load:
    """Sequential requests through the client's sidecar, each on a new connection to
    the sidecar (the sidecars keep theirs), counting every outcome."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.outcomes: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.client, 15001, timeout=10)
            try:
                conn.request("GET", "http://web.shop/", headers={"host": "web.shop"})
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200 and b"URI=spiffe://" in body  # over mutual TLS
                key = "ok" if ok else f"status {r.status}"
            except (OSError, http.client.HTTPException) as exc:
                key = type(exc).__name__
            finally:
                conn.close()
            self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


async def test_rotation_under_load_fails_no_request(harness: Harness) -> None:
    client, web = harness.ip(70), harness.ip(71)
    harness.backend("web-1", web, 8080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
    )
    # 6-second certificates: renewed every 3 seconds.
    await harness.start(cert_ttl=datetime.timedelta(seconds=6))
    assert harness.mesh is not None
    first = _serial(f"{web}:15000")
    seen = {first}
    with Load(client) as load:
        for _ in range(20):  # 10 s: about three renewals
            await asyncio.sleep(0.5)
            seen.add(_serial(f"{web}:15000"))
        assert len(seen) >= 3, seen

        # Root rotation: new leaves from a new root, both roots trusted meanwhile.
        harness.mesh.rotate_root()
        await asyncio.sleep(2)
        rotated = _serial(f"{web}:15000")
        assert rotated not in seen
        harness.mesh.retire_old_roots()
        await asyncio.sleep(2)
    assert set(load.outcomes) == {"ok"}, load.outcomes
    assert load.outcomes["ok"] > 50
