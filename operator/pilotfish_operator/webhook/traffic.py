"""Which traffic the init container redirects to the sidecar, from the pod's annotations.

Istio's `traffic.sidecar.istio.io/*` annotations are accepted unchanged so existing manifests
keep their meaning; the same names under `traffic.sidecar.pilotfish.io/` win when both are set.
Values are checked with `capture-init`'s own parsers, so a value it would refuse is refused
at admission, naming the annotation, instead of crash-looping the pod's init container.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pilotfish_xds.ports import ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT, SIDECAR_PORTS

from ..capture import (
    ALL,
    HEALTH_PORT,
    PROXY_UID,
    STATS_PORT,
    CaptureError,
    parse_cidrs,
    parse_ports,
)

ISTIO_PREFIX = "traffic.sidecar.istio.io/"
OWN_PREFIX = "traffic.sidecar.pilotfish.io/"

__all__ = [
    "ADMIN_PORT",
    "HEALTH_PORT",
    "INBOUND_PORT",
    "OUTBOUND_PORT",
    "PROXY_UID",
    "STATS_PORT",
    "Capture",
    "InvalidAnnotation",
    "capture",
]


class InvalidAnnotation(ValueError):
    """A capture annotation capture-init would refuse; the message names it."""


@dataclass(frozen=True)
class Capture:
    """The `pilotfish capture-init` arguments, comma-separated ("*" means all, "" none)."""

    include_outbound_cidrs: str = ALL
    exclude_outbound_cidrs: str = ""
    include_inbound_ports: str = ALL
    exclude_inbound_ports: str = ",".join(map(str, SIDECAR_PORTS))
    exclude_outbound_ports: str = ""


def capture(annotations: Mapping[str, str]) -> Capture:
    def get(name: str, default: str) -> tuple[str, str]:
        for prefix in (OWN_PREFIX, ISTIO_PREFIX):
            if prefix + name in annotations:
                return annotations[prefix + name], f"pod annotation {prefix + name}"
        return default, name

    try:
        # The sidecar's own ports are listed too (capture-init skips them anyway), so the
        # pod spec shows everything that is left alone.
        excluded = (*SIDECAR_PORTS, *parse_ports(*get("excludeInboundPorts", "")))
        return Capture(
            include_outbound_cidrs=_all_or(parse_cidrs, *get("includeOutboundIPRanges", ALL)),
            exclude_outbound_cidrs=",".join(parse_cidrs(*get("excludeOutboundIPRanges", ""))),
            include_inbound_ports=_all_or(parse_ports, *get("includeInboundPorts", ALL)),
            exclude_inbound_ports=",".join(map(str, dict.fromkeys(excluded))),
            exclude_outbound_ports=",".join(
                map(str, parse_ports(*get("excludeOutboundPorts", "")))
            ),
        )
    except CaptureError as exc:
        raise InvalidAnnotation(str(exc)) from None


def _all_or(parse: Callable[[str, str], tuple[object, ...]], value: str, what: str) -> str:
    return ALL if value.strip() == ALL else ",".join(map(str, parse(value, what)))
