"""AuthorizationPolicy through real Envoy and real mTLS: Istio's examples as a table of
(policies, caller, request) → the status the caller observes."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

WEB = {"matchLabels": {"app": "web"}}
FRONTEND = "cluster.local/ns/shop/sa/frontend"


def _policy(name: str, spec: dict[str, Any], ns: str = "shop") -> dict[str, Any]:
    obj = istio("AuthorizationPolicy", name, ns, spec)
    obj["apiVersion"] = "security.istio.io/v1"
    return obj


# (name, policies, [(caller, method, path, headers, expected status)])
CASES: list[tuple[str, list[dict[str, Any]], list[tuple[str, str, str, dict[str, str], int]]]] = [
    (
        "no policy: everyone",
        [],
        [("frontend", "GET", "/", {}, 200), ("legacy", "GET", "/", {}, 200)],
    ),
    (
        "deny all (spec: {})",
        [_policy("deny-all", {"selector": WEB})],
        [("frontend", "GET", "/", {}, 403), ("other", "GET", "/", {}, 403)],
    ),
    (
        "allow by service account",
        [
            _policy(
                "sa",
                {"selector": WEB, "rules": [{"from": [{"source": {"principals": [FRONTEND]}}]}]},
            )
        ],
        [
            ("frontend", "GET", "/", {}, 200),
            ("other", "GET", "/", {}, 403),
            ("legacy", "GET", "/", {}, 403),  # plaintext: no identity to match
        ],
    ),
    (
        # A bare name is in the policy's namespace; any trust domain.
        "allow by serviceAccounts",
        [
            _policy(
                "accounts",
                {
                    "selector": WEB,
                    "rules": [{"from": [{"source": {"serviceAccounts": ["frontend"]}}]}],
                },
            )
        ],
        [("frontend", "GET", "/", {}, 200), ("other", "GET", "/", {}, 403)],
    ),
    (
        # No filter on this port sets that metadata: the ALLOW rule matches nobody (and
        # Envoy took the config: the previous case's policy let frontend in).
        "a filter's metadata (experimental.envoy.filters.*)",
        [
            _policy(
                "mysql",
                {
                    "selector": WEB,
                    "rules": [
                        {
                            "when": [
                                {
                                    "key": "experimental.envoy.filters.network.mysql_proxy[a.b]",
                                    "values": ["[insert]"],
                                }
                            ]
                        }
                    ],
                },
            )
        ],
        [("frontend", "GET", "/", {}, 403)],
    ),
    (
        "trust domains: exact, suffix, and the source.trustDomain condition",
        [
            _policy(
                "domains",
                {
                    "selector": WEB,
                    "rules": [
                        {"from": [{"source": {"trustDomains": ["cluster.local"]}}]},
                        {"from": [{"source": {"trustDomains": ["*.partner.example"]}}]},
                    ],
                },
            ),
            _policy(
                "not-other",
                {
                    "selector": WEB,
                    "action": "DENY",
                    "rules": [
                        {
                            "from": [{"source": {"namespaces": ["other"]}}],
                            "when": [{"key": "source.trustDomain", "values": ["*.local"]}],
                        }
                    ],
                },
            ),
        ],
        [
            ("frontend", "GET", "/", {}, 200),
            ("other", "GET", "/", {}, 403),  # denied: its trust domain ends in .local
            ("legacy", "GET", "/", {}, 403),  # plaintext: no trust domain
        ],
    ),
    (
        "allow by namespace",
        [
            _policy(
                "ns",
                {"selector": WEB, "rules": [{"from": [{"source": {"namespaces": ["other"]}}]}]},
            )
        ],
        [("other", "GET", "/", {}, 200), ("frontend", "GET", "/", {}, 403)],
    ),
    (
        "allow by path and method",
        [
            _policy(
                "read-public",
                {
                    "selector": WEB,
                    "rules": [
                        {"to": [{"operation": {"methods": ["GET"], "paths": ["/public/*"]}}]}
                    ],
                },
            )
        ],
        [
            ("frontend", "GET", "/public/a", {}, 200),
            ("frontend", "POST", "/public/a", {}, 403),
            ("frontend", "GET", "/private", {}, 403),
        ],
    ),
    (
        "DENY wins over ALLOW",
        [
            _policy("allow-all", {"selector": WEB, "rules": [{}]}),
            _policy(
                "no-admin",
                {
                    "selector": WEB,
                    "action": "DENY",
                    "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}],
                },
            ),
        ],
        [("frontend", "GET", "/", {}, 200), ("frontend", "GET", "/admin/x", {}, 403)],
    ),
    (
        "when: a request header, notPrincipals",
        [
            _policy(
                "token",
                {
                    "selector": WEB,
                    "rules": [
                        {
                            "from": [
                                {"source": {"notPrincipals": ["cluster.local/ns/other/sa/*"]}}
                            ],
                            "when": [{"key": "request.headers[x-token]", "values": ["s3cret"]}],
                        }
                    ],
                },
            )
        ],
        [
            ("frontend", "GET", "/", {"x-token": "s3cret"}, 200),
            ("frontend", "GET", "/", {}, 403),
            ("other", "GET", "/", {"x-token": "s3cret"}, 403),
        ],
    ),
    (
        # Without a verified token there are no claims: nobody is allowed (the JWT
        # filter that supplies them arrives with RequestAuthentication).
        "allow by JWT claim, no token",
        [
            _policy(
                "claims",
                {
                    "selector": WEB,
                    "rules": [
                        {
                            "from": [{"source": {"requestPrincipals": ["https://issuer/*"]}}],
                            "when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}],
                        }
                    ],
                },
            )
        ],
        [("frontend", "GET", "/", {}, 403)],
    ),
    (
        "path templates and a mesh-wide AUDIT",
        [
            _policy(
                "profiles",
                {
                    "selector": WEB,
                    "rules": [{"to": [{"operation": {"paths": ["/users/{*}/profile"]}}]}],
                },
            ),
            _policy("audit", {"action": "AUDIT", "rules": [{}]}, ns="pilotfish-system"),
        ],
        [
            ("frontend", "GET", "/users/7/profile", {}, 200),
            ("frontend", "GET", "/users/7/8/profile", {}, 403),
        ],
    ),
]


async def test_istio_authorization_examples(harness: Harness) -> None:
    ips = {n: harness.ip(i) for i, n in enumerate(("web", "frontend", "other", "legacy"), 50)}
    harness.backend("web-1", ips["web"], 8080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("other"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("web-1", "shop", ips["web"], {"app": "web"}, (8080,), service_account="web"),
        pod("frontend", "shop", ips["frontend"], {"app": "frontend"}, service_account="frontend"),
        pod("other", "other", ips["other"], {"app": "other"}, service_account="other"),
    )
    await harness.start()
    failures = []
    for name, policies, expectations in CASES:
        await harness.apply("policies.yaml", *policies)
        for caller, method, path, headers, expected in expectations:
            if caller == "legacy":  # no sidecar: straight to the pod's inbound port
                r = await harness.direct(
                    f"{ips['web']}:15006", path, {"host": "web.shop", **headers}
                )
            else:
                r = await harness.get(ips[caller], f"http://web.shop{path}", headers, method)
            if r.status != expected or (expected == 200) != (r.served_by == "web-1"):
                failures.append(
                    f"{name}: {caller} {method} {path} {headers} → {r.status}, want {expected}"
                )
    assert not failures, "\n".join(failures)
