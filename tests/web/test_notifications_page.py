"""An admin adds a notification target in the browser, sends it a test message (it reaches
the SMTP server), and never sees its password again; a config's own URLs show masked."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.sinks import smtp_sink, wait_until
from tests.web.conftest import Server, log_in, shoot
from tests.web.pages import fill_config, save_config


def test_the_test_button_delivers_to_the_smtp_server_and_the_password_stays_hidden(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    page.goto("/alerts")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()
    expect(page.get_by_text("No notification targets yet.")).to_be_visible()

    with smtp_sink(password="hunter2-mail") as smtp:
        page.get_by_label("URL", exact=True).fill(smtp.url)
        page.get_by_label("Label (optional)").fill("ops mail")
        page.get_by_role("button", name="Add target").click()
        expect(page.locator(".flash")).to_contain_text("Added mailto://backapp:****@127.0.0.1")
        target = page.locator(".target-item")
        expect(target).to_have_count(1)
        expect(target).to_contain_text("ops mail")
        expect(target).to_contain_text("For every config")
        assert "hunter2-mail" not in page.content()
        shoot(page, "notifications")

        target.get_by_role("button", name=re.compile("Send a test message")).click()
        expect(page.locator(".flash")).to_contain_text("Test message delivered")
        wait_until(lambda: smtp.mails, 10, "the test email")
        (mail,) = smtp.texts()
        assert "BackApp: test message" in mail and "sent by admin" in mail

        # Edit: the events change, the URL (left empty) is kept.
        target.get_by_text("Edit").click()
        target.get_by_label("a run fails").uncheck()
        target.get_by_role("button", name="Save").click()
        expect(page.locator(".flash")).to_contain_text("Saved")
        expect(page.locator(".target-item")).to_contain_text("on recovered, missed")
        assert "hunter2-mail" not in page.content()
        page.locator(".target-item").get_by_text("Edit").click()
        page.get_by_role("button", name=re.compile("^Remove")).click()
        expect(page.locator(".flash")).to_contain_text("Target removed")
        expect(page.get_by_text("No notification targets yet.")).to_be_visible()

    # A config's own URL, typed in its form, comes back masked when the form is opened again.
    page.goto("/backups/new")
    fill_config(page, name="Mailed", source=str(tmp_path), destination=tmp_path / "dest")
    page.get_by_label("Notification URLs").fill("json://user:hunter2-hook@127.0.0.1:9/hook")
    page.get_by_label("every backup completes").check()
    page.get_by_label("Alert when no backup for (hours)").fill("26")
    config_id = save_config(page)
    page.goto(f"/backups/{config_id}/edit")
    expect(page.get_by_label("Notification URLs")).to_have_value(
        "json://user:****@127.0.0.1:9/hook"
    )
    expect(page.get_by_label("every backup completes")).to_be_checked()
    expect(page.get_by_label("Alert when no backup for (hours)")).to_have_value("26")
    assert "hunter2-hook" not in page.content()
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash")).to_contain_text("Saved")
    page.goto("/settings/notifications")
    expect(page.locator(".target-item").filter(has_text="Mailed")).to_contain_text(
        "json://user:****@127.0.0.1:9/hook"
    )
    assert "hunter2-hook" not in page.content()
