"""A small load driver, run as its own process (a thread inside the control plane
would share its GIL and skew what it measures). It sends N requests through a
sidecar's outbound proxy and prints, as JSON, how many each backend answered
(or, with --by-status, how many got each status).

    python -m pilotfish_operator.local.load --proxy 127.0.10.10:15001 \
        --url http://web:8080/ -n 1000 [-H 'x-user: bob']
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections import Counter
from urllib.parse import urlsplit


def run(
    proxy: str, url: str, n: int, headers: dict[str, str], by_status: bool = False
) -> dict[str, int]:
    host, port = proxy.rsplit(":", 1)
    authority = urlsplit(url).netloc
    counts: Counter[str] = Counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(n):
        try:
            conn.request("GET", url, headers={"host": authority, **headers})
            response = conn.getresponse()
            response.read()
            who = response.getheader("x-served-by")
            if by_status:
                counts[f"status {response.status}"] += 1
            else:
                counts[who if who else f"status {response.status}"] += 1
        except (OSError, http.client.HTTPException) as err:
            counts[f"error {type(err).__name__}"] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.close()
    return dict(counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--proxy", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("-n", type=int, default=100)
    p.add_argument("-H", "--header", action="append", default=[])
    p.add_argument("--by-status", action="store_true", help="count statuses, not backends")
    args = p.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    json.dump(
        run(
            args.proxy,
            args.url,
            args.n,
            {k.strip(): v.strip() for k, v in headers.items()},
            args.by_status,
        ),
        sys.stdout,
    )


if __name__ == "__main__":
    main()
