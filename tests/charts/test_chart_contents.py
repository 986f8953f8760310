"""What the rendered chart does once applied: which pods the injector sees, what the
operator may do, and how its pods are wired to the flags, ports and files they use."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest
import yaml
from chartrender import CHART, ROOT, VALUES, documents, find, helm, render

from pilotfish_operator.api.kinds import SPECS
from pilotfish_operator.injection import decide

Labels = dict[str, str]


def selects(selector: dict[str, Any], labels: Labels) -> bool:
    """A Kubernetes LabelSelector, as the API server evaluates a webhook's selectors."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def injectors(namespace: str, ns_labels: Labels, pod_labels: Labels, **kw: str) -> list[str]:
    """Names of the injection webhooks the API server would call for a new pod."""
    config = find(documents(render(**kw)), "MutatingWebhookConfiguration")
    # The API server labels every namespace with its own name.
    ns_labels = {**ns_labels, "kubernetes.io/metadata.name": namespace}
    return [
        hook["name"]
        for hook in config["webhooks"]
        if selects(hook["namespaceSelector"], ns_labels)
        and selects(hook["objectSelector"], pod_labels)
    ]


ENABLED = {"mesh-injection": "enabled"}
OPT_IN = {"sidecar.pilotfish.io/inject": "true"}
OPT_OUT = {"sidecar.pilotfish.io/inject": "false"}
APP = {"app": "reviews"}
GATEWAY = {"istio": "ingressgateway", "pilotfish.io/proxy": "gateway"}


@pytest.mark.parametrize(
    ("namespace", "ns_labels", "pod_labels"),
    [
        ("shop", ENABLED, APP),
        ("shop", ENABLED, {**APP, **OPT_OUT}),
        ("shop", ENABLED, {**APP, **OPT_IN}),
        ("shop", {}, APP),
        ("shop", {"mesh-injection": "disabled"}, APP),
        ("shop", {}, {**APP, **OPT_IN}),
        ("shop", {}, OPT_OUT),
        ("kube-system", ENABLED, OPT_IN),
        ("kube-public", {}, OPT_IN),
        ("pilotfish-system", ENABLED, OPT_IN),
        # Gateway pods: their proxy is filled in anywhere but Kubernetes' namespaces.
        ("shop", ENABLED, GATEWAY),
        ("shop", {}, {**GATEWAY, **OPT_IN}),
        ("pilotfish-system", {}, GATEWAY),
        ("kube-system", {}, GATEWAY),
    ],
)
def test_injector_sees_exactly_the_pods_the_operator_injects(
    namespace: str, ns_labels: Labels, pod_labels: Labels
) -> None:
    # The selectors keep every other pod creation away from the webhook (so an operator
    # outage cannot block them); they must agree with the operator's own decision.
    called = injectors(namespace, ns_labels, pod_labels)
    assert len(called) <= 1, f"one pod, several injection calls: {called}"
    decision = decide(namespace, ns_labels, pod_labels)
    assert bool(called) == (decision.inject or decision.reason == "gateway")


def test_injector_never_sees_its_own_release_namespace() -> None:
    docs = documents(render(namespace="mesh-control"))
    config = find(docs, "MutatingWebhookConfiguration")
    for hook in config["webhooks"]:
        assert hook["clientConfig"]["service"] == {
            "name": "pilotfish",
            "namespace": "mesh-control",
            "path": "/inject",
            "port": 443,
        }
        own = {"kubernetes.io/metadata.name": "mesh-control", **ENABLED}
        # Only its own gateway pods are seen there.
        gateways_only = hook["objectSelector"] == {"matchLabels": {"pilotfish.io/proxy": "gateway"}}
        assert gateways_only or not selects(hook["namespaceSelector"], own)


def test_webhook_settings() -> None:
    docs = documents(render("--set", "webhook.injection.failurePolicy=Ignore"))
    mutating = find(docs, "MutatingWebhookConfiguration", "pilotfish-sidecar-injector")
    for hook in mutating["webhooks"]:
        # A gateway pod without its proxy would never start: its creation waits instead.
        gateway = hook["name"] == "gateway.sidecar-injector.pilotfish.io"
        assert hook["failurePolicy"] == ("Fail" if gateway else "Ignore")
        assert hook["sideEffects"] == "NoneOnDryRun"  # skip Events, never on dry runs
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["rules"] == [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
    validating = find(docs, "ValidatingWebhookConfiguration", "pilotfish-validator")
    (hook,) = validating["webhooks"]
    assert hook["name"] == "validation.pilotfish.io"
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    # Exactly the kinds we own (api/kinds.py), per group.
    owned: dict[str, set[str]] = {}
    for spec in SPECS:
        if spec.owned:
            owned.setdefault(spec.group, set()).add(spec.plural)
    assert {g: set(r["resources"]) for r in hook["rules"] for g in r["apiGroups"]} == owned
    for rule in hook["rules"]:
        assert set(rule["operations"]) == {"CREATE", "UPDATE"}


Grant = tuple[str, str, str, str]  # (apiGroup, resource, verb, resourceName or "*")


def grants(role: dict[str, Any]) -> set[Grant]:
    return {
        (group, resource, verb, name)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }


def read(group: str, *resources: str) -> set[Grant]:
    return {(group, r, v, "*") for r in resources for v in ("get", "list", "watch")}


CLUSTER_GRANTS = (
    # Every kind the operator reads (api/kinds.py), and the status of the kinds it owns.
    {g for spec in SPECS if spec.watched for g in read(spec.group, spec.plural)}
    | {(s.group, f"{s.plural}/status", "patch", "*") for s in SPECS if s.status != "none"}
    # Only its own two webhook configurations, to patch the CA in.
    | {
        ("admissionregistration.k8s.io", f"{kind}webhookconfigurations", verb, name)
        for kind, name in (
            ("mutating", "pilotfish-sidecar-injector"),
            ("validating", "pilotfish-validator"),
        )
        for verb in ("get", "update", "patch")
    }
    | {(g, "events", v, "*") for g in ("", "events.k8s.io") for v in ("create", "patch")}
    # Each Gateway API Gateway's ServiceAccount, Deployment and Service (names per Gateway).
    | {("", r, v, "*") for r in ("serviceaccounts", "services") for v in ("create", "patch")}
    | {("apps", "deployments", v, "*") for v in ("get", "create", "patch")}
    # kopf's discovery of CRDs; the webhook configurations watched for a lost caBundle.
    | {("apiextensions.k8s.io", "customresourcedefinitions", v, "*") for v in ("list", "watch")}
    | {
        ("admissionregistration.k8s.io", f"{kind}webhookconfigurations", verb, "*")
        for kind in ("mutating", "validating")
        for verb in ("list", "watch")
    }
)
LEASES = {("coordination.k8s.io", "leases", v, "*") for v in ("get", "create", "update")} | {
    ("", "configmaps", "get", "pilotfish-mesh")  # the mesh config, read by name
}
CERT_SECRET = {
    # `create` cannot be limited by name in Kubernetes RBAC.
    ("", "secrets", "create", "*"),
    ("", "secrets", "get", "pilotfish-webhook-certs"),
    ("", "secrets", "update", "pilotfish-webhook-certs"),
}

SECURITY_CLUSTER_GRANTS = {
    # Whose projected token a sidecar presents; the roots ConfigMap in every namespace.
    ("authentication.k8s.io", "tokenreviews", "create", "*"),
    # Gateway certificates, by name (credentialName) in the gateways' namespaces.
    ("", "secrets", "get", "*"),
    ("", "configmaps", "create", "*"),
    ("", "configmaps", "get", "pilotfish-ca-root-cert"),
    ("", "configmaps", "update", "pilotfish-ca-root-cert"),
}
MESH_CA_SECRETS = {
    ("", "secrets", "create", "*"),
    ("", "secrets", "get", "cacerts"),
    ("", "secrets", "get", "pilotfish-ca"),
}


@pytest.mark.parametrize("values", sorted(VALUES))
def test_rbac_is_exactly_what_the_operator_needs(values: str) -> None:
    docs = documents(render(*VALUES[values]))
    secure = values != "plaintext-xds"
    cluster = CLUSTER_GRANTS | (SECURITY_CLUSTER_GRANTS if secure else set())
    assert grants(find(docs, "ClusterRole", "pilotfish")) == cluster
    # Secrets only when the operator keeps its own certificate; cert-manager's is mounted.
    expected = LEASES if values == "cert-manager" else LEASES | CERT_SECRET
    expected = expected | (MESH_CA_SECRETS if secure else set())
    role = find(docs, "Role", "pilotfish")
    assert role["metadata"]["namespace"] == "pilotfish-system"
    assert grants(role) == expected
    subject = {"kind": "ServiceAccount", "name": "pilotfish", "namespace": "pilotfish-system"}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = find(docs, kind, "pilotfish")
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["name"] == "pilotfish"
    pod = find(docs, "Deployment", "pilotfish")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pilotfish"


def operator_side(code: str, *argv: str) -> Any:
    """Run `code` against the real operator package and return the JSON it prints. In a
    fresh interpreter: under pytest, tests/pilotfish_operator/<x> directories would shadow
    the package's subpackages of the same name."""
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


PARSE_OPERATOR_ARGS = """
import argparse, json, sys
from pilotfish_operator.kube.command import add_parser
parser = argparse.ArgumentParser()
add_parser(parser.add_subparsers(dest="command"))
print(json.dumps({k: str(v) for k, v in vars(parser.parse_args(sys.argv[1:])).items()}))
"""


def flags(container: dict[str, Any]) -> dict[str, str]:
    """The container's args as `pilotfish operator`'s own parser reads them (an unknown
    flag fails here)."""
    args = container["args"]
    assert args[0] == "operator"
    parsed = operator_side(PARSE_OPERATOR_ARGS, *args)
    given = {arg.split("=", 1)[0] for arg in args[1:]}
    return {f: parsed[_dest(f, parsed)] for f in given}


def _dest(flag: str, parsed: dict[str, str]) -> str:
    """Where the parser keeps `flag`'s value (`--no-x` is `--x`'s negation)."""
    name = flag[2:].replace("-", "_")
    return name[3:] if name not in parsed and name.startswith("no_") else name


def mounted_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """(volume name, key) of the file at `path` inside the container."""
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            return mount["name"], path.removeprefix(prefix)
    raise AssertionError(f"nothing mounted at {path}")


@pytest.mark.parametrize("values", sorted(VALUES))
def test_operator_pod_is_wired_to_its_flags(values: str) -> None:
    docs = documents(render(*VALUES[values]))
    pod = find(docs, "Deployment", "pilotfish")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = flags(container)
    assert args["--namespace"] == "pilotfish-system"
    secure = values != "plaintext-xds"
    assert args["--xds"] == ("0.0.0.0:15012" if secure else "0.0.0.0:15010")
    assert ("--plaintext-xds" in args) is not secure
    xds_port = next(p for p in container["ports"] if p["name"] == "xds")["containerPort"]
    service_ports = {p["port"] for p in find(docs, "Service", "pilotfish")["spec"]["ports"]}
    assert xds_port == int(args["--xds"].rsplit(":", 1)[1]) and xds_port in service_ports
    assert args["--webhook"] == "0.0.0.0:15017"
    assert args["--monitoring"] == "0.0.0.0:15014"
    assert args["--cluster-domain"] == "cluster.local"
    volumes = {v["name"]: v for v in pod["volumes"]}

    # The injection template the operator reads is the ConfigMap's copy of the chart file.
    volume, key = mounted_file(pod, container, args["--injection-template"])
    config = find(docs, "ConfigMap", volumes[volume]["configMap"]["name"])
    assert key in config["data"]

    if values == "mesh-ca-cert-manager":
        # The mesh CA Certificate writes the Secret the operator reads first.
        certificate = find(docs, "Certificate", "pilotfish-mesh-ca")
        assert certificate["spec"]["secretName"] == "cacerts" and certificate["spec"]["isCA"]
        assert certificate["spec"]["issuerRef"]["name"] == "root-ca"
    if values == "cert-manager":
        assert "--cert-secret" not in args
        volume, _ = mounted_file(pod, container, args["--cert-dir"] + "/tls.crt")
        secret = volumes[volume]["secret"]["secretName"]
        certificate = find(docs, "Certificate")
        assert certificate["spec"]["secretName"] == secret
        assert "pilotfish.pilotfish-system.svc" in certificate["spec"]["dnsNames"]
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            annotations = find(docs, kind)["metadata"]["annotations"]
            assert annotations["cert-manager.io/inject-ca-from"] == (
                "pilotfish-system/pilotfish-webhook"
            )
    else:
        assert args["--cert-secret"] == "pilotfish-webhook-certs"
        assert "--cert-dir" not in args


def test_prometheus_url_value_points_the_dashboard_at_prometheus() -> None:
    def args(*values: str) -> dict[str, str]:
        (container,) = find(documents(render(*values)), "Deployment", "pilotfish")["spec"][
            "template"
        ]["spec"]["containers"]
        return flags(container)

    assert "--prometheus" not in args()
    url = "http://prometheus-operated.monitoring:9090"
    assert args("--set", f"metrics.prometheusUrl={url}")["--prometheus"] == url


def test_service_reaches_the_operator_ports() -> None:
    docs = documents(render())
    deployment = find(docs, "Deployment", "pilotfish")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = find(docs, "Service", "pilotfish")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    reach = {
        p["port"]: named.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]
    }
    assert reach == {15012: 15012, 443: 15017, 15014: 15014}
    probes = {
        kind: (container[kind]["httpGet"]["path"], named[container[kind]["httpGet"]["port"]])
        for kind in ("livenessProbe", "readinessProbe")
    }
    assert probes == {"livenessProbe": ("/healthz", 15014), "readinessProbe": ("/readyz", 15014)}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_injected_containers_get_the_chart_values() -> None:
    docs = documents(
        render(
            "--set",
            "proxy.image.tag=v1.40.1",
            "--set",
            "image.tag=dev",
            "--set",
            "proxy.logLevel=debug",
        )
    )
    values = find(docs, "ConfigMap", "pilotfish-injection")["data"]["injection-values.yaml"]
    parsed = yaml.safe_load(values)
    assert parsed["proxy"]["image"] == "envoyproxy/envoy:v1.40.1"
    assert parsed["proxy"]["logLevel"] == "debug"
    assert parsed["init"]["image"] == "ghcr.io/pilotfish-mesh/pilotfish:dev"
    assert parsed["proxy"]["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    # The operator itself runs the same image as the init step.
    (container,) = find(docs, "Deployment", "pilotfish")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/pilotfish-mesh/pilotfish:dev"


def test_defaults_are_the_operators_defaults() -> None:
    docs = documents(render())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version("pilotfish")
    (container,) = find(docs, "Deployment", "pilotfish")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/pilotfish-mesh/pilotfish:{version('pilotfish')}"
    # A default install injects what the operator injects with no values at all.
    values = find(docs, "ConfigMap", "pilotfish-injection")["data"]["injection-values.yaml"]
    defaults = operator_side(
        "import json; from pilotfish_operator.webhook.inject import DEFAULT_VALUES as v; "
        "print(json.dumps(v))"
    )
    assert yaml.safe_load(values) == defaults
    assert "pilotfish" not in {
        d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"
    }


def test_ha_values_spread_three_replicas_and_keep_two() -> None:
    docs = documents(render(*VALUES["ha"]))
    deployment = find(docs, "Deployment", "pilotfish")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 3
    pdb = find(docs, "PodDisruptionBudget", "pilotfish")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"], labels)
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], labels)


def test_bad_anti_affinity_value_is_refused() -> None:
    out = helm("template", "pilotfish", str(CHART), "--set", "podAntiAffinity=sometimes")
    assert out.returncode != 0
    assert 'podAntiAffinity must be "soft", "hard" or ""' in out.stderr


def test_mesh_config_value_renders_the_configmap_the_operator_reads() -> None:
    provider = {
        "name": "my-ext-authz",
        "envoyExtAuthzHttp": {"service": "ext-authz.foo.svc.cluster.local", "port": 8000},
    }
    values = json.dumps({"extensionProviders": [provider]})
    docs = documents(render("--set-json", f"meshConfig={values}"))
    configmap = find(docs, "ConfigMap", "pilotfish-mesh")
    assert configmap["metadata"]["namespace"] == "pilotfish-system"
    code = """
import json, sys
from pilotfish_operator.api import parse, mesh_config
cm = parse(json.loads(sys.argv[1]))
print(json.dumps([p.name for p in mesh_config.parse_mesh("", "", cm.data).extension_providers]))
"""
    assert operator_side(code, json.dumps(configmap)) == ["my-ext-authz"]
    # Without the value, no ConfigMap: the operator runs with the defaults.
    assert not [d for d in documents(render()) if d["metadata"]["name"] == "pilotfish-mesh"]


def test_pod_monitor_scrapes_the_sidecars_and_renames_istios_metrics() -> None:
    docs = documents(render(*VALUES["pod-monitor"]))
    monitor = find(docs, "PodMonitor", "pilotfish-sidecars")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    # The injected proxy's named port, as the injection template declares it.
    template = (ROOT / "operator/pilotfish_operator/webhook/injection-template.yaml").read_text()
    assert "{name: envoy-prom, containerPort: {{ ports.stats }}" in template
    assert endpoint["port"] == "envoy-prom" and endpoint["path"] == "/stats/prometheus"
    (rename,) = endpoint["metricRelabelings"]
    assert re.fullmatch(rename["regex"], "envoy_istio_requests_total")
    assert (
        re.sub(
            rename["regex"],
            rename["replacement"].replace("$1", r"\1"),
            "envoy_istio_requests_total",
        )
        == "istio_requests_total"
    )
    # The control plane's metrics: its pods, its monitoring port.
    control = find(docs, "PodMonitor", "pilotfish-control-plane")
    deployment = find(docs, "Deployment", "pilotfish")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert control["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = control["spec"]["podMetricsEndpoints"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (ports[endpoint["port"]], endpoint["path"]) == (15014, "/metrics")
    assert not [d for d in documents(render()) if d["kind"] == "PodMonitor"]


def test_scoped_sidecars_are_one_value() -> None:
    """`operator.onDemand`: on by default (the operator's own default); false runs the
    operator with --no-on-demand."""
    for values, expected in ((("--set", "operator.onDemand=false"), True), ((), False)):
        docs = documents(render(*values))
        pod = find(docs, "Deployment", "pilotfish")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        given = flags(container)
        assert given.get("--no-on-demand") == ("False" if expected else None), given
        assert "--on-demand" not in given
