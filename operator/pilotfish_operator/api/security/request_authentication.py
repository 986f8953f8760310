"""RequestAuthentication (security.istio.io): which JWTs a workload accepts.

A request with a token that fails validation is refused (401); a request without one
passes, unless an AuthorizationPolicy asks for `requestPrincipals`. Checked as Istio
checks it: an issuer, at most one of `jwks` and `jwksUri`, inline keys that parse as
a JWK set, an http(s) URI.
"""

from __future__ import annotations

import json
from typing import Annotated, ClassVar, Self
from urllib.parse import urlsplit

from annotated_types import Len
from pydantic import AfterValidator, Strict, StringConstraints, model_validator

from ..errors import invalid
from ..meta import Bool, Duration, IstioModel, IstioResource, Str
from ..networking.common import NonEmptyStr, WorkloadSelector
from .authorization_policy import PolicyTargetReference
from .peer_authentication import SECURITY_VERSIONS


def _jwks(value: str) -> str:
    try:
        keys = json.loads(value)["keys"]
    except (ValueError, KeyError, TypeError):
        raise ValueError('not a JWK set (JSON with "keys")') from None
    if not isinstance(keys, list) or not keys:
        raise ValueError("a JWK set needs at least one key")
    return value


def _uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URI")
    return value


class JWTHeader(IstioModel):
    name: NonEmptyStr
    prefix: Str = ""


class ClaimToHeader(IstioModel):
    header: Annotated[str, Strict(), StringConstraints(pattern=r"^[-_A-Za-z0-9]+$")]
    claim: NonEmptyStr


class JWTRule(IstioModel):
    issuer: NonEmptyStr
    audiences: tuple[NonEmptyStr, ...] = ()
    jwks_uri: Annotated[str, AfterValidator(_uri)] | None = None
    jwks: Annotated[str, AfterValidator(_jwks)] | None = None
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[NonEmptyStr, ...] = ()
    from_cookies: tuple[NonEmptyStr, ...] = ()
    output_payload_to_header: Str | None = None
    forward_original_token: Bool = False
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: Duration | None = None
    # Claims split on spaces into lists, for AuthorizationPolicy's claim conditions.
    space_delimited_claims: Annotated[tuple[NonEmptyStr, ...], Len(0, 64)] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.jwks is not None and self.jwks_uri is not None:
            raise invalid("set one of jwks and jwksUri", "jwksUri")
        return self


class RequestAuthenticationSpec(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.selector is not None and (self.target_ref is not None or self.target_refs):
            raise invalid("selector and targetRefs cannot be combined", "targetRefs")
        if self.target_ref is not None and self.target_refs:
            raise invalid("only one of targetRef and targetRefs", "targetRefs")
        return self


class RequestAuthentication(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = SECURITY_VERSIONS
    KIND: ClassVar[str] = "RequestAuthentication"

    spec: RequestAuthenticationSpec = RequestAuthenticationSpec()
