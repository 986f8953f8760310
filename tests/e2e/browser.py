"""Debian's Chromium, headless, for the dashboard's tests: the DOM after the page's
script ran, and screenshots kept as test artefacts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Virtual time runs the page's timers fast; the fetches they start are real.
SCRIPT_MS = 4000


def artifacts() -> Path:
    """Where screenshots go: $PILOTFISH_ARTIFACTS, else test-artifacts/ (gitignored)."""
    path = Path(os.environ.get("PILOTFISH_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium(*args: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: run `make system-deps` (Debian's package)")
    with tempfile.TemporaryDirectory(prefix="pilotfish-chromium-") as profile:
        out = subprocess.run(
            [
                binary,
                "--headless=new",
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={SCRIPT_MS}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    return out.stdout


def dom(url: str) -> str:
    return chromium("--dump-dom", url)


def screenshot(url: str, name: str, size: tuple[int, int] = (1400, 800)) -> Path:
    path = artifacts() / name
    path.unlink(missing_ok=True)
    chromium(f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", url)
    assert path.stat().st_size > 10_000, f"{path}: an empty screenshot?"
    return path


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def find(self, attr: str) -> list[Element]:
        """Every element below (or this one) carrying `attr`."""
        found = [self] if attr in self.attrs else []
        for child in self.children:
            found += child.find(attr)
        return found

    def texts(self) -> str:
        return self.text + "".join(c.texts() for c in self.children)


class _Tree(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(html: str) -> Element:
    tree = _Tree()
    tree.feed(html)
    return tree.root
