"""The `pilotfish operator` subcommand's arguments. Import-light: the operator itself
(kopf, the Kubernetes client, the xDS server) loads only when the command runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import Any

from ..injection import CONTROL_PLANE_NAMESPACE


def cmd_operator(args: argparse.Namespace) -> int:
    from .runner import run

    if args.xds is None:
        args.xds = "0.0.0.0:15010" if args.plaintext_xds else "0.0.0.0:15012"
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "operator", help="run the control plane in a cluster (kopf, xDS, webhooks)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster credentials)")
    p.add_argument("--namespace", default=CONTROL_PLANE_NAMESPACE, help="control-plane namespace")
    p.add_argument(
        "--xds",
        help="xDS listen address (host:port; default 0.0.0.0:15012, or :15010 with "
        "--plaintext-xds)",
    )
    p.add_argument(
        "--plaintext-xds",
        action="store_true",
        help="no mesh CA: xDS without TLS or tokens, no workload certificates, no mTLS",
    )
    p.add_argument("--trust-domain", default="cluster.local", help="SPIFFE trust domain")
    p.add_argument(
        "--cert-ttl-hours", type=float, default=24.0, help="workload certificate lifetime"
    )
    p.add_argument("--webhook", default="0.0.0.0:15017", help="admission webhook HTTPS address")
    p.add_argument(
        "--monitoring",
        default="0.0.0.0:15014",
        help="/healthz, /readyz, /metrics and /dashboard address",
    )
    p.add_argument(
        "--prometheus",
        help="a Prometheus that scrapes the mesh (istio_* names), e.g. "
        "http://prometheus.monitoring:9090: the dashboard's numbers",
    )
    p.add_argument(
        "--cert-secret", default="pilotfish-webhook-certs", help="Secret with the webhook cert"
    )
    p.add_argument("--cert-dir", type=Path, help="webhook cert/key from a directory instead")
    p.add_argument("--injection-template", type=Path, help="sidecar injection template")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain")
    p.add_argument(
        "--on-demand",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scoped sidecars (the default): injected with Delta xDS, each fetches an HTTP "
        "service on its first call instead of being sent every service; --no-on-demand "
        "injects State of the World sidecars sent every service",
    )
    p.set_defaults(func=cmd_operator)
    return p
