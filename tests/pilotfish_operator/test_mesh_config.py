"""The mesh config ConfigMap's checks: bad input named by field path, refused whole."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pilotfish_operator.api import ConfigError, parse


def configmap(mesh: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pilotfish-mesh", "namespace": "pilotfish-system"},
        "data": {"mesh": yaml.safe_dump(mesh)},
    }


@pytest.mark.parametrize(
    ("mesh", "message"),
    [
        (
            {"accessLogEncoding": "JSON", "accessLogFormat": "[%START_TIME%]"},
            "data.mesh.accessLogFormat: with JSON encoding, a JSON object of strings",
        ),
        ({"accessLogEncoding": "XML"}, "data.mesh.accessLogEncoding"),
        (
            {
                "extensionProviders": [
                    {"name": "a", "envoyExtAuthzHttp": {"service": "s", "port": 1}}
                ]
                * 2
            },
            "data.mesh.extensionProviders[1]: provider name 'a' is used twice",
        ),
        (
            {
                "extensionProviders": [
                    {
                        "name": "a",
                        "envoyExtAuthzHttp": {"service": "s", "port": 1, "statusOnError": "abc"},
                    }
                ]
            },
            "data.mesh.extensionProviders[0].envoyExtAuthzHttp",
        ),
    ],
)
def test_bad_mesh_config_is_refused_with_its_field(mesh: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(configmap(mesh))
    assert "ConfigMap pilotfish-system/pilotfish-mesh" in str(refused.value)
    assert message in str(refused.value)


def test_other_configmaps_and_unknown_fields_pass() -> None:
    parse(configmap({"defaultConfig": {"holdApplicationUntilProxyStarts": True}}))
    other = configmap({"accessLogEncoding": "XML"})
    other["metadata"]["name"] = "something-else"
    parse(other)  # not the mesh config: its data is the user's business
