"""Run inside a test's network namespaces by test_capture.py: the test's control plane,
one HTTP request or one TCP exchange, and the capture init step, each as a process in
that namespace would run it.

    python in_netns.py ads OBJECTS ADDRESS [full|on-demand]
                     | get URL [HOST] | tcp HOST PORT | capture-init
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
from pathlib import Path
from typing import Any


def capture_args(*argv: str) -> argparse.Namespace:
    from pilotfish_operator import capture

    p = argparse.ArgumentParser()
    capture.add_parser(p.add_subparsers(dest="command", required=True))
    return p.parse_args(["capture-init", *argv])


def _serve_ads(objects: str, address: str, scoping: str = "on-demand") -> None:
    """The control plane for the test: the objects translated and served, and again
    whenever the file changes (a test edits it to change the mesh config); `scoping`
    "on-demand": scoped sidecars."""
    import asyncio

    import yaml

    from pilotfish_operator.store import Store
    from pilotfish_operator.translate import Options, Translator
    from pilotfish_xds.cache import SnapshotCache
    from pilotfish_xds.codec import EncodeCache
    from pilotfish_xds.server import serve
    from pilotfish_xds.status import StatusRegistry
    from pilotfish_xds.translate import translate

    cache, encode = SnapshotCache(), EncodeCache()
    path = Path(objects)

    def load() -> None:
        store = Store()
        for obj in yaml.safe_load_all(path.read_text()):
            store.apply(obj)
        assert not store.errors(), store.errors()
        options = Options(local=False, on_demand=scoping == "on-demand")
        mesh = Translator(options).translate(store).mesh
        for proxy in mesh.proxies:
            assert proxy.capture == "iptables"
            cache.set(proxy.id, translate(mesh, proxy, encode))
        print("pushed", flush=True)

    def mtime() -> int:
        return path.stat().st_mtime_ns

    async def main() -> None:
        load()
        running = await serve(address, cache, StatusRegistry())
        print("ready", flush=True)
        seen = mtime()
        while True:
            await asyncio.sleep(0.2)
            if mtime() != seen:
                seen = mtime()
                load()
        del running  # served until the process is stopped

    asyncio.run(main())


def _request(url: str, host: str | None) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10)
    try:
        headers = {"Host": host} if host else {}
        conn.request(
            "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers
        )
        response = conn.getresponse()
        return {
            "status": response.status,
            "headers": {k.lower(): v for k, v in response.getheaders()},
            "body": response.read().decode(errors="replace"),
            "error": None,
        }
    except OSError as err:
        return {"status": None, "headers": {}, "body": "", "error": repr(err)}
    finally:
        conn.close()


def _tcp(host: str, port: int) -> dict[str, Any]:
    """A client of a server-first TCP protocol: the greeting, then one echoed line."""
    try:
        with socket.create_connection((host, port), timeout=10) as conn:
            stream = conn.makefile("rwb")
            greeting = stream.readline().decode().strip()
            stream.write(b"ping\n")
            stream.flush()
            return {"greeting": greeting, "echo": stream.readline().decode(), "error": None}
    except OSError as err:
        return {"greeting": None, "echo": None, "error": repr(err)}


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "ads":
        _serve_ads(*rest)
    elif command == "get":
        print(json.dumps(_request(rest[0], rest[1] if len(rest) > 1 else None)))
    elif command == "tcp":
        print(json.dumps(_tcp(rest[0], int(rest[1]))))
    elif command == "capture-init":
        from pilotfish_operator import capture

        sys.exit(capture.run(capture_args(*rest)))
