"""Logging in, on SQLite and PostgreSQL; every page needs it; forms need their CSRF token;
viewers see no edit controls and their changes are refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import VIEWER_PASSWORD, Server, csrf_of, log_in, shoot, start_server
from tests.web.pages import config_card, fill_config, make_source, save_config


@pytest.fixture
def server_on(tmp_path: Path, database_url: str) -> Iterator[Server]:
    """A BackApp on each database of the suite (SQLite and PostgreSQL)."""
    started = start_server(tmp_path / "server", database_url)
    yield started
    started.stop()


def test_admin_logs_in_and_out_on_each_database(
    server_on: Server, open_page: Callable[[Server], Page]
) -> None:
    page = open_page(server_on)
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("Wrong username or password")
    expect(page.get_by_label("Username")).to_have_value("admin")
    log_in(page)
    expect(page.get_by_role("heading", name="Backups", exact=True)).to_be_visible()
    page.keyboard.press("Tab")  # the first stop skips the navigation
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    cookie = next(c for c in page.context.cookies() if c["name"] == "backapp_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".flash")).to_contain_text("logged out")
    page.goto("/backups/logs")
    expect(page).to_have_url(re.compile(r"/login\?next=/backups/logs$"))


def test_every_page_needs_a_login_and_every_form_its_csrf_token(
    server: Server, open_page: Callable[[Server], Page]
) -> None:
    page = open_page(server)
    request = page.context.request
    for path in ("/backups", "/backups/new", "/backups/logs", "/alerts", "/backups/x/edit"):
        response = request.get(path, max_redirects=0)
        assert response.status == 303, path
        assert response.headers["location"].startswith("/login?next="), path
    assert request.post("/backups/new", max_redirects=0).status == 303

    log_in(page)
    dashboard = page.goto("/backups")
    assert dashboard is not None
    headers = dashboard.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    refused = request.post("/backups/new", form={"name": "no token"})
    assert refused.status == 403
    assert "security token" in refused.text()
    wrong = request.post("/backups/new", form={"name": "wrong", "csrf_token": "forged"})
    assert wrong.status == 403
    # With its token the same post is a form submission again (here: invalid, shown again).
    accepted = request.post("/backups/new", form={"name": "x", "csrf_token": csrf_of(page)})
    assert accepted.status == 200
    assert "problem" in accepted.text()
    missing = request.get("/no/such/page")
    assert missing.status == 404
    assert "<h1>Not found</h1>" in missing.text()
    assert request.get("/api/no/such").json() == {"detail": "Not Found"}  # the API stays JSON


def test_a_viewer_sees_no_edit_controls_and_the_server_refuses_their_changes(
    server: Server, open_page: Callable[[Server], Page], tmp_path: Path
) -> None:
    admin = open_page(server)
    log_in(admin)
    admin.goto("/backups/new")
    fill_config(
        admin, name="Shared", source=str(make_source(tmp_path / "src")), destination=tmp_path / "d"
    )
    config_id = save_config(admin)

    server.cli(
        "user",
        "create",
        "viewer",
        "--role",
        "viewer",
        "--password-stdin",
        stdin=VIEWER_PASSWORD + "\n",
    )
    page = open_page(server)
    log_in(page, "viewer", VIEWER_PASSWORD)
    card = config_card(page, "Shared")
    expect(card).to_be_visible()
    expect(card.get_by_role("link", name=re.compile("View"))).to_be_visible()
    for name in ("New backup", "Edit", "Delete"):
        expect(page.get_by_role("link", name=re.compile(name))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Run now"))).to_have_count(0)
    shoot(page, "dashboard-viewer")
    page.goto(f"/backups/{config_id}")
    expect(page.get_by_role("heading", name="Shared")).to_be_visible()
    expect(page.get_by_role("button")).to_have_count(1)  # Log out, nothing else
    expect(page.get_by_role("link", name=re.compile("Edit|Delete"))).to_have_count(0)

    token = csrf_of(page)
    request = page.context.request
    for path in (
        f"/backups/{config_id}/run",
        f"/backups/{config_id}/delete",
        f"/backups/{config_id}/edit",
        "/backups/new",
        "/backups/destination-test",
    ):
        response = request.post(path, form={"csrf_token": token, "name": "taken over"})
        assert response.status == 403, path
        assert "role (this account: viewer)" in response.text(), path
    assert request.get("/backups/new").status == 403
    assert request.get(f"/backups/{config_id}/edit").status == 403
    # Nothing changed.
    admin.goto("/backups/logs")
    expect(admin.get_by_text("No runs match.")).to_be_visible()
    admin.goto(f"/backups/{config_id}")
    expect(admin.get_by_role("heading", name="Shared")).to_be_visible()


def test_the_api_docs_render_offline_for_a_logged_in_user(
    server: Server, open_page: Callable[[Server], Page]
) -> None:
    page = open_page(server)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page)
    page.goto("/api/docs")
    expect(page.get_by_role("heading", name=re.compile("BackApp"))).to_be_visible()
    expect(page.get_by_text("/api/backups/configs").first).to_be_visible()
    assert all(url.startswith(server.url) for url in requested), requested
