"""Hooks on the pages: an admin sets them in the form; the run page is the run's log."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.web.conftest import VIEWER_PASSWORD, Server, csrf_of, log_in, shoot
from tests.web.pages import fill_config, make_source, save_config

FAILING_DUMP = [
    "sh",
    "-c",
    "echo dumping app; echo 'pg_dump: error: connection to server failed' >&2; exit 2",
]


def _open_newest_run(page: Page) -> None:
    page.goto("/backups/logs")
    page.locator("a[href^='/backups/logs/']").first.click()
    page.wait_for_url(re.compile(r"/backups/logs/[0-9a-f-]{36}$"))


def _run_now(page: Page, config_id: str) -> None:
    page.goto(f"/backups/{config_id}")
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".flash")).to_contain_text("queued")
    _open_newest_run(page)
    expect(page.get_by_test_id("run-status")).to_contain_text(
        re.compile("completed|failed"), timeout=15_000
    )


def test_a_before_hooks_output_and_failure_are_on_the_run_page(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    source = make_source(tmp_path / "src")
    os.mkfifo(source / "pipe")  # skipped: a warning with its path
    page = open_page(server)
    log_in(page)
    page.goto("/backups/new")
    fill_config(page, name="Database", source=str(source), destination=tmp_path / "dest")

    # A mistake is shown at the field, with what was typed kept.
    hooks = page.get_by_label("Hooks (JSON, optional)")
    hooks.fill('{"before": ["pg_dump -f /srv/db.sql app"]}')
    page.get_by_role("button", name="Create backup").click()
    expect(page.locator("#options-hooks-error")).to_contain_text("must be an argv list")
    expect(hooks).to_have_attribute("aria-invalid", "true")
    expect(hooks).to_have_value('{"before": ["pg_dump -f /srv/db.sql app"]}')
    hooks.fill(json.dumps({"before": [FAILING_DUMP]}))
    config_id = save_config(page)

    # The failing before hook fails the run: its stderr is the error, its output in the log.
    _run_now(page, config_id)
    expect(page.get_by_test_id("run-status")).to_contain_text("failed")
    error = page.get_by_test_id("run-error")
    expect(error).to_contain_text("before hook 1 (sh)")
    expect(error).to_contain_text("failed (exit status 2)")
    expect(error).to_contain_text("pg_dump: error: connection to server failed")
    hook = page.get_by_test_id("hook")
    expect(hook).to_have_count(1)
    expect(hook).to_contain_text("before")
    expect(hook).to_contain_text("exit status 2")
    expect(hook.get_by_test_id("hook-stdout")).to_have_text("dumping app")
    expect(hook.get_by_test_id("hook-stderr")).to_have_text(
        "pg_dump: error: connection to server failed"
    )
    shoot(page, "run-hook-failed")

    # The form shows the stored hooks; an optional failure and a good one: the run completes.
    page.goto(f"/backups/{config_id}/edit")
    expect(hooks).to_have_value(re.compile(r'"before": \[\n    \["sh", "-c", "echo dumping'))
    optional = {"argv": FAILING_DUMP, "optional": True}
    hooks.fill(json.dumps({"before": [optional, ["echo", "dump written"]]}))
    save_config(page)
    _run_now(page, config_id)
    expect(page.get_by_test_id("run-status")).to_contain_text("completed")
    expect(page.get_by_test_id("run-hooks").get_by_test_id("hook")).to_have_count(2)
    expect(page.get_by_test_id("hook").nth(1).get_by_test_id("hook-stdout")).to_have_text(
        "dump written"
    )
    warnings = page.get_by_test_id("run-warnings")
    expect(warnings).to_contain_text("failed (exit status 2), optional: the run went on")
    expect(warnings).to_contain_text(f"{source}/pipe")
    expect(warnings).to_contain_text("fifo skipped")
    expect(page.get_by_test_id("files-new")).to_have_text("2")
    expect(page.get_by_test_id("files-changed")).to_have_text("0")
    expect(page.get_by_test_id("files-deleted")).to_have_text("0")
    shoot(page, "run-hook-log")

    # Only an admin sets hooks: an operator's edit is refused and changes nothing.
    server.cli(
        "user", "create", "ops", "--role", "operator", "--password-stdin",
        stdin=VIEWER_PASSWORD + "\n",
    )  # fmt: skip
    other = open_page(server)
    log_in(other, "ops", VIEWER_PASSWORD)
    response = other.context.request.post(
        f"/backups/{config_id}/edit",
        form={"csrf_token": csrf_of(other), "options-hooks": '{"before": [["id"]]}'},
    )
    assert response.status == 403
    page.goto(f"/backups/{config_id}/edit")
    expect(hooks).to_have_value(re.compile("dump written"))
