"""DestinationRule policies merged for one port of one subset, as Istio merges them."""

from __future__ import annotations

from typing import Any

from pilotfish_operator.api import DestinationRule, parse
from pilotfish_operator.translate.destination_rules import cluster_policy, merge_traffic_policy
from pilotfish_xds import ir


def rule(spec: dict[str, Any]) -> DestinationRule:
    obj = parse(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"host": "svc", **spec},
        }
    )
    assert isinstance(obj, DestinationRule)
    return obj


DR = rule(
    {
        "trafficPolicy": {
            "loadBalancer": {"simple": "RANDOM"},
            "connectionPool": {"tcp": {"maxConnections": 10}},
            "portLevelSettings": [
                # Port 81's settings replace the four port-level fields as a whole: no
                # connection pool here means the default, not the rule's.
                {"port": {"number": 81}, "loadBalancer": {"simple": "LEAST_REQUEST"}},
            ],
        },
        "subsets": [
            {
                "name": "canary",
                "labels": {"v": "2"},
                "trafficPolicy": {
                    "outlierDetection": {"consecutive5xxErrors": 3},
                    "portLevelSettings": [
                        {"port": {"number": 82}, "tls": {"mode": "SIMPLE"}},
                    ],
                },
            },
            {"name": "plain", "labels": {"v": "1"}},
        ],
    }
)


def test_rule_policy_applies_to_every_port_and_subset() -> None:
    merged = merge_traffic_policy(DR, 80, "")
    assert merged.load_balancer is not None and merged.load_balancer.simple == "RANDOM"
    assert merged.connection_pool is not None
    assert merge_traffic_policy(DR, 80, "plain") == merged
    assert merged.port_level_settings == ()


def test_port_level_settings_replace_without_inheriting() -> None:
    merged = merge_traffic_policy(DR, 81, "")
    assert merged.load_balancer is not None and merged.load_balancer.simple == "LEAST_REQUEST"
    assert merged.connection_pool is None  # not inherited from the rule


def test_subset_overrides_field_by_field_then_its_port_level() -> None:
    merged = merge_traffic_policy(DR, 80, "canary")
    assert merged.load_balancer is not None and merged.load_balancer.simple == "RANDOM"
    assert merged.connection_pool is not None  # kept from the rule
    assert merged.outlier_detection is not None  # the subset's own
    at_82 = merge_traffic_policy(DR, 82, "canary")
    assert at_82.tls is not None and at_82.tls.mode == "SIMPLE"
    assert at_82.load_balancer is None and at_82.outlier_detection is None
    # The rule's port-81 settings, then the subset's outlier detection on top.
    at_81 = merge_traffic_policy(DR, 81, "canary")
    assert at_81.load_balancer is not None and at_81.load_balancer.simple == "LEAST_REQUEST"
    assert at_81.outlier_detection is not None and at_81.connection_pool is None


def test_no_rule_is_the_default_policy() -> None:
    assert cluster_policy(merge_traffic_policy(None, 80, "")) == ir.ClusterPolicy()
    assert cluster_policy(merge_traffic_policy(DR, 81, "")).lb == ir.LoadBalancer("LEAST_REQUEST")
