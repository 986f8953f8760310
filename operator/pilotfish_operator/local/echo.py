"""A real HTTP backend for the demo and the tests: it answers with who it is and
what it received, so a client can see which backend answered and how the
request arrived (path, headers) after the mesh routed it.

    python -m pilotfish_operator.local.echo --name web-v1 --listen 127.0.10.11:8080

It can also misbehave, as the resilience features need a backend to: answer a chosen
status (`--status 503`), cycle through statuses (`--pattern 500,500,200`: fails two
requests of three), take its time (`--delay 0.5`), never answer (`--stall`), or drop
the connection without a response (`--reset`); it can serve HTTPS (`--tls-cert`,
`--tls-key`, and `--tls-client-ca` to require client certificates). With `--tcp` it
speaks no HTTP: it greets each connection with its name and a newline (the server
speaks first, as databases do) and echoes back every line it receives. The behaviour can
be changed while it runs, and what it received counted, on its own control paths (not
through the mesh):

    POST /_echo/behave  {"status": 500}        GET /_echo/stats
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTROL = "/_echo/"


@dataclass
class Behaviour:
    status: int = 200
    pattern: list[int] = field(default_factory=list)
    """Statuses answered in turn (overrides `status`)."""
    delay: float = 0.0
    stall: bool = False
    reset: bool = False


@dataclass
class Stats:
    requests: int = 0
    hosts: dict[str, int] = field(default_factory=dict)
    """Host (authority) header -> requests: a mirrored copy carries `<host>-shadow`."""
    statuses: dict[str, int] = field(default_factory=dict)


class Backend:
    """The behaviour and counters one echo server shares between its threads."""

    def __init__(self, name: str, behaviour: Behaviour) -> None:
        self.name = name
        self.behaviour = behaviour
        self.stats = Stats()
        self._lock = threading.Lock()

    def next(self, host: str) -> tuple[Behaviour, int]:
        """Count a request; the behaviour and status it gets."""
        with self._lock:
            b = self.behaviour
            n = self.stats.requests
            self.stats.requests += 1
            self.stats.hosts[host] = self.stats.hosts.get(host, 0) + 1
            status = b.pattern[n % len(b.pattern)] if b.pattern else b.status
            if not (b.stall or b.reset):
                key = str(status)
                self.stats.statuses[key] = self.stats.statuses.get(key, 0) + 1
            return b, status

    def control(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        with self._lock:
            if path == "behave" and body is not None:
                self.behaviour = Behaviour(**body)
                self.stats = Stats()
            elif path == "reset-stats":
                self.stats = Stats()
            return {"behaviour": asdict(self.behaviour), "stats": asdict(self.stats)}


def make_handler(
    name: str, delay: float, backend: Backend | None = None
) -> type[BaseHTTPRequestHandler]:
    state = backend or Backend(name, Behaviour(delay=delay))

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without this every response waits ~40 ms on Nagle + delayed ACK (facts.md).
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body_in = self.rfile.read(length) if length else b""
            if self.path.startswith(CONTROL):
                data = json.loads(body_in) if body_in else None
                self._send(200, state.control(self.path[len(CONTROL) :], data))
                return
            behaviour, status = state.next(self.headers.get("host", ""))
            if behaviour.reset:
                # RST instead of FIN: the client sees a connection reset, no response.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.close_connection = True
                return
            if behaviour.stall:
                time.sleep(3600)  # the client (or its proxy's timeout) gives up first
                return
            if behaviour.delay:
                time.sleep(behaviour.delay)
            self._send(
                status,
                {
                    "name": name,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    # Who connected: which proxy the request left the mesh from.
                    "client": self.client_address[0],
                },
            )

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-served-by", name)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Echo


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class TcpEcho(socketserver.StreamRequestHandler):
    """`--tcp`: the name first, then every line back."""

    name = ""

    def handle(self) -> None:
        self.wfile.write(f"{self.name}\n".encode())
        for line in self.rfile:
            self.wfile.write(line)


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--listen", required=True, help="host:port")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--status", type=int, default=200, help="status of every answer")
    p.add_argument("--pattern", default="", help="statuses answered in turn, e.g. 500,500,200")
    p.add_argument("--stall", action="store_true", help="never answer")
    p.add_argument("--reset", action="store_true", help="reset the connection, no answer")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM) …")
    p.add_argument("--tls-key", help="… and this key")
    p.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    p.add_argument("--tcp", action="store_true", help="plain TCP: greet with the name, echo lines")
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if args.tcp:
        handler = type("Handler", (TcpEcho,), {"name": args.name})
        tcp = TcpServer((host, int(port)), handler)
        print("ready", flush=True)
        tcp.serve_forever()
        return
    behaviour = Behaviour(
        status=args.status,
        pattern=[int(s) for s in args.pattern.split(",") if s],
        delay=args.delay,
        stall=args.stall,
        reset=args.reset,
    )
    backend = Backend(args.name, behaviour)
    server = Server((host, int(port)), make_handler(args.name, args.delay, backend))
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.tls_client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
