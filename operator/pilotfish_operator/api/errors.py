"""Validation errors that name the object, the field (as the user spelled it) and the reason."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

# Error type used by our own validators; ``ctx["at"]`` extends the location so a check
# written on a parent message can still point at the offending child field.
_OWN = "pilotfish"


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ConfigError(Exception):
    """An object that failed validation; it is left out and everything else keeps flowing."""

    def __init__(self, kind: str, namespace: str, name: str, problems: Iterable[Problem]) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(str(self))

    @property
    def subject(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def __str__(self) -> str:
        return "\n".join(f"{self.subject}: {p}" for p in self.problems)


def invalid(reason: str, *at: str | int) -> PydanticCustomError:
    """An error for a model validator; ``at`` is the path below the model being validated."""
    return PydanticCustomError(_OWN, "{reason}", {"reason": reason, "at": at})


def format_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _show(value: Any) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):  # pragma: no cover - defensive, inputs come from YAML/JSON
        return repr(value)


_TYPE_NAMES = {
    "int": "an integer",
    "string": "a string",
    "bool": "a boolean",
    "float": "a number",
    "list": "a list",
    "tuple": "a list",
    "dict": "an object",
    "model": "an object",
    "model_attributes": "an object",
}


def _reason(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    got = f" (got {_show(err['input'])})"
    if kind == _OWN:
        return str(ctx["reason"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind.endswith(("_type", "_parsing")):
        base = kind.rsplit("_", 1)[0]
        if base in _TYPE_NAMES:
            return f"must be {_TYPE_NAMES[base]}{got}"
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        bound = ctx[key]
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)  # "<= 100", not "<= 100.0", for percentages
        return f"must be {op} {bound}{got}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}{got}"
    if kind == "value_error":
        # Plain ValueErrors from BeforeValidators (e.g. durations) carry their own reason.
        return f"{ctx['error']}{got}" if "error" in ctx else err["msg"]
    if kind == "string_too_short":
        return "must not be empty"
    return f"{err['msg']}{got}"


def problems_from(exc: ValidationError, prefix: Sequence[str | int] = ()) -> tuple[Problem, ...]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = [*prefix, *err["loc"]]
        if err["type"] == _OWN:
            loc.extend((err.get("ctx") or {}).get("at", ()))
        problem = Problem(format_path(loc), _reason(err))
        if problem not in out:
            out.append(problem)
    return tuple(out)
