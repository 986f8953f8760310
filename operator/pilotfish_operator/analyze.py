"""`pilotfish analyze`: what the control plane would say about some manifests, before
they are applied — each invalid object with its field paths, and the warnings of
translating them all together (routes no request reaches, conflicting hosts and
servers, unknown hosts, Gateway problems), as `istioctl analyze -f` does.

Offline: only the objects given are known, so include the Services, Pods and the mesh
config the manifests rely on (or a local-mode config directory) for host checks.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .sources.files import FileError, load_store
from .translate import Options, translate


def analyze(paths: list[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings), each a line naming its object."""
    store = load_store(paths)
    errors = [str(e) for _, e in sorted(store.errors().items())]
    result = translate(store, Options(local=False))
    errors += [f"{e} (translation failed: a bug)" for _, e in sorted(result.failures.items())]
    return errors, list(dict.fromkeys(result.warnings))


def cmd_analyze(args: argparse.Namespace) -> int:
    # The findings are the output: not logged a second time on stderr.
    logger = logging.getLogger("pilotfish_operator")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        errors, warnings = analyze(args.paths)
    except FileError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    finally:
        logger.setLevel(level)
    for line in errors:
        print(f"Error: {line}")
    for line in warnings:
        print(f"Warning: {line}")
    if not errors and not warnings:
        print("No problems found.")
    return 1 if errors or (warnings and args.fail_on_warnings) else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze", help="validate manifests and report what translating them would warn about"
    )
    p.add_argument("paths", nargs="+", help="YAML/JSON files or directories; - for stdin")
    p.add_argument(
        "--fail-on-warnings", action="store_true", help="exit 1 on warnings too (CI gates)"
    )
    p.set_defaults(func=cmd_analyze)
