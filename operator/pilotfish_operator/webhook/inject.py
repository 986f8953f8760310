"""The sidecar injection webhook's decision and patch, rendered from one template.

Pure: a pod and its namespace's labels in, an admission response out. The server looks the
labels up and emits the Event for a skipped pod; nothing here talks to Kubernetes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jinja2
import yaml

from ..injection import decide
from ..translate.services import workload_from
from .admission import (
    AdmissionRequest,
    Response,
    append,
    pointer,
    prepend,
    replace,
    set_keys,
)
from .sidecar_bootstrap import PodXdsSecurity, sidecar_bootstrap
from .traffic import (
    ADMIN_PORT,
    HEALTH_PORT,
    INBOUND_PORT,
    OUTBOUND_PORT,
    PROXY_UID,
    STATS_PORT,
    InvalidAnnotation,
    capture,
)

STATUS_ANNOTATION = "sidecar.pilotfish.io/status"
SKIP_ANNOTATION = "sidecar.pilotfish.io/skip-reason"
PROXY_NAME = "pilotfish-proxy"
AUTO_IMAGE = "auto"
"""A gateway Deployment's proxy image: the webhook puts the mesh's Envoy image there."""
INIT_NAME = "pilotfish-init"
DEFAULT_TEMPLATE = Path(__file__).with_name("injection-template.yaml")
XDS_HOST = "pilotfish.pilotfish-system.svc"
XDS_PORT = 15010
XDS_TLS_PORT = 15012
# Native sidecars (init containers with restartPolicy: Always) are on by default from 1.29.
NATIVE_SIDECARS_SINCE = (1, 29)


def _app_version() -> str:
    try:
        return version("pilotfish")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "latest"


DEFAULT_VALUES: dict[str, Any] = {
    "proxy": {
        "image": "envoyproxy/envoy:v1.40.0",
        "logLevel": "warning",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    },
    "init": {
        "image": f"ghcr.io/pilotfish-mesh/pilotfish:{_app_version()}",
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
    },
}
_SECTIONS = ("initContainers", "containers", "volumes", "annotations")


class TemplateError(ValueError):
    """The injection template does not render to what the webhook can apply."""


def native_sidecars(version: Mapping[str, Any]) -> bool:
    """From the API server's /version: minor is e.g. "29" or "29+" (some providers)."""
    try:
        major = int(re.sub(r"\D", "", str(version.get("major", ""))))
        minor = int(re.sub(r"\D", "", str(version.get("minor", ""))))
    except ValueError:
        match = re.match(r"v?(\d+)\.(\d+)", str(version.get("gitVersion", "")))
        if not match:
            return False
        major, minor = int(match[1]), int(match[2])
    return (major, minor) >= NATIVE_SIDECARS_SINCE


def merge_values(overrides: Mapping[str, Any], base: Mapping[str, Any] = DEFAULT_VALUES) -> Any:
    """The chart's values over the defaults (maps merge, anything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_values(value, out[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Template:
    source: str
    version: str
    """Changes whenever the template text does; recorded in the status annotation."""
    compiled: jinja2.Template = field(compare=False, repr=False)

    @staticmethod
    def load(path: Path = DEFAULT_TEMPLATE) -> Template:
        source = path.read_text()
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        env.filters["json"] = lambda value: json.dumps(value)
        try:
            compiled = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{path}:{exc.lineno}: {exc.message}") from None
        return Template(source, hashlib.sha256(source.encode()).hexdigest()[:12], compiled)


@dataclass(frozen=True)
class Config:
    xds_host: str = XDS_HOST
    xds_port: int = XDS_PORT
    native_sidecars: bool = True
    security: PodXdsSecurity | None = None
    """Sidecars reach xDS over TLS with their pod's token (else plaintext)."""
    trust_domain: str = "cluster.local"
    values: Mapping[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_VALUES))
    delta: bool = True
    """Sidecars use Delta xDS (needed by scoped sidecars, the operator's default; off
    with `operator --no-on-demand`)."""


@dataclass(frozen=True)
class Outcome:
    response: Response
    reason: str
    """Machine-readable: an injection.decide reason, already-injected, not-a-pod-create or
    invalid-annotation / template-error for a denied pod."""
    skipped: bool = False
    """The pod was left without a sidecar and told why (annotation; the server adds an Event)."""


class Injector:
    def __init__(self, config: Config, template: Template | None = None) -> None:
        self.config = config
        self.template = template or Template.load()
        self.check()

    def check(self) -> None:
        """Render for a sample pod in every mode, so a broken template fails at start-up."""
        sample = {"metadata": {"name": "sample", "namespace": "default"}, "spec": {}}
        for native in (True, False):
            self._render(sample, "default", native)
        self._render(sample, "default", False, gateway=True)

    def admit(self, request: AdmissionRequest, namespace_labels: Mapping[str, str]) -> Outcome:
        pod = request.object
        if request.kind.kind != "Pod" or request.operation != "CREATE" or pod is None:
            return Outcome(Response(), "not-a-pod-create")
        meta = pod.get("metadata") or {}
        namespace = request.namespace or meta.get("namespace") or "default"
        labels: dict[str, str] = dict(meta.get("labels") or {})
        decision = decide(namespace, dict(namespace_labels), labels)
        if decision.reason == "system-namespace":
            return Outcome(Response(), decision.reason)  # never touched, not even annotated
        gateway = decision.reason == "gateway"
        if _injected(pod, gateway):
            return Outcome(Response(), "already-injected")
        if not decision.inject and not gateway:
            patch = set_keys(pod, ("metadata", "annotations"), {SKIP_ANNOTATION: decision.reason})
            return Outcome(Response(patch=patch), decision.reason, skipped=True)
        try:
            added = self._render(pod, namespace, self.config.native_sidecars, gateway)
        except InvalidAnnotation as exc:
            return Outcome(Response.deny(str(exc)), "invalid-annotation")
        except TemplateError as exc:
            return Outcome(Response.deny(f"sidecar injection: {exc}", 500), "template-error")
        return Outcome(Response(patch=self._patch(pod, added)), decision.reason)

    def _render(
        self, pod: Mapping[str, Any], namespace: str, native: bool, gateway: bool = False
    ) -> dict[str, Any]:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        service_account = spec.get("serviceAccountName") or "default"
        labels = dict(meta.get("labels") or {})
        controllers = [
            (str(o.get("kind")), str(o.get("name")))
            for o in meta.get("ownerReferences") or ()
            if o.get("controller")
        ]
        identity = (
            f"spiffe://{self.config.trust_domain}/ns/{namespace}/sa/{service_account}"
            if self.config.security is not None
            else ""
        )
        # A generateName pod without a controller is named only by the kubelet.
        pod_name = meta.get("name") or str(meta.get("generateName") or "").rstrip("-")
        workload = workload_from(pod_name, namespace, labels, controllers, identity)
        boot = sidecar_bootstrap(
            namespace=namespace,
            labels=labels,
            service_account=service_account,
            xds_host=self.config.xds_host,
            xds_port=self.config.xds_port,
            security=self.config.security,
            workload=workload,
            delta=self.config.delta,
        )
        context = {
            "pod": pod,
            "namespace": namespace,
            "service_account": service_account,
            "native_sidecar": native,
            "gateway": gateway,
            # Indented: `kubectl get pod -o yaml` shows it as a readable block.
            "bootstrap": json.dumps(boot, indent=2, sort_keys=True),
            "capture": capture(meta.get("annotations") or {}),
            "ports": {
                "proxy_uid": PROXY_UID,
                "outbound": OUTBOUND_PORT,
                "inbound": INBOUND_PORT,
                "admin": ADMIN_PORT,
                "health": HEALTH_PORT,
                "stats": STATS_PORT,
            },
            "xds_security": dataclasses.asdict(self.config.security)
            if self.config.security is not None
            else None,
            "values": self.config.values,
        }
        try:
            text = self.template.compiled.render(context)
            rendered = yaml.safe_load(text)
        except (jinja2.TemplateError, yaml.YAMLError) as exc:
            raise TemplateError(f"the template does not render: {exc}") from None
        return _checked(rendered)

    def _patch(self, pod: Mapping[str, Any], added: dict[str, Any]) -> list[dict[str, Any]]:
        status = {
            "version": self.template.version,
            "initContainers": [c["name"] for c in added["initContainers"]],
            "containers": [c["name"] for c in added["containers"]],
            "volumes": [v["name"] for v in added["volumes"]],
        }
        annotations = {
            **added["annotations"],
            STATUS_ANNOTATION: json.dumps(status, separators=(",", ":")),
        }
        containers = list(pod.get("spec", {}).get("containers") or ())
        placeholder = [i for i, c in enumerate(containers) if c.get("name") == PROXY_NAME]
        fills = []
        if placeholder and added["containers"]:
            # A gateway's Deployment names the proxy container (a pod needs one); the
            # rendered one takes its place, with what the pod sets on it on top.
            i = placeholder[0]
            proxy, *added["containers"] = added["containers"]
            fills = [replace(pointer("spec", "containers", i), _fill(proxy, containers[i]))]
        return [
            *fills,
            *prepend(pod, ("spec", "initContainers"), added["initContainers"]),
            *prepend(pod, ("spec", "containers"), added["containers"]),
            *append(pod, ("spec", "volumes"), added["volumes"]),
            *set_keys(pod, ("metadata", "annotations"), annotations),
        ]


_MERGED = {"ports": ("containerPort", "name"), "env": ("name",), "volumeMounts": ("mountPath",)}
"""Lists of a gateway's placeholder container added to the rendered ones (by these keys)."""


def _fill(rendered: dict[str, Any], placeholder: Mapping[str, Any]) -> dict[str, Any]:
    """The rendered proxy container with the pod's settings for it on top; `image: auto`
    (or none) keeps the rendered image; ports, env and mounts are added to the rendered
    ones (what the proxy needs stays)."""
    out = {**rendered, **{k: v for k, v in placeholder.items() if k not in ("image", *_MERGED)}}
    if placeholder.get("image") not in (None, "", AUTO_IMAGE):
        out["image"] = placeholder["image"]
    for field_name, keys in _MERGED.items():
        items = list(rendered.get(field_name) or ())
        taken = {item.get(k) for item in items for k in keys}
        items += [
            item
            for item in placeholder.get(field_name) or ()
            if not any(item.get(k) in taken for k in keys if k in item)
        ]
        if items:
            out[field_name] = items
    return out


def _injected(pod: Mapping[str, Any], gateway: bool = False) -> bool:
    meta = pod.get("metadata") or {}
    if STATUS_ANNOTATION in (meta.get("annotations") or {}):
        return True
    if gateway:  # its pilotfish-proxy container is the one to fill in
        return False
    spec = pod.get("spec") or {}
    names = {c.get("name") for key in ("containers", "initContainers") for c in spec.get(key) or ()}
    return PROXY_NAME in names or INIT_NAME in names


def _checked(rendered: Any) -> dict[str, Any]:
    if not isinstance(rendered, dict) or set(rendered) - set(_SECTIONS):
        raise TemplateError(f"the template must produce a mapping with keys {', '.join(_SECTIONS)}")
    out: dict[str, Any] = {key: rendered.get(key) or [] for key in _SECTIONS[:3]}
    for key in _SECTIONS[:3]:
        items = out[key]
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) for i in items
        ):
            raise TemplateError(f"{key} must be a list of objects, each with a name")
    annotations = rendered.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise TemplateError("annotations must map strings to strings")
    out["annotations"] = annotations
    return out
