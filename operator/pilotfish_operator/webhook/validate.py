"""The validating webhook: the pipeline's own validation, at `kubectl apply` time.

Only the Istio-API kinds are judged: those are what the webhook configuration routes here, and
a Kubernetes object we model partially must never be refused because of our model.
"""

from __future__ import annotations

from ..api import ConfigError, IstioResource, model_for, parse
from .admission import AdmissionRequest, Response


def validate(request: AdmissionRequest) -> Response:
    obj = request.object
    if request.operation not in ("CREATE", "UPDATE") or obj is None:
        return Response()  # DELETE and CONNECT carry nothing to judge
    gvk = request.kind
    model = model_for(f"{gvk.group}/{gvk.version}" if gvk.group else gvk.version, gvk.kind)
    if model is None or not issubclass(model, IstioResource):
        return Response()  # not ours to judge
    # The object may lack its namespace (kubectl apply without -n): name it as the API will.
    if request.namespace and not (obj.get("metadata") or {}).get("namespace"):
        obj = {**obj, "metadata": {**(obj.get("metadata") or {}), "namespace": request.namespace}}
    try:
        parse(obj)
    except ConfigError as exc:
        return Response.deny(str(exc), 422)
    return Response()
