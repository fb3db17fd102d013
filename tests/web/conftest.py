"""Fixtures of the browser tests: a real `backapp serve`, Debian's Chromium, screenshots."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 812}


@dataclass
class Server:
    """A `backapp serve` subprocess (web, API, scheduler and worker) on a free port."""

    url: str
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run a `backapp` command against the same database."""
        return subprocess.run(
            [sys.executable, "-m", "backapp", *args],
            input=stdin,
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(workdir: Path, database_url: str) -> Server:
    """Given a folder and a database URL, start `backapp serve` and wait until it answers."""
    for _ in range(3):
        try:
            return _start_server(workdir, database_url, free_port())
        except PortTakenError:
            continue  # another process took the free port first: pick another
    raise RuntimeError("could not find a free port for backapp serve")


class PortTakenError(RuntimeError):
    """The server could not listen on its port."""


def _start_server(workdir: Path, database_url: str, port: int) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BACKAPP_", "AWS_"))},
        "DATABASE_URL": database_url,
        "BACKAPP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BACKAPP_DATA_DIR": str(workdir / "data"),
        "BACKAPP_TICK_INTERVAL": "0.2",
        "BACKAPP_SHUTDOWN_GRACE": "0",
        "BACKUP_ENCRYPTION_KEY": base64.b64encode(b"k" * 32).decode(),
    }
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "backapp", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,  # away from the repository's .env
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", env, workdir, process, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            if "address already in use" in server.output():
                raise PortTakenError(server.output())
            raise RuntimeError(f"backapp serve exited early:\n{server.output()}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2):
                return server
        except (OSError, urllib.error.HTTPError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"backapp serve did not answer:\n{server.output()}") from None
            time.sleep(0.1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh BackApp on a SQLite database in tmp_path."""
    started = start_server(tmp_path / "server", f"sqlite:///{tmp_path}/server/backapp.db")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/system-deps.sh test`")
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@dataclass
class Console:
    """The console errors and uncaught exceptions of the pages of one test."""

    errors: list[str] = field(default_factory=list)

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def open_page(chromium: Browser, console: Console) -> Iterator[Callable[[Server], Page]]:
    """Return a factory of pages (each its own browser context) on a server.

    Every page's console must stay free of errors: checked when the test ends.
    """
    contexts = []

    def make(server: Server) -> Page:
        context = chromium.new_context(base_url=server.url, viewport=DESKTOP)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", console.on_message)
        page.on("pageerror", console.on_page_error)
        return page

    yield make
    for context in contexts:
        context.close()
    assert console.errors == [], "console errors:\n" + "\n".join(console.errors)


def shoot(page: Page, name: str) -> None:
    """Save screenshots of the page at desktop and phone widths under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("375px", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=ARTIFACTS / f"{name}-{label}.png", full_page=True)
        if size is PHONE:
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways at 375 px ({overflow} px too wide)"
    page.set_viewport_size(DESKTOP)


def log_in(page: Page, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """Log in through the form and land on the dashboard."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/backups$"))


def csrf_of(page: Page) -> str:
    """Return the CSRF token of the page's session (the log-out form carries it)."""
    return str(page.locator("form.nav-user input[name=csrf_token]").input_value())
