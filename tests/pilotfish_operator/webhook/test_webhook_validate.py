"""The validating webhook over HTTPS: the pipeline's validation, refused at apply time."""

from __future__ import annotations

from typing import Any

from webhookharness import Webhook, admission_review, post


def virtual_service(weight: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10},
                    ]
                }
            ],
        },
    }


def request(obj: dict[str, Any] | None, kind: str, operation: str = "CREATE") -> dict[str, Any]:
    group = "networking.istio.io" if kind in ("VirtualService", "DestinationRule") else ""
    return admission_review(
        {
            "kind": {"group": group, "version": "v1", "kind": kind},
            "namespace": "bookinfo",
            "name": "reviews",
            "operation": operation,
            "object": obj,
        }
    )


async def validate(webhook: Webhook, body: dict[str, Any]) -> dict[str, Any]:
    status, response = await post(webhook.port, "/validate", body, webhook.ca_bundle)
    assert status == 200 and isinstance(response, dict)
    out: dict[str, Any] = response["response"]
    assert out["uid"] == "0b7a3c6e" and "patch" not in out
    return out


async def test_invalid_virtual_service_is_denied_with_the_clear_message(webhook: Webhook) -> None:
    response = await validate(webhook, request(virtual_service("90"), "VirtualService"))
    assert response["allowed"] is False
    # kind, namespace/name (from the request: kubectl apply without -n), field path, reason
    assert response["status"]["message"] == (
        "VirtualService bookinfo/reviews: "
        'spec.http[0].route[0].weight: must be an integer (got "90")'
    )
    assert response["status"]["code"] == 422


async def test_valid_virtual_service_is_allowed(webhook: Webhook) -> None:
    for operation in ("CREATE", "UPDATE"):
        response = await validate(
            webhook, request(virtual_service(90), "VirtualService", operation)
        )
        assert response == {"uid": "0b7a3c6e", "allowed": True}


async def test_every_problem_is_reported(webhook: Webhook) -> None:
    bad = virtual_service(-1)
    bad["spec"]["http"][0]["retires"] = {"attempts": 3}  # a typo: unknown field
    response = await validate(webhook, request(bad, "VirtualService"))
    message = response["status"]["message"]
    assert "spec.http[0].retires: unknown field" in message
    assert "spec.http[0].route[0].weight: must be >= 0" in message


async def test_unknown_kinds_and_deletes_are_allowed(webhook: Webhook) -> None:
    envoy_filter = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "spec": {"x": 1},
    }
    assert (await validate(webhook, request(envoy_filter, "EnvoyFilter")))["allowed"] is True
    # A Kubernetes kind the mesh models only in part is never judged by that model.
    service = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": "http"}]}}
    assert (await validate(webhook, request(service, "Service")))["allowed"] is True
    deleted = request(None, "VirtualService", "DELETE")
    assert (await validate(webhook, deleted))["allowed"] is True


async def test_not_a_review_is_refused(webhook: Webhook) -> None:
    status, body = await post(webhook.port, "/validate", b"{not json", webhook.ca_bundle)
    assert status == 400 and "AdmissionReview" in str(body)


async def test_invalid_sidecar_is_denied_with_its_field_path(webhook: Webhook) -> None:
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default"},
        "spec": {"egress": [{"hosts": ["reviews"]}]},
    }
    response = await validate(webhook, request(sidecar, "Sidecar"))
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        "Sidecar bookinfo/default: spec.egress[0].hosts[0]: host must be of form namespace/dnsName"
    )
