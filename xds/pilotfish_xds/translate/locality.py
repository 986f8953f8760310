"""Locality load balancing, per client: each locality's endpoints get a priority (nearest
first) or a weight (`distribute`), as Istio computes them from the client's locality."""

from __future__ import annotations

from .. import ir


def _part(locality: ir.Locality | None, i: int) -> str:
    if locality is None:
        return ""
    return (locality.region, locality.zone, locality.subzone)[i]


def matches(locality: ir.Locality | None, rule: str) -> bool:
    """Istio's region/zone/subzone pattern: `*` or a missing part matches anything
    (except the region, which must be given)."""
    parts = [*rule.split("/"), "", ""][:3]
    for i, want in enumerate(parts):
        if want == "*" or (i > 0 and want == ""):
            continue
        if _part(locality, i) != want:
            return False
    return True


def priority(client: ir.Locality | None, where: ir.Locality | None) -> int:
    """0 same subzone, 1 same zone, 2 same region, 3 elsewhere."""
    for level in range(3):
        if _part(client, level) != _part(where, level):
            return 3 - level
    return 0


def priorities(
    lb: ir.LocalityLb, client: ir.Locality | None, groups: list[ir.Locality | None]
) -> list[int]:
    """Per locality group, its priority for this client, compacted to 0, 1, 2…"""
    raw = []
    for where in groups:
        p = priority(client, where)
        if p == 3:
            for source, target in lb.failover:
                if source == _part(client, 0):
                    if _part(where, 0) != target:
                        p = 4  # not the failover region: after it
                    break
        raw.append(p)
    return compact(raw)


def compact(raw: list[int]) -> list[int]:
    """Priorities renumbered 0, 1, 2… in the same order (Envoy wants them consecutive)."""
    order = {p: i for i, p in enumerate(sorted(set(raw)))}
    return [order[p] for p in raw]


def weights(
    lb: ir.LocalityLb, client: ir.Locality | None, groups: list[ir.Locality | None]
) -> list[int] | None:
    """Per locality group, its weight for this client (0: no traffic); None when no
    `distribute` rule is for the client's locality."""
    for source, targets in lb.distribute:
        if not matches(client, source):
            continue
        out = [0] * len(groups)
        unclaimed = set(range(len(groups)))
        for target, weight in targets:
            claimed = [i for i in sorted(unclaimed) if matches(groups[i], target)]
            for i in claimed:
                unclaimed.discard(i)
                # A wildcard target spreads its weight over the groups it matches.
                out[i] = max(1, -(-weight // len(claimed))) if weight else 0
        return out
    return None


def label_priority(
    keys: tuple[str, ...], client: tuple[str, ...], endpoint: tuple[str, ...]
) -> int:
    """Istio's failoverPriority: 0 when the endpoint matches the client on every key,
    else the number of keys from the first one that differs to the end."""
    for i, (mine, theirs) in enumerate(zip(client, endpoint, strict=True)):
        if mine != theirs:
            return len(keys) - i
    return 0
