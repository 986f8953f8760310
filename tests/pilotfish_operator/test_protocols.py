"""Protocol selection as Istio: appProtocol first, else the port name's prefix."""

from __future__ import annotations

import pytest

from pilotfish_operator.translate.protocols import protocol_of


@pytest.mark.parametrize(
    ("name", "app_protocol", "expected"),
    [
        ("grpc", None, "grpc"),
        ("grpc-web-ui", None, "grpc-web"),
        ("http2-api", None, "http2"),
        ("tcp-db", None, "tcp"),
        ("api", "grpc", "grpc"),
        ("http", "kubernetes.io/h2c", "http2"),
        ("grpc", "HTTP", "http"),  # appProtocol wins
        ("metrics", None, "http"),  # unknown: treated as HTTP/1.1
        (None, None, "http"),
        ("web", "something-else", "http"),
    ],
)
def test_protocol_of(name: str | None, app_protocol: str | None, expected: str) -> None:
    assert protocol_of(name, app_protocol) == expected
