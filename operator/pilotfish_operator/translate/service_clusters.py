"""A service port's clusters: the default one and one per DestinationRule subset."""

from __future__ import annotations

from pilotfish_xds import ir

from ..api import DestinationRule
from . import destination_rules
from .services import ServiceInfo


def service_clusters(
    svc: ServiceInfo, port: int, rule: DestinationRule | None, scope: ir.RuleScope | None
) -> list[ir.Cluster]:
    backends = svc.backends.get(port, [])

    def cluster(subset: str, selector: dict[str, str]) -> ir.Cluster:
        chosen = [b for b in backends if all(b.labels.get(k) == v for k, v in selector.items())]
        policy = destination_rules.cluster_policy(
            destination_rules.merge_traffic_policy(rule, port, subset)
        )
        keys = policy.locality.failover_priority if policy.locality else ()
        return ir.Cluster(
            hostname=svc.hostname,
            port=port,
            subset=subset,
            namespace=svc.namespace,
            endpoints=tuple(
                ir.Endpoint(
                    b.address,
                    b.port,
                    b.healthy,
                    b.locality,
                    tuple(ir.label_value(ir.labels_of(b.labels), b.locality, k) for k in keys),
                    mtls=bool(b.identity),
                    workload=b.workload,
                )
                for b in chosen
            ),
            identities=tuple(sorted({b.identity for b in chosen if b.identity}))
            + svc.subject_alt_names,
            policy=policy,
            export_to=svc.export_to,
            protocol=protocol,
            scope=scope,
            discovery=svc.discovery,
        )

    protocol = next((p.protocol for p in svc.ports if p.port == port), "http")
    out = [cluster("", {})]
    if rule is not None:
        out += [cluster(s.name, dict(s.labels)) for s in rule.spec.subsets]
    return out
