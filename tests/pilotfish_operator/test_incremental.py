"""Incremental translation equals translating from scratch, whatever the order of
edits: every golden input's objects are added, edited, deleted and re-added in random
order (seeded, so a failure replays), and after each step the long-lived Translator's
mesh is compared with a fresh one's. A kind added without declaring what reads it
breaks this test before it breaks a user."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish_operator.api import KINDS
from pilotfish_operator.store import Store, raw_key
from pilotfish_operator.translate import NOT_READ, PASSES, Options, Translator, translate

CASES = Path(__file__).parent / "testdata" / "translate"
STEPS = 80


def _objects(case: str) -> list[dict[str, Any]]:
    return [o for o in yaml.safe_load_all((CASES / f"{case}.in.yaml").read_text()) if o]


def _edited(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A plausible edit: labels change (selection, subsets, injection), and for our
    kinds the spec is swapped with another object's of the same kind."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    labels = dict(meta.get("labels") or {})
    if labels and rng.random() < 0.5:
        labels.pop(rng.choice(sorted(labels)))
    else:
        labels[rng.choice(["version", "app", "mesh-injection", "track"])] = rng.choice(
            ["v1", "v2", "enabled", "stable"]
        )
    meta["labels"] = labels
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "case", sorted(p.name.removesuffix(".in.yaml") for p in CASES.glob("*.in.yaml"))
)
def test_incremental_equals_from_scratch(case: str, seed: int) -> None:
    rng = random.Random(f"{case}-{seed}")
    objects = _objects(case)
    options = Options(local=rng.random() < 0.5)
    store, translator = Store(), Translator(options)
    pending = list(objects)
    rng.shuffle(pending)
    applied: dict[Any, dict[str, Any]] = {}
    for step in range(STEPS):
        roll = rng.random()
        if pending and (roll < 0.5 or not applied):
            obj = pending.pop()
            action = f"apply {raw_key(obj)}"
            applied[raw_key(obj)] = obj
            store.apply(obj)
        elif roll < 0.75 and applied:
            key = rng.choice(sorted(applied))
            obj = _edited(applied[key], rng)
            action = f"edit {key}"
            applied[key] = obj
            store.apply(obj)
        elif applied:
            key = rng.choice(sorted(applied))
            action = f"delete {key}"
            pending.append(applied.pop(key))
            store.delete(key)
        else:
            continue
        incremental = translator.translate(store)
        scratch = translate(store, options)
        assert incremental.mesh == scratch.mesh, f"step {step}: {action}"
        assert incremental.warnings == scratch.warnings, f"step {step}: {action}"


def test_every_kind_is_read_by_a_declared_pass() -> None:
    """A new kind must say which translation pass reads it (or that none does)."""
    declared = set().union(*(p.reads for p in PASSES)) | set(NOT_READ)
    assert set(KINDS) == declared, set(KINDS) ^ declared
