"""`pilotfish capture-init`: the iptables redirect the injected init container installs.

Inside the pod's network namespace, TCP the app sends goes to the sidecar's outbound
port (15001) and TCP arriving for the app goes to its inbound port (15006); the
sidecar then routes on the original destination. The rules are plain data
(`rules`), rendered as `iptables-restore` input for the nat table (`render`), so
what a pod gets can be read with `--dry-run` and tested without root.

What is never captured: anything the proxy's own uid sends (its upstream
connections, xDS, and its connections to the app, so nothing loops), traffic that
stays inside the pod (loopback), and inbound connections to the sidecar's own ports.
IPv4 only for now.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from pilotfish_xds.ports import INBOUND_PORT, OUTBOUND_PORT, SIDECAR_PORTS

PROXY_UID = 1337
HEALTH_PORT = 15021
STATS_PORT = 15090
"""Never captured inbound: the sidecar's admin, listeners, readiness and stats."""

ALL = "*"

# Our chains, hooked into the nat table's built-in PREROUTING (arriving) and OUTPUT
# (sent by the pod's processes) chains.
INBOUND = "PILOTFISH_INBOUND"
IN_REDIRECT = "PILOTFISH_IN_REDIRECT"
OUTBOUND = "PILOTFISH_OUTPUT"
OUT_REDIRECT = "PILOTFISH_REDIRECT"
CHAINS = (INBOUND, IN_REDIRECT, OUTBOUND, OUT_REDIRECT)
PREFIX = "PILOTFISH_"

# Pod annotations that adjust capture are turned into these flags by the injector
# (webhook/traffic.py), which checks them with the parsers below.


class CaptureError(ValueError):
    """A flag or annotation value that cannot become a rule."""


@dataclass(frozen=True)
class Capture:
    """What to redirect. `include_*` is `ALL` or an explicit (possibly empty) list."""

    proxy_uid: int = PROXY_UID
    outbound_port: int = OUTBOUND_PORT
    inbound_port: int = INBOUND_PORT
    include_outbound_cidrs: tuple[str, ...] | str = ALL
    exclude_outbound_cidrs: tuple[str, ...] = ()
    include_inbound_ports: tuple[int, ...] | str = ALL
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One `-A` line: append to `chain` the `match`, jumping to `target`."""

    chain: str
    match: tuple[str, ...]
    target: str
    target_args: tuple[str, ...] = ()

    def render(self) -> str:
        return " ".join(("-A", self.chain, *self.match, "-j", self.target, *self.target_args))


def _tcp(*match: str) -> tuple[str, ...]:
    return ("-p", "tcp", *match)


def rules(c: Capture) -> list[Rule]:
    out = [
        Rule("PREROUTING", _tcp(), INBOUND),
        Rule("OUTPUT", _tcp(), OUTBOUND),
        Rule(IN_REDIRECT, _tcp(), "REDIRECT", ("--to-ports", str(c.inbound_port))),
        Rule(OUT_REDIRECT, _tcp(), "REDIRECT", ("--to-ports", str(c.outbound_port))),
    ]

    # Inbound: the sidecar's own ports first, then what the pod asked to keep out.
    skip = sorted({*SIDECAR_PORTS, c.outbound_port, c.inbound_port, *c.exclude_inbound_ports})
    out += [Rule(INBOUND, _tcp("--dport", str(p)), "RETURN") for p in skip]
    if c.include_inbound_ports == ALL:
        out.append(Rule(INBOUND, _tcp(), IN_REDIRECT))
    else:
        out += [
            Rule(INBOUND, _tcp("--dport", str(p)), IN_REDIRECT)
            for p in c.include_inbound_ports
            if p not in skip
        ]

    # Outbound. The proxy's uid goes first: its connections to upstreams and to the app
    # must leave as they are, or they would come straight back to it.
    out += [
        Rule(OUTBOUND, ("-m", "owner", "--uid-owner", str(c.proxy_uid)), "RETURN"),
        # Within the pod (localhost, or the app calling its own address): no sidecar.
        Rule(OUTBOUND, ("-o", "lo"), "RETURN"),
    ]
    out += [Rule(OUTBOUND, _tcp("--dport", str(p)), "RETURN") for p in c.exclude_outbound_ports]
    out += [Rule(OUTBOUND, ("-d", cidr), "RETURN") for cidr in c.exclude_outbound_cidrs]
    if c.include_outbound_cidrs == ALL:
        out.append(Rule(OUTBOUND, (), OUT_REDIRECT))
    else:
        out += [Rule(OUTBOUND, ("-d", cidr), OUT_REDIRECT) for cidr in c.include_outbound_cidrs]
    return out


def render(c: Capture, installed: str = "") -> str:
    """`iptables-restore --noflush` input for the nat table.

    `installed` is the table as `iptables-save -t nat` prints it: jumps into our
    chains from an earlier run are removed in the same transaction (declaring our
    chains empties them), so running the step twice leaves one copy of the rules.
    """
    lines = ["*nat", *(f":{chain} - [0:0]" for chain in CHAINS)]
    for line in installed.splitlines():
        words = line.split()
        if words[:1] == ["-A"] and not words[1].startswith(PREFIX) and PREFIX in line:
            lines.append("-D" + line[2:])
    lines += [r.render() for r in rules(c)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- values


def parse_cidrs(value: str, what: str) -> tuple[str, ...]:
    """A comma-separated list of IPv4 CIDRs (a bare address is a /32)."""
    out = []
    for item in _items(value):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError as err:
            raise CaptureError(f"{what}: {item!r} is not an IP range ({err})") from None
        if network.version != 4:
            raise CaptureError(f"{what}: {item!r}: only IPv4 is captured so far")
        out.append(str(network))
    return tuple(dict.fromkeys(out))


def parse_ports(value: str, what: str) -> tuple[int, ...]:
    out = []
    for item in _items(value):
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise CaptureError(f"{what}: {item!r} is not a port (1-65535)")
        out.append(int(item))
    return tuple(sorted(set(out)))


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def capture_of(args: argparse.Namespace) -> Capture:
    include_cidrs: tuple[str, ...] | str = ALL
    if args.include_outbound_cidrs.strip() != ALL:
        include_cidrs = parse_cidrs(args.include_outbound_cidrs, "--include-outbound-cidrs")
    include_ports: tuple[int, ...] | str = ALL
    if args.include_inbound_ports.strip() != ALL:
        include_ports = parse_ports(args.include_inbound_ports, "--include-inbound-ports")
    return Capture(
        proxy_uid=args.proxy_uid,
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        include_outbound_cidrs=include_cidrs,
        exclude_outbound_cidrs=parse_cidrs(args.exclude_outbound_cidrs, "--exclude-outbound-cidrs"),
        include_inbound_ports=include_ports,
        exclude_inbound_ports=parse_ports(args.exclude_inbound_ports, "--exclude-inbound-ports"),
        exclude_outbound_ports=parse_ports(args.exclude_outbound_ports, "--exclude-outbound-ports"),
    )


# ---------------------------------------------------------------- command


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "capture-init",
        help="install the pod's iptables redirect to its sidecar (the init container)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--proxy-uid", type=int, default=PROXY_UID, help="the sidecar's uid (exempt)")
    p.add_argument("--outbound-port", type=int, default=OUTBOUND_PORT)
    p.add_argument("--inbound-port", type=int, default=INBOUND_PORT)
    p.add_argument(
        "--include-outbound-cidrs",
        default=ALL,
        metavar="CIDRS",
        help="comma-separated IPv4 ranges to capture, '*' for all, '' for none",
    )
    p.add_argument("--exclude-outbound-cidrs", default="", metavar="CIDRS")
    p.add_argument(
        "--include-inbound-ports",
        default=ALL,
        metavar="PORTS",
        help="comma-separated ports to capture, '*' for all, '' for none",
    )
    p.add_argument("--exclude-inbound-ports", default="", metavar="PORTS")
    p.add_argument("--exclude-outbound-ports", default="", metavar="PORTS")
    p.add_argument("--dry-run", action="store_true", help="print the rules, change nothing")
    p.set_defaults(func=run)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CaptureError(f"{name} not found: the init container image needs iptables")
    return path


def run(args: argparse.Namespace) -> int:
    try:
        capture = capture_of(args)
        if args.dry_run:
            sys.stdout.write(render(capture))
            return 0
        installed = _run([_tool("iptables-save"), "-t", "nat"], "")
        text = render(capture, installed)
        _run([_tool("iptables-restore"), "--noflush"], text)
    except CaptureError as err:
        print(f"capture-init: {err}", file=sys.stderr)
        return 1
    sys.stdout.write(text)  # the init container's log shows what the pod got
    return 0


def _run(command: Iterable[str], stdin: str) -> str:
    argv = list(command)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CaptureError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
