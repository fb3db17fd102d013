"""An admin creates a backup through the form, tests its destination, runs it and reads its log."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.conftest import Server, log_in, shoot
from tests.web.pages import config_card, fill_config, make_source, save_config


def test_admin_creates_a_backup_tests_it_runs_it_and_finds_it_in_the_logs(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    source = make_source(tmp_path / "photos", megabytes=16)
    destination = tmp_path / "backups"

    response = page.goto("/backups")
    assert response is not None
    expect(page).to_have_url(re.compile(r"/login\?next=/backups$"))
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    shoot(page, "login")
    log_in(page)
    expect(page.get_by_text("No backups configured yet.")).to_be_visible()
    shoot(page, "dashboard-empty")

    # A relative source path is refused next to its field; everything typed stays.
    page.get_by_role("link", name="New backup").click()
    fill_config(page, name="Photos", source="photos", destination=destination, bandwidth="2048")
    page.get_by_label("Exclude patterns (optional)").fill("*.tmp\ncache/")
    page.get_by_role("button", name="Create backup").click()
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("#sources-0-path-error")).to_contain_text("must be an absolute path")
    expect(page.locator("#sources-0-path")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#sources-0-path")).to_have_value("photos")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Photos")
    expect(page.get_by_label("Exclude patterns (optional)")).to_have_value("*.tmp\ncache/")
    expect(page.get_by_label("Bandwidth limit (KB/s)")).to_have_value("2048")
    expect(page.get_by_label("Folder", exact=True)).to_have_value(str(destination))
    shoot(page, "config-form-errors")

    # The schedule preview follows what is typed, in the schedule's timezone.
    page.get_by_label("Cron expression").fill("30 3 * * 1")
    page.get_by_label("Timezone").fill("Europe/Paris")
    preview = page.get_by_test_id("schedule-preview")
    expect(preview.locator("li")).to_have_count(5)
    expect(preview.locator("time[data-tz='Europe/Paris']").first).to_contain_text("03:30")
    page.get_by_label("Cron expression").fill("not a cron")
    expect(page.get_by_test_id("schedule-preview-error")).to_contain_text("cron expression")
    page.get_by_label("Cron expression").fill("0 3 * * *")
    expect(preview.locator("li")).to_have_count(5)

    # Test connection checks the folder typed in the form.
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_test_id("destination-test")).to_contain_text("Connected")
    expect(page.get_by_test_id("destination-test")).to_contain_text(str(destination))

    page.locator("#sources-0-path").fill(str(source))
    config_id = save_config(page)
    expect(page.get_by_role("heading", name="Photos")).to_be_visible()
    expect(page.locator("#stored-backups")).to_contain_text("No backups stored yet.")
    shoot(page, "config-detail-new")

    # Run it now from the dashboard and watch the progress bar there, then on the run's page.
    page.get_by_role("link", name="Backups", exact=True).click()
    card = config_card(page, "Photos")
    expect(card.locator(".config-status")).to_contain_text("never run")
    card.get_by_role("button", name=re.compile("Run now")).click()
    expect(page.locator(".flash")).to_contain_text("queued")
    progress = card.locator(".progress")
    bar = progress.locator("progress")
    expect(progress.locator("[data-field=badge]")).to_contain_text("running", timeout=10_000)
    expect(bar).to_have_attribute("value", re.compile(r"^(?!0$)\d"))  # moving, not at 0
    expect(progress.locator("[data-field=bytes]")).to_contain_text("MB")
    box_before = progress.bounding_box()
    shoot(page, "dashboard-running")
    page.wait_for_timeout(1200)
    assert progress.bounding_box() == box_before, "the progress box moved while updating"

    progress.get_by_role("link", name="Run details").click()
    expect(page).to_have_url(re.compile(r"/backups/logs/[0-9a-f-]{36}$"))
    run_url = page.url
    run_progress = page.locator(".progress")
    expect(run_progress.locator("[data-field=badge]")).to_contain_text("running")
    expect(run_progress.get_by_role("button", name=re.compile("Cancel"))).to_be_enabled()
    shoot(page, "run-running")
    expect(run_progress.locator("[data-field=badge]")).to_contain_text("completed", timeout=30_000)
    expect(run_progress.locator("progress")).to_have_attribute("value", "100")
    expect(run_progress.get_by_role("button", name=re.compile("Cancel"))).to_be_disabled()
    summary = page.locator("#run-summary")
    expect(summary.get_by_test_id("run-status")).to_contain_text("completed", timeout=10_000)
    expect(summary.locator(".facts div", has_text="Files processed")).to_contain_text("162")
    expect(summary).to_contain_text("16.0 MB")
    shoot(page, "run-completed")

    # The logs list it, filtered by configuration and status; its details are one click away.
    page.get_by_role("link", name="Logs", exact=True).click()
    page.get_by_label("Configuration").select_option(label="Photos")
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(rf"config={config_id}&status=completed"))
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("completed")
    expect(rows.first).to_contain_text("16.0 MB")
    shoot(page, "logs")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No runs match.")).to_be_visible()
    page.goto(run_url)
    expect(page.get_by_test_id("run-status")).to_contain_text("completed")

    # The dashboard and the configuration's page show the result.
    page.get_by_role("link", name="Backups", exact=True).click()
    expect(config_card(page, "Photos").locator(".config-status")).to_contain_text("completed")
    expect(page.locator(".stats")).to_contain_text("100.0%")
    shoot(page, "dashboard")
    page.goto(f"/backups/{config_id}")
    expect(page.locator("#stored-backups table tbody tr")).to_have_count(1)
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    shoot(page, "config-detail")
