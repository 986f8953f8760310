"""Sidecar injection through the real HTTPS server: AdmissionReview in, golden JSONPatch out.

Each patch is applied to its pod and the result validated against the Kubernetes schemas of
the case's version, so what the API server would store is a valid pod.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from webhookharness import Webhook, admission_review, post, start_webhook

from pilotfish_operator.webhook.inject import native_sidecars

CASES = Path(__file__).parent / "testdata" / "inject"
STATUS = "sidecar.pilotfish.io/status"
SKIP = "sidecar.pilotfish.io/skip-reason"

# What each case must come to, besides its golden patch.
INJECTED = {
    "namespace-enabled",
    "pod-opt-in",
    "old-kubernetes",
    "capture-annotations",
    "generate-name",
    "plaintext-xds",
    "no-on-demand",
}
SKIPPED = {
    "pod-opt-out": "pod-opt-out",
    "namespace-not-enabled": "namespace-not-enabled",
    "dry-run-opt-out": "pod-opt-out",
}
GATEWAYS = {"gateway", "gateway-own-container"}
UNTOUCHED = {
    "gateway-kube-system",
    "system-namespace",
    "control-plane-namespace",
    "already-injected",
}
DENIED = {"invalid-annotation": "traffic.sidecar.istio.io/excludeOutboundIPRanges"}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # The bootstrap is indented JSON: a block keeps the golden file reviewable.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=100)


def load_case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((CASES / f"{name}.in.yaml").read_text())
    return case


async def admit(case: dict[str, Any]) -> tuple[Webhook, dict[str, Any]]:
    version = {"gitVersion": f"v{case['kubernetes']}.0"}
    webhook = await start_webhook(
        native_sidecars=native_sidecars(version),
        xds_security=not case.get("plaintextXds"),
        delta=case.get("onDemand", True),
    )
    request = case["request"]
    webhook.namespaces.labels_by_namespace[request["namespace"]] = case["namespaceLabels"]
    try:
        status, body = await post(
            webhook.port, "/inject", admission_review(request), webhook.ca_bundle
        )
    finally:
        await webhook.server.stop()
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    assert response["uid"] == "0b7a3c6e"
    return webhook, response


def decoded(response: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


def patched_pod(case: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    pod = case["request"]["object"]
    out: dict[str, Any] = jsonpatch.apply_patch(pod, decoded(response))
    return out


def schema_valid(pod: dict[str, Any], kubernetes: str) -> None:
    # The API server fills in the namespace and, for generateName, the name.
    pod = json.loads(json.dumps(pod))
    pod["metadata"].setdefault("name", pod["metadata"].get("generateName", "x") + "abcde")
    try:
        kubernetes_validate.validate(pod, f"{kubernetes}.0", strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(str(exc).split("\n")[0]) from None


@pytest.mark.parametrize(
    "name", sorted(p.name.removesuffix(".in.yaml") for p in CASES.glob("*.in.yaml"))
)
async def test_injection_case(name: str, golden: Any) -> None:
    case = load_case(name)
    webhook, response = await admit(case)
    out = {k: v for k, v in response.items() if k not in ("uid", "patch", "patchType")}
    out["patch"] = decoded(response)
    golden(CASES / f"{name}.out.yaml", dump(out))

    pod = patched_pod(case, response)
    annotations = pod["metadata"].get("annotations") or {}
    spec = pod["spec"]
    if name in DENIED:
        assert response["allowed"] is False
        assert DENIED[name] in response["status"]["message"]
        return
    assert response["allowed"] is True
    schema_valid(pod, case["kubernetes"])
    events = webhook.events.recorded
    if name in UNTOUCHED:
        assert "patch" not in response
        assert events == []
    elif name in SKIPPED:
        # Only the reason is added, and an Event tells it (not for a dry run).
        assert all(op["path"].startswith("/metadata/annotations") for op in decoded(response))
        assert annotations[SKIP] == SKIPPED[name]
        assert spec == case["request"]["object"]["spec"]
        dry = case["request"].get("dryRun", False)
        await _poll_events(webhook, 0 if dry else 1)
        assert all(reason == SKIPPED[name] for _, _, reason in events)
    elif name in GATEWAYS:
        _assert_gateway(case, pod)
        assert events == []
    else:
        assert name in INJECTED
        _assert_injected(case, pod)
        assert events == []


def _assert_gateway(case: dict[str, Any], pod: dict[str, Any]) -> None:
    """The pod's own pilotfish-proxy is the proxy: no init container (no capture), the
    mesh's Envoy image, the pod's resources and ports kept, nothing waiting on it."""
    spec = pod["spec"]
    original = case["request"]["object"]["spec"]["containers"]
    assert "initContainers" not in spec
    own = [c["name"] for c in original if c["name"] != "pilotfish-proxy"]
    assert [c["name"] for c in spec["containers"]] == ["pilotfish-proxy", *own]
    proxy = spec["containers"][0]
    assert proxy["image"].startswith("envoyproxy/envoy:")
    assert proxy["command"] == ["envoy"] and "--config-yaml" in proxy["args"]
    placeholder = next((c for c in original if c["name"] == "pilotfish-proxy"), None)
    if placeholder is not None:  # what the pod sets on its placeholder stays
        assert proxy["resources"] == placeholder["resources"]
        assert {p["containerPort"] for p in proxy["ports"]} == {80, 443, 15021, 15090}
        env = {e["name"] for e in proxy["env"]}
        assert env == {"POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "REGION"}
    assert "lifecycle" not in proxy and "restartPolicy" not in proxy
    assert "add" not in proxy["securityContext"]["capabilities"]
    assert {v["name"] for v in spec["volumes"]} == {"pilotfish-token", "pilotfish-ca-root"}


def _assert_injected(case: dict[str, Any], pod: dict[str, Any]) -> None:
    spec, meta = pod["spec"], pod["metadata"]
    status = json.loads(meta["annotations"][STATUS])
    native = native_sidecars({"gitVersion": f"v{case['kubernetes']}"})
    init_names = [c["name"] for c in spec["initContainers"]]
    names = [c["name"] for c in spec["containers"]]
    original = case["request"]["object"]["spec"]
    if native:
        assert init_names[:2] == ["pilotfish-init", "pilotfish-proxy"]
        proxy = spec["initContainers"][1]
        assert proxy["restartPolicy"] == "Always"
        assert "startupProbe" in proxy
        assert names == [c["name"] for c in original["containers"]]
    else:
        assert init_names[0] == "pilotfish-init"
        assert names[0] == "pilotfish-proxy"
        proxy = spec["containers"][0]
        assert "restartPolicy" not in proxy
        assert "postStart" in proxy["lifecycle"]
    # The pod's own containers are kept, after ours.
    own_init = [c["name"] for c in original.get("initContainers", [])]
    assert init_names[len(init_names) - len(own_init) :] == own_init
    assert status["initContainers"] + status["containers"] == [
        n for n in init_names + names if n.startswith("pilotfish-")
    ]
    # Only the init container has network privileges; Envoy runs as 1337, read-only.
    init = spec["initContainers"][0]
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    sc = proxy["securityContext"]
    assert (sc["runAsUser"], sc["runAsNonRoot"], sc["readOnlyRootFilesystem"]) == (1337, True, True)
    assert "add" not in sc["capabilities"]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert proxy["image"] == "envoyproxy/envoy:v1.40.0"
    # Delta xDS, which scoped sidecars need, unless the operator runs --no-on-demand.
    bootstrap = json.loads(proxy["args"][proxy["args"].index("--config-yaml") + 1])
    api_type = bootstrap["dynamic_resources"]["ads_config"]["api_type"]
    assert api_type == ("DELTA_GRPC" if case.get("onDemand", True) else "GRPC")


async def _poll_events(webhook: Webhook, count: int) -> None:
    for _ in range(200):
        if len(webhook.events.recorded) >= count:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # and no more than that
    assert len(webhook.events.recorded) == count


async def test_capture_annotations_become_init_args() -> None:
    case = load_case("capture-annotations")
    _, response = await admit(case)
    args = patched_pod(case, response)["spec"]["initContainers"][0]["args"]
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags == {
        "--proxy-uid": "1337",
        "--outbound-port": "15001",
        "--inbound-port": "15006",
        "--include-outbound-cidrs": "10.96.0.0/12,10.244.0.0/16",
        # Ours win over Istio's name for the same setting.
        "--exclude-outbound-cidrs": "10.96.0.10/32,169.254.169.254/32",
        "--include-inbound-ports": "9080,9901",
        "--exclude-inbound-ports": "15000,15001,15006,15021,15090,9901",
        "--exclude-outbound-ports": "5432,6379",
    }


async def test_the_injected_init_step_is_one_our_cli_runs(capsys: Any) -> None:
    """The template and `pilotfish capture-init` agree: the init container's exact
    arguments parse and render rules (dry run), honouring the annotations."""
    from pilotfish_operator.cli import main

    case = load_case("capture-annotations")
    _, response = await admit(case)
    init = patched_pod(case, response)["spec"]["initContainers"][0]
    argv = [*init.get("command", [])[1:], *init["args"]]  # drop the `pilotfish` executable
    assert argv[0] == "capture-init"
    assert main([*argv, "--dry-run"]) == 0
    rules = capsys.readouterr().out
    assert "-A PILOTFISH_OUTPUT -d 169.254.169.254/32 -j RETURN" in rules
    assert "-A PILOTFISH_OUTPUT -m owner --uid-owner 1337 -j RETURN" in rules
    assert "--dport 5432 -j RETURN" in rules


async def test_injecting_twice_changes_nothing() -> None:
    case = load_case("namespace-enabled")
    _, first = await admit(case)
    case["request"]["object"] = patched_pod(case, first)
    _, second = await admit(case)
    assert second["allowed"] is True and "patch" not in second


async def test_not_a_review_is_refused(webhook: Webhook) -> None:
    status, body = await post(webhook.port, "/inject", {"kind": "Pod"}, webhook.ca_bundle)
    assert status == 400 and "AdmissionReview" in str(body)
