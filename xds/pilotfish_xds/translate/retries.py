"""Retries: `ir.Retry` → Envoy's route RetryPolicy (Istio's semantics; the operator
side resolves Istio's mesh default and `attempts: 0`)."""

from __future__ import annotations

from envoy_data_plane.envoy.config.route.v3 import (
    RetryPolicy,
    RetryPolicyRetryBackOff,
    RetryPolicyRetryHostPredicate,
    RetryPolicyRetryPriority,
)
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.extensions.retry.priority.previous_priorities.v3 import (
    PreviousPrioritiesConfig,
)
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire

# Istio's values: try another host up to 5 times before settling for one tried already;
# recompute priorities every 2 attempts when retrying in other localities.
HOST_SELECTION_ATTEMPTS = 5
PRIORITY_UPDATE_FREQUENCY = 2


NO_RETRIES = wire.shared(RetryPolicy(num_retries=0))
"""For a route that must not retry under a virtual host whose policy does."""


@wire.built_once(1 << 10)
def retry_policy(r: ir.Retry) -> RetryPolicy:
    """Built once per distinct policy (most routes share the mesh default); built
    messages are never mutated."""
    out = RetryPolicy(
        retry_on=",".join(r.retry_on),
        num_retries=r.attempts,
        per_try_timeout=r.per_try_timeout,
        retriable_status_codes=list(r.status_codes),
    )
    if r.other_hosts:
        out.retry_host_predicate = [
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=Any.pack(PreviousHostsPredicate()),
            )
        ]
        out.host_selection_retry_max_attempts = HOST_SELECTION_ATTEMPTS
    if r.other_localities:
        out.retry_priority = RetryPolicyRetryPriority(
            name="envoy.retry_priorities.previous_priorities",
            typed_config=Any.pack(
                PreviousPrioritiesConfig(update_frequency=PRIORITY_UPDATE_FREQUENCY)
            ),
        )
    if r.backoff is not None:
        out.retry_back_off = RetryPolicyRetryBackOff(base_interval=r.backoff)
    return out
