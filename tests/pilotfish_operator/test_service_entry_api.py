"""ServiceEntry and WorkloadEntry validation: our own cases, and Istio's CRD validation
cases when a checkout of them is next to this repository (never required)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish_operator.api import ConfigError, ServiceEntry, WorkloadEntry, parse

CASES: list[dict[str, Any]] = list(
    yaml.safe_load_all((Path(__file__).parent / "testdata/api/service_entries.yaml").read_text())
)
ISTIO_CRDS = (
    Path(
        os.environ.get("ISTIO_TESTDATA", Path(__file__).parents[3] / "shared/istio-testdata/istio")
    )
    / "pkg/config/validation/testdata/crds"
)


def _id(case: dict[str, Any]) -> str:
    return f"{case['kind']}-{case['metadata']['name']}-{'bad' if 'expect' in case else 'ok'}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_own_cases(case: dict[str, Any]) -> None:
    case = dict(case)
    expect = case.pop("expect", None)
    if expect is None:
        assert isinstance(parse(case), ServiceEntry | WorkloadEntry)
        return
    with pytest.raises(ConfigError) as info:
        parse(case)
    assert str(info.value) == expect


def _istio_cases() -> list[tuple[str, dict[str, Any], str | None]]:
    out = []
    for name in ("serviceentry", "workloadentry"):
        for validity in ("valid", "invalid"):
            path = ISTIO_CRDS / f"{name}-{validity}.yaml"
            if not path.exists():
                continue
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    err = doc.pop("_err", None)
                    out.append((f"{path.name}:{doc['metadata']['name']}", doc, err))
    return out


def test_istio_crd_validation_cases_when_present() -> None:
    """Every object Istio's CRD tests accept parses; every one they reject is refused.
    Runs over whatever of those files exists (none in CI: nothing is asserted then)."""
    wrong = []
    for where, doc, err in _istio_cases():
        for address in doc.get("spec", {}).get("addresses", ()) or ():
            if isinstance(address, dict):
                # PyYAML reads a flow-list `001:db8::` as a one-key mapping; Go's YAML
                # reads the string. Not what this test is about: restore the string.
                doc["spec"]["addresses"] = [
                    f"{next(iter(a))}:" if isinstance(a, dict) else a
                    for a in doc["spec"]["addresses"]
                ]
        try:
            parse(doc)
            ok = True
        except ConfigError:
            ok = False
        if ok != (err is None):
            wrong.append(
                f"{where}: Istio says {err or 'valid'}, we say {'valid' if ok else 'invalid'}"
            )
    assert wrong == []


def test_istio_egress_samples_translate_when_present() -> None:
    """Istio's egress samples (samples/external, bookinfo's googleapis TLS origination)
    apply unchanged: they parse, and translate for both layouts without warnings."""
    from pilotfish_operator.store import Store
    from pilotfish_operator.translate import Options, translate
    from pilotfish_xds.codec import EncodeCache
    from pilotfish_xds.translate import translate as to_envoy

    samples = ISTIO_CRDS.parents[3] / "samples"
    files = sorted((samples / "external").glob("*.yaml"))
    files += [samples / "bookinfo/networking/egress-rule-google-apis.yaml"]
    for local in (True, False):
        store = Store()
        store.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "default", "labels": {"mesh-injection": "enabled"}},
            }
        )
        store.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "client", "namespace": "default"},
                "status": {"podIP": "127.0.0.5"},
            }
        )
        for path in (f for f in files if f.exists()):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    store.apply(doc)
        assert store.errors() == {}
        result = translate(store, Options(local=local))
        assert (result.warnings, result.failures) == ([], {})
        snapshot = to_envoy(result.mesh, result.mesh.proxies[0], EncodeCache(), None)
        assert snapshot.consistent(), snapshot.missing()
