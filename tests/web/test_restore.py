"""A stored backup from the browser: browse its files, download one, restore picked paths to a
new folder, verify it in full before and after its archive is damaged; a viewer only reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.helpers.hostile import redate_marker
from tests.web.conftest import VIEWER_PASSWORD, Server, csrf_of, log_in, shoot
from tests.web.pages import fill_config, save_config

ODD_NAME = "odd [1]*.txt"  # gitignore would read [1] and * as patterns: picked, it is one file


def make_tree(root: Path) -> Path:
    """Given a folder, fill it with folders, files, a symlink, an empty folder and 3 MiB of
    random data (first in the archive, so the middle of its data pack lies inside it)."""
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "docs" / "empty").mkdir()
    (root / "docs" / "readme.txt").write_text("read me, from the restore tests\n" * 40)
    (root / "docs" / "sub" / "deep.txt").write_bytes(os.urandom(2000))
    (root / "notes.md").write_text("# notes\n")
    (root / "notes.md").chmod(0o640)
    (root / ODD_NAME).write_text("an odd name\n")
    (root / "link").symlink_to("notes.md")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    return root


def files_under(root: Path) -> dict[str, bytes]:
    """Given a folder, return every regular file below it (relative path -> bytes)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def back_up(page: Page, tmp_path: Path, name: str) -> tuple[str, Path, Path]:
    """Create a local-folder config of a fresh tree, run it and wait; return (id, tree, dest)."""
    tree = make_tree(tmp_path / name.lower())
    destination = tmp_path / f"{name.lower()}-backups"
    page.goto("/backups/new")
    fill_config(page, name=name, source=str(tree), destination=destination)
    config_id = save_config(page)
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".progress [data-field=badge]")).to_contain_text("completed")
    page.reload()
    expect(page.locator("#stored-backups tbody tr")).to_have_count(1)
    return config_id, tree, destination


def wait_for_run(page: Page, status: str) -> None:
    """On a run's page, wait until the summary shows the run ended with ``status``."""
    expect(page).to_have_url(re.compile(r"/backups/logs/[0-9a-f-]{36}$"))
    expect(page.get_by_test_id("run-status")).to_contain_text(status, timeout=20_000)


def test_admin_browses_downloads_restores_picked_paths_and_verifies_a_backup(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    config_id, tree, destination = back_up(page, tmp_path, "Tree")
    inside = str(tree).strip("/")

    # Each stored backup offers browsing, restoring and both verifications.
    row = page.locator("#stored-backups tbody tr")
    for role, name in (("link", "Browse"), ("link", "Restore")):
        expect(row.get_by_role(role, name=re.compile(f"^{name}"))).to_be_visible()
    for name in ("Verify (quick)", "Verify (full)"):
        expect(row.get_by_role("button", name=re.compile(re.escape(name)))).to_be_visible()
    shoot(page, "config-detail-stored")

    # Browsing starts in the backed-up folder: folders first, then files, read from the manifest.
    row.get_by_role("link", name=re.compile("Browse")).click()
    expect(page).to_have_url(re.compile(r"/browse\?path="))
    tree_url = page.url
    response = page.context.request.get(page.url)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".crumbs [aria-current=page]")).to_have_text("tree")
    names = page.locator("table.files tbody tr[data-entry] td.name")
    expect(names).to_have_count(5)
    expect(names.nth(0)).to_contain_text("data/")
    expect(names.nth(1)).to_contain_text("docs/")
    link_row = page.locator("tr[data-type=symlink]")
    expect(link_row).to_contain_text("link")
    expect(link_row.locator(".link-target")).to_contain_text("notes.md")
    notes = page.locator(f"tr[data-entry='{inside}/notes.md']")
    expect(notes.locator("td[data-label=Mode]")).to_have_text("-rw-r-----")
    expect(notes.locator("td[data-label=Size]")).to_have_text("8 B")
    expect(notes.locator("time")).to_have_attribute("title", re.compile("time zone"))  # localised
    page.get_by_role("link", name="data/").click()
    expect(page.locator("tr[data-type=file] td[data-label=Size]")).to_have_text("3.0 MB")
    page.get_by_role("link", name=re.compile("^Up to")).click()

    # Into a folder, and a file downloaded byte for byte.
    page.get_by_role("link", name="docs/").click()
    expect(page.locator(".crumbs [aria-current=page]")).to_have_text("docs")
    expect(page.locator("table.files tbody tr[data-entry]")).to_have_count(3)
    shoot(page, "browse-folder")
    readme = page.locator(f"tr[data-entry='{inside}/docs/readme.txt']")
    with page.expect_download() as download:
        readme.get_by_role("link", name=re.compile("Download")).click()
    assert download.value.suggested_filename == "readme.txt"
    assert Path(download.value.path()).read_bytes() == (tree / "docs" / "readme.txt").read_bytes()
    href = readme.get_by_role("link", name=re.compile("Download")).get_attribute("href")
    assert href is not None
    sent = page.context.request.get(href)
    assert sent.headers["content-length"] == str((tree / "docs" / "readme.txt").stat().st_size)
    assert sent.headers["content-disposition"].startswith("attachment;")

    # Pick a folder and an oddly named file; the restore form lists them.
    page.locator(".crumbs").get_by_role("link", name="tree").click()
    button = page.get_by_role("button", name=re.compile("Restore selected"))
    expect(button).to_be_disabled()
    page.get_by_label("Select docs").check()
    page.get_by_label(f"Select {ODD_NAME}").check()
    expect(button).to_have_text("Restore selected (2)")
    shoot(page, "browse-picked")
    button.click()
    picked = page.get_by_test_id("picked-paths")
    expect(picked.locator("li")).to_have_count(2)
    expect(picked).to_contain_text(f"/{inside}/docs")
    expect(page.get_by_label("A new folder")).to_be_checked()
    expect(page.locator("#where-new-hint")).to_contain_text(
        str(server.workdir / "data" / "restores")
    )
    expect(page.locator("#existing")).to_be_hidden()
    shoot(page, "restore-form")

    # Mistakes are shown next to their fields, and nothing chosen or typed is lost.
    page.get_by_label("This folder").check()
    expect(page.get_by_label("Folder to restore into")).to_be_visible()
    page.get_by_label("Folder to restore into").fill("restored")
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.locator("#error-summary")).to_be_focused()
    expect(page.locator("#target-error")).to_contain_text("absolute path")
    expect(page.get_by_label("Folder to restore into")).to_have_value("restored")
    expect(page.get_by_test_id("picked-paths").locator("li")).to_have_count(2)
    page.get_by_label("The original location").check()
    expect(page.locator("#existing-refuse")).to_be_hidden()
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.locator("#existing-error")).to_contain_text("needs a choice")
    expect(page.get_by_label("The original location")).to_be_checked()
    shoot(page, "restore-form-errors")

    # To a new folder: exactly the picked files come back, with their content.
    page.get_by_label("A new folder").check()
    page.get_by_role("button", name="Restore", exact=True).click()
    wait_for_run(page, "completed")
    expect(page.get_by_test_id("run-kind")).to_have_text("restore")
    expect(page.get_by_test_id("files-restored")).to_have_text("3")
    target = Path(page.get_by_test_id("restore-target").inner_text().strip())
    assert target.is_relative_to(server.workdir / "data" / "restores")
    shoot(page, "run-restore")
    restored = files_under(target / inside)
    expected = {
        rel: data
        for rel, data in files_under(tree).items()
        if rel.startswith("docs/") or rel == ODD_NAME
    }
    assert restored == expected
    assert (target / inside / "docs" / "empty").is_dir()
    assert not (target / inside / "notes.md").exists()

    # To the original location, overwriting: a changed file gets its backed-up content back.
    (tree / "notes.md").write_text("changed since the backup\n")
    page.goto(tree_url)
    page.get_by_label("Select notes.md").check()
    page.get_by_role("button", name=re.compile("Restore selected")).click()
    page.get_by_label("The original location").check()
    page.get_by_label(re.compile("^Overwrite")).check()
    page.get_by_role("button", name="Restore", exact=True).click()
    wait_for_run(page, "completed")
    expect(page.get_by_test_id("restore-target")).to_have_text("the original location")
    assert (tree / "notes.md").read_text() == "# notes\n"

    # A full verification passes; after a byte of the archive flips, it fails and says where.
    page.goto(f"/backups/{config_id}")
    page.locator("#stored-backups").get_by_role(
        "button", name=re.compile(r"Verify \(full\)")
    ).click()
    wait_for_run(page, "completed")
    expect(page.get_by_test_id("verify-mode")).to_have_text("full")
    expect(page.get_by_test_id("verify-result")).to_contain_text("passed")
    shoot(page, "run-verify-passed")

    # The data pack (the manifest has one of its own): its middle lies in big.bin.
    archive = max(destination.rglob("packs/*/*"), key=lambda p: p.stat().st_size)
    with archive.open("r+b") as handle:
        middle = archive.stat().st_size // 2
        handle.seek(middle)
        byte = handle.read(1)
        handle.seek(middle)
        handle.write(bytes([byte[0] ^ 0xFF]))
    page.goto(f"/backups/{config_id}")
    page.locator("#stored-backups").get_by_role(
        "button", name=re.compile(r"Verify \(full\)")
    ).click()
    wait_for_run(page, "failed")
    result = page.get_by_test_id("verify-result")
    expect(result).to_contain_text("failed")
    expect(page.get_by_test_id("verify-problems")).to_contain_text(f"{inside}/data/big.bin")
    expect(page.get_by_test_id("verify-problems")).not_to_contain_text("readme.txt")
    shoot(page, "run-verify-failed")

    # The logs tell the kinds apart and filter by kind.
    page.goto("/backups/logs")
    expect(page.locator("table.runs tbody tr")).to_have_count(5)
    page.get_by_label("Kind").select_option("verify")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.runs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td[data-label=Kind]")).to_have_text("verify (full)")
    expect(rows.first).to_contain_text("failed")
    page.get_by_label("Kind").select_option("restore")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    shoot(page, "logs-restores")


def test_a_viewer_reads_no_backed_up_content_and_an_operator_browses_and_downloads(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    admin = open_page(server)
    log_in(admin)
    config_id, tree, _ = back_up(admin, tmp_path, "Shared")
    backup_id = admin.locator("#stored-backups tbody tr").get_attribute("data-backup")
    for name, role in (("viewer", "viewer"), ("operator", "operator")):
        server.cli(
            "user", "create", name, "--role", role, "--password-stdin",
            stdin=VIEWER_PASSWORD + "\n",
        )  # fmt: skip
    base = f"/backups/{config_id}/backups/{backup_id}"

    viewer = open_page(server)
    log_in(viewer, "viewer", VIEWER_PASSWORD)
    viewer.goto(f"/backups/{config_id}")
    row = viewer.locator("#stored-backups tbody tr")
    expect(row).to_have_count(1)  # the backup is listed...
    expect(row.get_by_role("link")).to_have_count(0)  # ...but not browsable nor restorable
    expect(row.get_by_role("button")).to_have_count(0)
    request = viewer.context.request
    token = csrf_of(viewer)
    notes = str(tree / "notes.md").lstrip("/")
    for url in (f"{base}/browse", f"{base}/download?path={notes}", f"{base}/restore"):
        response = request.get(url)
        assert response.status == 403, url
        assert "not the content of backups" in response.text(), url
    for path, form in (
        (f"{base}/restore", {"csrf_token": token, "where": "new", "what": "all"}),
        (f"{base}/restore", {"csrf_token": token, "action": "pick", "path": "x"}),
        (f"{base}/verify", {"csrf_token": token, "mode": "full"}),
    ):
        response = request.post(path, form=form)
        assert response.status == 403, path
        assert "operator or admin role" in response.text(), path

    page = open_page(server)
    log_in(page, "operator", VIEWER_PASSWORD)
    page.goto(f"/backups/{config_id}")
    row = page.locator("#stored-backups tbody tr")
    expect(row.get_by_role("link", name=re.compile("Restore"))).to_be_visible()
    row.get_by_role("link", name=re.compile("Browse")).click()
    expect(page.get_by_role("link", name="docs/")).to_be_visible()
    shoot(page, "browse-operator")
    with page.expect_download() as download:
        page.locator("tr[data-entry$='/notes.md']").get_by_role(
            "link", name=re.compile("Download")
        ).click()
    assert Path(download.value.path()).read_bytes() == (tree / "notes.md").read_bytes()
    admin.goto("/backups/logs")
    expect(admin.locator("table.runs tbody tr")).to_have_count(1)  # only the backup


def test_config_page_previews_what_retention_will_delete_and_why(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    page = open_page(server)
    log_in(page)
    page.goto("/backups/new")
    source = tmp_path / "keep"
    source.mkdir()
    (source / "a.txt").write_text("a")
    fill_config(page, name="Kept", source=str(source), destination=tmp_path / "d")
    config_id = save_config(page)
    # Two backups made from the command line into the same destination and folder.
    document = {
        "name": "Kept",
        "enabled": True,
        "sources": [{"path": str(source)}],
        "destination": {"type": "local", "path": str(tmp_path / "d")},
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": False},
    }
    cfg = tmp_path / "kept.json"
    cfg.write_text(json.dumps(document))
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-m", "backapp", "backup", "run", "-c", str(cfg), "--json"],
            check=True,
            capture_output=True,
        )
    # Age the older backup, and set a retention of 7 days on the config.
    oldest = sorted((tmp_path / "d").rglob("backup.json"))[0]
    redate_marker(oldest, completedAt="2020-01-01T00:00:00+00:00")
    page.goto(f"/backups/{config_id}/edit")
    page.get_by_label("Retention (days)").fill("7")
    save_config(page)
    page.goto(f"/backups/{config_id}")
    rows = page.locator("tr[data-backup]")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator("[data-field=retention]")).to_contain_text("goes next run")
    expect(rows.nth(1).locator("[data-field=retention]")).to_contain_text("older than 7 days")
    expect(rows.nth(0).locator("[data-field=retention]")).to_contain_text("newest backup")
    # Where its backups are, and how to run it from the command line.
    folder = page.get_by_test_id("config-folder")
    expect(folder).to_contain_text("folder kept")
    expect(folder).to_contain_text(f"backapp backup run --config {config_id}")
    shoot(page, "config-retention-preview")
