"""Steps the browser tests share: filling the configuration form, waiting for a run."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect


def make_source(root: Path, megabytes: int = 0) -> Path:
    """Given a folder, fill it with two small files and ``megabytes`` of random data.

    The data comes as 100 KiB files (ten per MiB), so the engine, which reports progress
    file by file, moves the bar steadily once the bandwidth limit holds it back.
    """
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "readme.txt").write_text("hello from the browser tests\n" * 50)
    (root / "notes.md").write_text("# notes\n")
    (root / "data").mkdir(exist_ok=True)
    for i in range(megabytes * 10):
        (root / "data" / f"blob-{i:04d}.bin").write_bytes(os.urandom(1024 * 1024 // 10))
    return root


def fill_config(
    page: Page,
    *,
    name: str,
    source: str,
    destination: Path,
    bandwidth: str = "",
    compression: bool = True,
) -> None:
    """On the configuration form, fill in a local-folder backup."""
    page.get_by_label("Name", exact=True).fill(name)
    page.locator("#sources-0-path").fill(source)
    page.get_by_label("A folder on this server").check()
    page.get_by_label("Folder", exact=True).fill(str(destination))
    page.get_by_label("Cron expression").fill("0 3 * * *")
    page.get_by_label("Timezone").fill("UTC")
    page.get_by_label("Compress", exact=True).set_checked(compression)
    page.get_by_label("Bandwidth limit (KB/s)").fill(bandwidth)


def save_config(page: Page) -> str:
    """Submit the configuration form; return the new configuration's id from its page."""
    page.get_by_role("button", name=re.compile("Create backup|Save changes")).click()
    page.wait_for_url(re.compile(r"/backups/[0-9a-f-]{36}$"))
    expect(page.locator(".flash")).to_contain_text("Saved")
    return page.url.rsplit("/", 1)[1]


def config_card(page: Page, name: str) -> Locator:
    """Return the dashboard card of a configuration."""
    return page.locator(".config-card").filter(has=page.get_by_role("link", name=name, exact=True))
