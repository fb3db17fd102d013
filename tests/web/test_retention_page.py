"""Keep-N retention from the browser: the form's keep fields, and the config page saying
which rule keeps each backup."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.hostile import redate_marker
from tests.web.conftest import Server, log_in, shoot
from tests.web.pages import fill_config, save_config


def test_config_page_names_the_keep_rule_of_each_backup(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    page.goto("/backups/new")
    source = tmp_path / "keep"
    source.mkdir()
    (source / "a.txt").write_text("a")
    fill_config(page, name="Daily", source=str(source), destination=tmp_path / "d")
    config_id = save_config(page)
    document = {
        "name": "Daily",
        "enabled": True,
        "sources": [{"path": str(source)}],
        "destination": {"type": "local", "path": str(tmp_path / "d")},
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": False},
    }
    cfg = tmp_path / "daily.json"
    cfg.write_text(json.dumps(document))
    for _ in range(3):
        subprocess.run(
            [sys.executable, "-m", "backapp", "backup", "run", "-c", str(cfg), "--json"],
            check=True,
            capture_output=True,
        )
    # The two older backups completed on the same day, long ago.
    markers = sorted((tmp_path / "d").rglob("backup.json"))
    for marker, when in zip(markers[:2], ("2020-01-01T08:00", "2020-01-01T20:00"), strict=True):
        redate_marker(marker, completedAt=f"{when}:00+00:00")
    page.goto(f"/backups/{config_id}/edit")
    page.get_by_label("Keep daily").fill("2")
    save_config(page)
    page.goto(f"/backups/{config_id}")
    expect(page.locator("[data-field=retention-rules]")).to_have_text("keep daily 2")
    rows = page.locator("tr[data-backup]")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("[data-field=retention]")).to_contain_text("newest backup")
    expect(rows.nth(1).locator("[data-field=retention]")).to_contain_text("daily #2 (2020-01-01)")
    expect(rows.nth(2).locator("[data-field=retention]")).to_contain_text("goes next run")
    expect(rows.nth(2).locator("[data-field=retention]")).to_contain_text("kept by no rule")
    page.goto(f"/backups/{config_id}/edit")
    expect(page.get_by_label("Keep daily")).to_have_value("2")
    shoot(page, "config-keep-rules")
