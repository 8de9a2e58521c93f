"""Open a report page in Debian's headless Chromium: the rendered DOM, console errors and a
screenshot, as a person opening the file would see it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


@dataclass
class Rendered:
    dom: str
    console: str  # Chromium's log: console messages appear as ":CONSOLE" lines
    pixels: np.ndarray


def render(html_text: str, workdir: Path, height: int = 1800) -> Rendered:
    assert shutil.which("chromium"), "needs Debian's chromium (scripts/test.sh installs it)"
    page = workdir / "page.html"
    page.write_text(html_text, encoding="utf-8")
    flags = [*FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}"]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = workdir / "shot.png"
    run = subprocess.run(
        ["chromium", *flags, f"--window-size=1280,{height}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    return Rendered(dom.stdout, dom.stderr + run.stderr, matplotlib.image.imread(shot))
