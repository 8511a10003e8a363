"""What the browser tests share: a JupyterLab server for one role, Debian's chromium driven by Playwright.

A plain module like ``helpers.py``. The browser is never downloaded: the tests use the ``chromium`` on PATH
(Debian's package, installed by ``.ci/run``) and skip, saying why, when it or Playwright is missing.
Screenshots go to ``reports/browser/`` in the repository (ignored by git).
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from course import lab
from course.modules import Course

SCREENSHOTS = ROOT / "reports" / "browser"
SERVER_START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port nothing listens on now (the server refuses to start if it is taken meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    """A running JupyterLab server: its address, token and log file."""

    url: str
    token: str
    log: Path

    def page(self, path: str) -> str:
        """The address of ``path`` on this server, logged in with the token."""
        separator = "&" if "?" in path else "?"
        return f"{self.url}{path}{separator}token={self.token}"


@contextmanager
def jupyter_server(course: Course, role: lab.Role, log: Path) -> Iterator[Server]:
    """``course lab`` (learner) or ``course formgrader`` (instructor) on a free port; always stopped afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    command = lab.lab_command(course, role, port=port, open_browser=False, token=token)
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(command.args, env=command.env, cwd=command.cwd, stdout=output, stderr=output)
        try:
            server = Server(f"http://127.0.0.1:{port}", token, log)
            _wait_until_ready(server, process)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(server: Server, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with {process.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.page("/api/status"), timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    log = server.log.read_text()[-3000:]
    raise AssertionError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT:g} s:\n{log}")


def require_browser() -> tuple[Any, str]:
    """Playwright's sync API and Debian's chromium; skips the test, saying which is missing, before any setup."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); browsers are never downloaded")
    return sync_api, executable


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A Playwright page in Debian's chromium (1400x900); skips the test when either is missing."""
    sync_api, executable = require_browser()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save what the page shows now as ``reports/browser/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
