"""Traffic prober, run as its own process so it never holds the control plane's GIL.

Reads commands on stdin, one per line:

    wait <prefix> <timeout_s>

and sends requests back to back (keep-alive) through the sidecar's outbound port
until one is answered by a backend whose name starts with <prefix>. It prints
`<monotonic time the answer arrived> <requests sent>` (or `timeout <n>`).
time.monotonic() is CLOCK_MONOTONIC, comparable with the parent's clock.

    python bench/prober.py --proxy 127.0.77.10:15001 --host svc-0.team-0:8080
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--pause", type=float, default=0.001, help="seconds between requests")
    args = p.parse_args()
    ip, port = args.proxy.rsplit(":", 1)
    conn = http.client.HTTPConnection(ip, int(port), timeout=5)
    print("ready", flush=True)
    for line in sys.stdin:
        _, prefix, timeout = line.split()
        deadline = time.monotonic() + float(timeout)
        n = 0
        result = ""
        while time.monotonic() < deadline:
            n += 1
            try:
                conn.request("GET", "/", headers={"host": args.host})
                response = conn.getresponse()
                response.read()
                who = response.getheader("x-served-by") or ""
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(ip, int(port), timeout=5)
                who = ""
            if who.startswith(prefix):
                result = f"{time.monotonic():.6f} {n}"
                break
            time.sleep(args.pause)
        print(result or f"timeout {n}", flush=True)


if __name__ == "__main__":
    main()
