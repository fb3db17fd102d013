"""Cancelling a running backup, editing a configuration, deleting it with confirmation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.conftest import Server, log_in, shoot
from tests.web.pages import fill_config, make_source, save_config


def test_admin_cancels_a_run_edits_the_config_and_deletes_it(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    page.goto("/backups/new")
    source = make_source(tmp_path / "slow", megabytes=8)
    fill_config(page, name="Slow", source=str(source), destination=tmp_path / "d", bandwidth="256")
    config_id = save_config(page)

    # Cancel from the run's page: the bar stops and says so.
    page.get_by_role("button", name="Run now").click()
    progress = page.locator(".progress")
    expect(progress.locator("[data-field=badge]")).to_contain_text("running", timeout=10_000)
    progress.get_by_role("link", name="Run details").click()
    page.locator(".progress").get_by_role("button", name=re.compile("Cancel")).click()
    expect(page.locator(".progress [data-field=badge]")).to_contain_text("cancelled")
    expect(page.get_by_test_id("run-status")).to_contain_text("cancelled", timeout=10_000)
    expect(page.get_by_test_id("run-error")).to_contain_text("cancel")

    # Edit: rows come and go without a round trip; a cleared field is removed from the config.
    page.goto(f"/backups/{config_id}/edit")
    expect(page.get_by_label("Bandwidth limit (KB/s)")).to_have_value("256")
    expect(page.get_by_label("Timezone")).to_have_value("UTC")  # an edit keeps its zone
    page.get_by_role("button", name="+ Add source").click()
    second = page.locator("#sources-1-path")
    expect(second).to_be_focused()
    expect(page.locator("[data-source-row]").nth(1)).to_contain_text("Source 2")
    second.fill(str(tmp_path / "other"))
    rows = page.locator("[data-source-row]")
    rows.nth(1).get_by_role("button", name="Remove this source").click()
    expect(rows).to_have_count(1)
    page.get_by_label("Amazon S3").check()
    expect(page.get_by_label("Bucket")).to_be_visible()
    expect(page.get_by_label("Folder", exact=True)).to_be_hidden()
    page.get_by_label("A folder on this server").check()
    page.get_by_label("Name", exact=True).fill("Slow renamed")
    page.get_by_label("Bandwidth limit (KB/s)").fill("")
    shoot(page, "config-form-edit")
    save_config(page)
    expect(page.get_by_role("heading", name="Slow renamed")).to_be_visible()
    expect(page.locator(".facts div", has_text="Bandwidth")).to_contain_text("unlimited")

    # Delete, after a confirmation; the history stays.
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name=re.compile("Delete “Slow renamed”"))).to_be_visible()
    shoot(page, "confirm-delete")
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page).to_have_url(re.compile(r"/backups$"))
    expect(page.locator(".flash")).to_contain_text("Deleted “Slow renamed”")
    expect(page.get_by_text("No backups configured yet.")).to_be_visible()
    page.goto("/backups/logs")
    expect(page.locator("table.runs tbody tr")).to_contain_text("(deleted)")
