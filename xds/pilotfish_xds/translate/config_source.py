"""The one ADS config source every dynamic reference (RDS, EDS, SDS) points at."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import (
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
)

from .. import wire

_ADS = wire.shared(ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3))


def ads() -> ConfigSource:
    """Messages here are never mutated after construction, so constant parts are built
    once and shared (construction is most of the cost)."""
    return _ADS
