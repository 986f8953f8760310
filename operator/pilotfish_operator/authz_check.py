"""`pilotfish authz check NS/POD`: which security policies apply to a workload, and why.

Reads the same objects the control plane does (a local-mode config directory, or
files such as `kubectl get ... -o yaml` output) and resolves them with the
translator's own code, so the answer is what the sidecar is given.
"""

from __future__ import annotations

import argparse
import sys

from .api import (
    AuthorizationPolicy,
    PeerAuthentication,
    Pod,
    RequestAuthentication,
    Service,
    mesh_config,
)
from .injection import decide
from .sources.files import load_store
from .store import Store
from .translate import Options
from .translate.authorization import ext_authz, scope
from .translate.peer_authentication import PeerPolicies


def _load(args: argparse.Namespace) -> Store:
    return load_store(([args.config] if args.config else []) + list(args.file or ()))


def explain(
    store: Store, namespace: str, name: str, root: str, domain: str = "cluster.local"
) -> list[str]:
    pod = store.get(("Pod", namespace, name))
    if not isinstance(pod, Pod):
        return [f"no Pod {namespace}/{name} among the objects read"]
    labels = dict(pod.metadata.labels)
    ns_obj = store.get(("Namespace", "", namespace))
    ns_labels = dict(ns_obj.metadata.labels) if ns_obj is not None else {}
    decision = decide(namespace, ns_labels, labels)
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
    out = [
        f"Pod {namespace}/{name} (labels {shown}): "
        + (
            "has a sidecar"
            if decision.inject
            else f"no sidecar ({decision.reason}): nothing below applies"
        )
    ]

    peers = [p for p in store.of_kind("PeerAuthentication") if isinstance(p, PeerAuthentication)]
    effective = PeerPolicies(peers, root).for_workload(namespace, labels)
    ports = "".join(f", port {p}: {m}" for p, m in effective.ports)
    out.append(f"PeerAuthentication: {effective.mode}{ports}")
    for p in sorted(peers, key=lambda p: (p.namespace, p.name)):
        selector = p.spec.selector.match_labels if p.spec.selector is not None else {}
        why = scope(p.namespace, dict(selector), root, namespace, labels)
        if why is not None:
            mode = p.spec.mtls.mode if p.spec.mtls is not None else "UNSET"
            out.append(f"  {p.namespace}/{p.name}: {mode} ({why})")
    if len(out) == 2:
        out.append("  none: PERMISSIVE, Istio's default (mutual TLS and plaintext)")

    out.append(
        "AuthorizationPolicy: CUSTOM first (an external service decides the requests its "
        "rules match), then DENY, then ALLOW (with any ALLOW policy, a request none allows "
        "gets 403); AUDIT only logs"
    )
    policies = [
        a for a in store.of_kind("AuthorizationPolicy") if isinstance(a, AuthorizationPolicy)
    ]
    applied = 0
    for a in sorted(policies, key=lambda a: (a.namespace, a.name)):
        selector = a.spec.selector.match_labels if a.spec.selector is not None else {}
        why = scope(a.namespace, dict(selector), root, namespace, labels)
        if why is None:
            continue
        label = f"{a.spec.action} {a.namespace}/{a.name}"
        if a.spec.target_ref is not None or a.spec.target_refs:
            out.append(f"  not applied: {label} (targetRefs bind it to gateways)")
        elif a.spec.action == "CUSTOM" and a.spec.provider is not None:
            applied += 1
            services = {
                (s.namespace, s.name): s for s in store.of_kind("Service") if isinstance(s, Service)
            }
            provider = ext_authz(a.spec.provider.name, mesh_config.of(store), services, domain)
            where = (
                f"fails closed, its rules deny: {provider}"
                if isinstance(provider, str)
                else f"asks {provider.authority} ({'gRPC' if provider.grpc else 'HTTP'})"
            )
            out.append(f"  {label}: {len(a.spec.rules)} rule(s), {where} ({why})")
        else:
            applied += 1
            rules = len(a.spec.rules)
            what = (
                "allows nothing" if rules == 0 and a.spec.action == "ALLOW" else f"{rules} rule(s)"
            )
            out.append(f"  {label}: {what} ({why})")
    if not applied:
        out.append("  none: every request is allowed")

    out.append("RequestAuthentication: an invalid token gets 401, no token passes")
    found = False
    for r in sorted(
        (r for r in store.of_kind("RequestAuthentication") if isinstance(r, RequestAuthentication)),
        key=lambda r: (r.namespace, r.name),
    ):
        selector = r.spec.selector.match_labels if r.spec.selector is not None else {}
        why = scope(r.namespace, dict(selector), root, namespace, labels)
        if why is not None:
            found = True
            issuers = ", ".join(rule.issuer for rule in r.spec.jwt_rules) or "no rules"
            out.append(f"  {r.namespace}/{r.name}: issuers {issuers} ({why})")
    if not found:
        out.append("  none: tokens are not checked")
    return out


def cmd_authz_check(args: argparse.Namespace) -> int:
    if not args.config and not args.file:
        print("give --config DIR or -f FILE", file=sys.stderr)
        return 2
    namespace, _, name = args.pod.rpartition("/")
    store = _load(args)
    for line in explain(store, namespace or "default", name, Options().root_namespace):
        print(line)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("authz", help="which security policies apply to a workload, and why")
    checks = p.add_subparsers(dest="authz_command", required=True)
    check = checks.add_parser(
        "check",
        help="PeerAuthentication, AuthorizationPolicy and "
        "RequestAuthentication that apply to one pod",
    )
    check.add_argument("pod", help="namespace/pod")
    check.add_argument("--config", help="a local-mode config directory")
    check.add_argument("-f", "--file", action="append", help="YAML file(s); - for stdin")
    check.set_defaults(func=cmd_authz_check)
