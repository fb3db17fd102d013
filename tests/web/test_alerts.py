"""A backup that fails raises an alert; the admin reads why and acknowledges it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.conftest import Server, log_in, shoot
from tests.web.pages import config_card, fill_config, save_config


def test_a_failing_backup_raises_an_alert_that_the_admin_acknowledges(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    expect(page.get_by_test_id("alert-count")).to_have_count(0)
    page.goto("/alerts")
    expect(page.get_by_text("No open alerts.")).to_be_visible()

    page.goto("/backups/new")
    missing = tmp_path / "does-not-exist"
    fill_config(page, name="Broken", source=str(missing), destination=tmp_path / "dest")
    config_id = save_config(page)
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".flash")).to_contain_text("queued")

    # The failure reaches the dashboard, the run's page and the alert count in the navigation.
    page.goto("/backups")
    expect(config_card(page, "Broken").locator(".config-status")).to_contain_text(
        "failed", timeout=15_000
    )
    expect(page.get_by_test_id("alert-count")).to_have_text("1")
    config_card(page, "Broken").get_by_role("link", name=re.compile("Nov|Dec|Jan|20")).click()
    expect(page.get_by_test_id("run-status")).to_contain_text("failed")
    expect(page.get_by_test_id("run-error")).to_contain_text(str(missing))
    shoot(page, "run-failed")

    page.get_by_role("link", name=re.compile(r"^Alerts")).click()
    alert = page.locator(".alert-item")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("'Broken' failed")
    expect(alert).to_contain_text("does not exist")
    expect(alert.get_by_role("link", name="Broken")).to_have_attribute(
        "href", f"/backups/{config_id}"
    )
    shoot(page, "alerts")
    alert.get_by_role("button", name=re.compile("Acknowledge")).click()
    expect(page.locator(".flash")).to_contain_text("Alert acknowledged")
    expect(page.get_by_text("No open alerts.")).to_be_visible()
    expect(page.get_by_test_id("alert-count")).to_have_count(0)

    page.get_by_role("link", name="Show acknowledged and resolved alerts too").click()
    expect(page.locator(".alert-item.acknowledged")).to_contain_text("Acknowledged by admin")
    shoot(page, "alerts-all")


def test_a_later_success_resolves_the_alerts_and_acknowledge_all_closes_the_rest(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    source = tmp_path / "later"
    ids = {}
    for name, folder in (("Later", source), ("Never", tmp_path / "never")):
        page.goto("/backups/new")
        fill_config(page, name=name, source=str(folder), destination=tmp_path / "dest")
        ids[name] = save_config(page)
        page.get_by_role("button", name="Run now").click()
        expect(page.locator(".flash")).to_contain_text("queued")
    page.goto("/backups")
    for name in ids:
        expect(config_card(page, name).locator(".config-status")).to_contain_text(
            "failed", timeout=15_000
        )
    page.goto("/alerts")
    expect(page.locator(".alert-item")).to_have_count(2)

    source.mkdir()
    (source / "a.txt").write_text("a\n")
    page.goto(f"/backups/{ids['Later']}")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".flash")).to_contain_text("queued")
    page.goto("/backups")
    expect(config_card(page, "Later").locator(".config-status")).to_contain_text(
        "completed", timeout=15_000
    )
    page.goto("/alerts")
    expect(page.locator(".alert-item")).to_have_count(1)
    expect(page.locator(".alert-item")).to_contain_text("'Never' failed")
    page.get_by_role("link", name="Show acknowledged and resolved alerts too").click()
    resolved = page.locator(".alert-item.resolved")
    expect(resolved).to_contain_text("'Later' failed")
    expect(resolved.get_by_test_id("alert-resolved")).to_contain_text("Resolved")
    resolved.get_by_role("link", name="a later successful run").click()
    expect(page.get_by_test_id("run-status")).to_contain_text("completed")

    page.goto("/alerts")
    page.get_by_role("button", name="Acknowledge all").click()
    expect(page.locator(".flash")).to_contain_text("1 alert(s) acknowledged")
    expect(page.get_by_text("No open alerts.")).to_be_visible()
