"""The chart lints, renders to reviewed goldens, every document is valid Kubernetes, and
the generated copies (plain manifests, CRDs, injection template) have not drifted."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chartrender import (
    CHART,
    INSTALL_ARGS,
    INSTALL_HEADER,
    ROOT,
    VALUES,
    documents,
    find,
    helm,
    render,
    without_crds,
)
from kubernetes_validate.utils import latest_version

TESTDATA = Path(__file__).parent / "testdata"
CRDS = ROOT / "manifests" / "crds"
INJECTION_TEMPLATE = (
    ROOT / "operator" / "pilotfish_operator" / "webhook" / "injection-template.yaml"
)
# Native sidecars (the chart's target) need 1.29; also the newest schemas we have.
KUBERNETES = ["1.29.0", latest_version()]
# Kinds outside Kubernetes' own schemas, rendered only with certManager.enabled.
CERT_MANAGER_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
PROMETHEUS_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}


@pytest.mark.parametrize("values", sorted(VALUES))
def test_helm_lint_strict(values: str) -> None:
    out = helm("lint", "--strict", str(CHART), *VALUES[values])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", sorted(VALUES))
def test_template_golden(values: str, golden: Callable[[Path, str], None]) -> None:
    golden(TESTDATA / f"{values}.yaml", without_crds(render(*VALUES[values])))


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("values", sorted(VALUES))
def test_every_document_is_valid_kubernetes(values: str, version: str) -> None:
    docs = documents(render(*VALUES[values]))
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert {"CustomResourceDefinition", "MutatingWebhookConfiguration"} <= {k for _, k in kinds}
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CERT_MANAGER_KINDS | PROMETHEUS_KINDS:
            continue  # cert-manager's and the Prometheus operator's CRDs are not in them
        # strict: unknown fields are errors, as with `kubectl apply --validate=strict`
        kubernetes_validate.validate(doc, version, strict=True)
    if values == "cert-manager":
        assert kinds >= CERT_MANAGER_KINDS
    elif values == "mesh-ca-cert-manager":
        assert ("cert-manager.io/v1", "Certificate") in kinds
    elif values == "pod-monitor":
        assert kinds >= PROMETHEUS_KINDS
    else:
        assert not CERT_MANAGER_KINDS & kinds


def test_schema_validation_catches_a_misspelt_field() -> None:
    deployment = find(documents(render()), "Deployment", "pilotfish")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES[0], strict=True)


def test_install_yaml_is_a_fresh_render() -> None:
    fresh = INSTALL_HEADER + render(*INSTALL_ARGS)
    installed = (ROOT / "manifests" / "install.yaml").read_text()
    assert installed == fresh, "manifests/install.yaml is stale: run `make manifests`"
    namespace = find(documents(fresh), "Namespace")
    assert namespace["metadata"]["name"] == "pilotfish-system"


def test_chart_crds_are_the_generated_ones() -> None:
    generated = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert generated, "manifests/crds is empty"
    assert shipped == generated, "charts/pilotfish/files/crds is stale: run `make manifests`"
    gateway_api = {p.name: p.read_text() for p in (CRDS / "gateway-api").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "files" / "gateway-api-crds").glob("*")}
    assert gateway_api and shipped == gateway_api, "files/gateway-api-crds: run `make manifests`"
    generated |= gateway_api

    rendered = {
        d["metadata"]["name"]: d
        for d in documents(render())
        if d["kind"] == "CustomResourceDefinition"
    }
    assert len(rendered) == len(generated)
    for name, text in generated.items():
        expected = yaml.safe_load(text)
        # Kept on uninstall: removing a CRD would delete every VirtualService with it.
        expected["metadata"]["annotations"] = {"helm.sh/resource-policy": "keep"}
        assert rendered[expected["metadata"]["name"]] == expected, name


def test_crds_can_be_left_out() -> None:
    docs = documents(render("--set", "crds.install=false"))
    groups = {d["spec"]["group"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert groups == {"gateway.networking.k8s.io"}  # those go by gatewayAPI.crds
    kinds = {
        d["kind"] for d in documents(render("--set", "crds.install=false,gatewayAPI.crds=never"))
    }
    assert "CustomResourceDefinition" not in kinds
    assert "Deployment" in kinds


def test_gateway_api_crds_are_installed_only_when_absent() -> None:
    # `helm template` cannot look up the cluster: auto renders them, as on a cluster
    # without them; the template skips one the lookup finds unless this release made it.
    text = (CHART / "templates" / "gateway-api-crds.yaml").read_text()
    assert 'lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" $name' in text
    assert "(eq $release $.Release.Name)" in text
    with pytest.raises(AssertionError, match="auto, always or never"):
        render("--set", "gatewayAPI.crds=sometimes")


def test_chart_ships_the_operators_injection_template() -> None:
    assert INJECTION_TEMPLATE.is_file(), f"{INJECTION_TEMPLATE} is missing"
    shipped = CHART / "files" / "injection-template.yaml"
    assert shipped.read_text() == INJECTION_TEMPLATE.read_text(), (
        "charts/pilotfish/files/injection-template.yaml is stale: run `make manifests`"
    )
    config = find(documents(render()), "ConfigMap", "pilotfish-injection")
    # Byte for byte: what the operator reads from the mount is the file users edit.
    assert config["data"]["injection-template.yaml"] == INJECTION_TEMPLATE.read_text()
