"""A mesh in local mode for end-to-end tests: real Envoy sidecars, real HTTP
backends (the echo server) in their own processes, real requests.

Each test gets its own loopback /24 (127.<a>.<b>.0), so leftovers of one test
can never answer another's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import itertools
import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher
from prometheus_client.parser import text_string_to_metric_families

from pilotfish_operator.local.runner import LocalMesh
from pilotfish_xds import types
from pilotfish_xds.codec import Encoded
from pilotfish_xds.snapshot import Snapshot

_subnets = itertools.count(1)
SYNC_TIMEOUT = 30.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def served_by(self) -> str | None:
        return self.headers.get("x-served-by")


@dataclass
class Harness:
    workdir: Path
    subnet: str
    mesh: LocalMesh | None = None
    _task: asyncio.Task[None] | None = None
    _backends: list[subprocess.Popen[str]] = field(default_factory=list)

    @classmethod
    def new(cls, tmp_path: Path) -> Harness:
        # Mix in the pid: concurrent pytest runs must not share addresses.
        n = (os.getpid() % 200) * 50 + next(_subnets)
        config = tmp_path / "config"
        config.mkdir()
        return cls(tmp_path, f"127.{30 + (n // 250) % 200}.{n % 250}")

    @property
    def config(self) -> Path:
        return self.workdir / "config"

    def ip(self, host: int) -> str:
        return f"{self.subnet}.{host}"

    # ---------------------------------------------------------------- config

    def write(self, name: str, *objects: dict[str, Any]) -> None:
        """Write (or replace) one file of the config directory."""
        path = self.config / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump_all(list(objects)))
        tmp.replace(path)

    def write_text(self, name: str, text: str) -> None:
        (self.config / name).write_text(text)

    def remove(self, name: str) -> None:
        (self.config / name).unlink()

    # ---------------------------------------------------------------- processes

    def backend(
        self,
        name: str,
        ip: str,
        port: int,
        delay: float = 0.0,
        *,
        status: int = 200,
        pattern: tuple[int, ...] = (),
        stall: bool = False,
        reset: bool = False,
        tls: tuple[str, ...] = (),
        tcp: bool = False,
    ) -> None:
        """An echo server that answers with its name (header x-served-by); it can
        misbehave (see pilotfish_operator.local.echo)."""
        args = [sys.executable, "-m", "pilotfish_operator.local.echo", "--name", name]
        args += ["--listen", f"{ip}:{port}", "--delay", str(delay), "--status", str(status)]
        args += ["--pattern", ",".join(map(str, pattern))]
        args += ["--stall"] * stall + ["--reset"] * reset + ["--tcp"] * tcp
        for flag, value in zip(("--tls-cert", "--tls-key", "--tls-client-ca"), tls, strict=False):
            args += [flag, value]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", f"backend {name} did not start"
        self._backends.append(proc)

    async def start(
        self,
        delta: bool = False,
        within: float = SYNC_TIMEOUT,
        envoy: str | None = None,
        converge_timeout: float = 60.0,
        cert_ttl: datetime.timedelta | None = None,
        on_demand: bool | None = None,
    ) -> None:
        """`on_demand`: scoped sidecars (None: local mode's default, on;
        PILOTFISH_E2E_ON_DEMAND=0 runs every test that does not choose with every
        sidecar sent every service). `delta` matters only without scoping."""
        extra: dict[str, Any] = {"cert_ttl": cert_ttl} if cert_ttl is not None else {}
        if on_demand is None:
            on_demand = os.environ.get("PILOTFISH_E2E_ON_DEMAND") != "0"
        self.mesh = LocalMesh(
            self.config,
            state=self.workdir / "state.json",
            workdir=self.workdir,
            debounce=0.05,
            delta=delta,
            envoy=envoy,
            converge_timeout=converge_timeout,
            gateway_subnet=self.subnet,  # made-up gateway pods: .254 downwards
            on_demand=on_demand,
            **extra,
        )
        ready = asyncio.Event()
        self._task = asyncio.create_task(self.mesh.run(ready))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        if self._task in done:
            self._task.result()
        if waiter not in done:
            lagging = self.mesh.unconverged()
            raise AssertionError(f"sidecars did not all acknowledge their first config: {lagging}")

    async def synced(self, after: int | None = None) -> None:
        """Wait until the config directory's current content is in every sidecar."""
        assert self.mesh is not None
        self.mesh.source.scan()
        await asyncio.wait_for(
            self.mesh.wait_synced(after if after is not None else -1), SYNC_TIMEOUT
        )

    async def apply(self, name: str, *objects: dict[str, Any]) -> None:
        """Write a file and wait until every sidecar acknowledged the result."""
        assert self.mesh is not None
        before = self.mesh.store.generation
        self.write(name, *objects)
        self.mesh.source.scan()
        if self.mesh.store.generation == before:
            await self.synced()
        else:
            await self.synced(before)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.stop_backends()

    def stop_backends(self) -> None:
        for proc in self._backends:
            proc.terminate()
            proc.wait()
        self._backends.clear()

    async def behave(self, address: str, **behaviour: Any) -> None:
        """Change a running backend's behaviour (and zero its counters)."""
        body = json.dumps(behaviour).encode()
        await asyncio.to_thread(_control, address, "behave", body)

    async def stats(self, address: str) -> dict[str, Any]:
        """What a backend received: requests, per Host header, per status answered."""
        stats: dict[str, Any] = (await asyncio.to_thread(_control, address, "stats", None))["stats"]
        return stats

    async def send_rejected_routes(self, proxy: str) -> Snapshot:
        """Send `proxy` routes its Envoy rejects (an invalid regex, as a translation bug
        would produce) and wait for the NACK; returns the good snapshot to restore."""
        assert self.mesh is not None
        good = self.mesh.cache.get(proxy)
        assert good is not None
        status = self.mesh.status.get(proxy)
        before = status.type(types.ROUTE).nacks if status is not None else 0
        bad = RouteConfiguration(
            name="outbound",
            virtual_hosts=[
                VirtualHost(
                    name="broken",
                    domains=["*"],
                    routes=[
                        Route(
                            match=RouteMatch(safe_regex=RegexMatcher(regex="(unclosed")),
                            direct_response=DirectResponseAction(status=500),
                        )
                    ],
                )
            ],
        )
        resources = {t: list(good.resources(t).values()) for t in good.type_urls()}
        resources[types.ROUTE] = [Encoded("outbound", bytes(bad))]
        self.mesh.cache.set(proxy, Snapshot(resources, on_demand=good.on_demand))
        for _ in range(400):
            node = self.mesh.status.get(proxy)
            if node is not None and node.type(types.ROUTE).nacks > before:
                return good
            await asyncio.sleep(0.05)
        raise AssertionError(f"{proxy} never rejected the broken routes")

    # ---------------------------------------------------------------- traffic

    async def get(
        self,
        client_ip: str,
        url: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
    ) -> Response:
        """One request through the client's sidecar (ip:15001, as an HTTP proxy)."""
        return await asyncio.to_thread(_request, f"{client_ip}:15001", url, headers or {}, method)

    async def direct(
        self, address: str, path: str = "/", headers: dict[str, str] | None = None
    ) -> Response:
        """One request straight to host:port (a sidecar's inbound port, a plain pod)."""
        return await asyncio.to_thread(_request, address, path, headers or {}, "GET")

    async def split(
        self, client_ip: str, url: str, n: int, headers: dict[str, str] | None = None
    ) -> Counter[str]:
        """n requests from a separate process; how many each backend answered."""
        args = [sys.executable, "-m", "pilotfish_operator.local.load"]
        args += ["--proxy", f"{client_ip}:15001", "--url", url, "-n", str(n)]
        for k, v in (headers or {}).items():
            args += ["-H", f"{k}: {v}"]
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0
        return Counter(json.loads(out))


def envoy_stat(admin: str, name: str) -> int:
    """One counter from a sidecar's admin interface (0 when Envoy has not made it)."""
    body = urllib.request.urlopen(f"http://{admin}/stats?filter={name}", timeout=5).read()
    for line in body.decode().splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def _control(address: str, path: str, body: bytes | None) -> Any:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST" if body is not None else "GET", f"/_echo/{path}", body=body)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _request(address: str, url: str, headers: dict[str, str], method: str) -> Response:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        if url.startswith("http://"):
            headers = {"host": url.split("/")[2], **headers}
        conn.request(method, url, headers=headers)
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


# ------------------------------------------------------------------- objects


def namespace(name: str, injected: bool = True) -> dict[str, Any]:
    labels = {"mesh-injection": "enabled"} if injected else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(
    name: str,
    ns: str,
    ip: str,
    labels: dict[str, str],
    ports: tuple[int, ...] = (),
    inject: bool | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    labels = dict(labels)
    if inject is not None:
        labels["sidecar.pilotfish.io/inject"] = "true" if inject else "false"
    container: dict[str, Any] = {"name": "app", "image": "test"}
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "containers": [container],
            **({"serviceAccountName": service_account} if service_account else {}),
        },
        "status": {"podIP": ip, "phase": "Running"},
    }


def service(
    name: str,
    ns: str,
    selector: dict[str, str],
    ports: dict[int, int] | tuple[int, ...],
    protocol: str = "http",
) -> dict[str, Any]:
    """ports: service port → target port (or a tuple of ports that are both), each
    named `<protocol>-<port>` (Istio selects the protocol by the name's prefix)."""
    mapping = ports if isinstance(ports, dict) else {p: p for p in ports}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": selector,
            "ports": [
                {"name": f"{protocol}-{p}", "port": p, "targetPort": t} for p, t in mapping.items()
            ],
        },
    }


def istio(
    kind: str, name: str, ns: str, spec: dict[str, Any], version: str = "v1"
) -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def telemetry(name: str, ns: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def series(admin: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric `name` on a sidecar's admin."""
    with urllib.request.urlopen(f"http://{admin}/stats/prometheus", timeout=5) as r:
        text = r.read().decode()
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def total(rows: list[tuple[dict[str, str], float]], **match: str) -> float:
    return sum(v for labels, v in rows if all(labels.get(k) == m for k, m in match.items()))


def mesh_config(**fields: Any) -> dict[str, Any]:
    """The mesh config ConfigMap (Istio's MeshConfig fields, camelCase) as local mode
    reads it from the config directory."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pilotfish-mesh", "namespace": "pilotfish-system"},
        "data": {"mesh": yaml.safe_dump(fields)},
    }
