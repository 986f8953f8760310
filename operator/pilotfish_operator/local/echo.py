"""A real HTTP backend for the demo and the tests: it answers with who it is and
what it received, so a client can see which backend answered and how the
request arrived (path, headers) after the mesh routed it.

    python -m pilotfish_operator.local.echo --name web-v1 --listen 127.0.10.11:8080
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name: str, delay: float) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without this every response waits ~40 ms on Nagle + delayed ACK (facts.md).
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if delay:
                time.sleep(delay)
            body = json.dumps(
                {
                    "name": name,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("x-served-by", name)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Echo


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--name", required=True)
    p.add_argument("--listen", required=True, help="host:port")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = Server((host, int(port)), make_handler(args.name, args.delay))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
