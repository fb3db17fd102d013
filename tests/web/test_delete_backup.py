"""Deleting one stored backup from the config page (admins): a confirmation page, then
the flash says what the prune after it freed and the list no longer shows it; "Prune
now" shows what a prune freed."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from backapp.domain.config import parse_config
from backapp.engine.backup import run_backup
from backapp.storage.local import LocalStorage
from tests.web.conftest import Server, csrf_of, log_in, shoot


def test_an_admin_deletes_a_backup_from_the_config_page_and_prunes(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    source, dest = tmp_path / "source", tmp_path / "dest"
    source.mkdir()
    (source / "kept.txt").write_text("in both backups\n")
    (source / "first-only.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    document = {
        "name": "Pruned",
        "enabled": True,
        "sources": [{"path": str(source)}],
        "destination": {"type": "local", "path": str(dest)},
        "schedule": {"cronExpression": "0 3 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": False},
    }
    created = page.context.request.post(
        "/api/backups/configs", data=document, headers={"X-CSRF-Token": csrf_of(page)}
    )
    assert created.status == 201, created.text()
    config = created.json()
    first = run_backup(parse_config(config), LocalStorage(dest), slug=config["slug"]).backup_id
    (source / "first-only.bin").unlink()
    second = run_backup(parse_config(config), LocalStorage(dest), slug=config["slug"]).backup_id

    page.goto(f"/backups/{config['id']}")
    rows = page.locator("#stored-backups tr[data-backup]")
    expect(rows).to_have_count(2)
    older = page.locator(f'#stored-backups tr[data-backup="{first}"]')
    older.get_by_role("link", name=f"Delete backup {first}").click()
    expect(page.get_by_role("heading", name=f"Delete backup {first}?")).to_be_visible()
    shoot(page, "delete-backup-confirm")
    page.get_by_role("button", name="Yes, delete this backup").click()

    page.wait_for_url(re.compile(rf"/backups/{config['id']}$"))
    flash = page.locator(".flash")
    expect(flash).to_contain_text(f"Deleted backup {first}. Prune: 2.")  # 2.x MB freed
    expect(flash).to_contain_text("MB freed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-backup", second)
    expect(page.locator(f'tr[data-backup="{first}"]')).to_have_count(0)
    shoot(page, "config-backup-deleted")

    page.get_by_role("button", name="Prune now").click()
    expect(page.get_by_role("heading", name="Prune “Pruned”")).to_be_visible()
    expect(page.locator("[data-field=freed]")).to_contain_text("0 B freed")
    expect(page.locator("[data-field=bytes-freed]")).to_have_text("0 B")
    shoot(page, "prune-result")
    page.get_by_role("link", name="Back to “Pruned”").click()
    expect(rows).to_have_count(1)
