"""Authentication on every /api route: bearer tokens, sessions with CSRF, roles, hashing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from backapp.services.context import AppContext
from tests.api.conftest import ADMIN_PASSWORD, VIEWER_PASSWORD, Api, bearer

UNSAFE = ("POST", "PATCH", "PUT", "DELETE")
PUBLIC = {("POST", "/api/auth/login")}


def all_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """Given app.routes, yield (path, methods) of every route, inside included routers too."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.160 nests routers
        if inner is not None:
            yield from all_routes(inner.routes, prefix + route.include_context.prefix)
        elif getattr(route, "path", None):
            yield prefix + route.path, set(getattr(route, "methods", None) or ())


def api_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Given the app, yield (method, concrete URL) for every /api route (ids made up)."""
    for path, methods in all_routes(app.routes):
        if not path.startswith("/api/"):
            continue
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for method in sorted(methods):
            if method != "HEAD" and (method, path) not in PUBLIC:
                yield method, url


def route_path(app: FastAPI, url: str) -> str:
    """Given a concrete URL from api_routes, return the template path it came from."""
    for path, _ in all_routes(app.routes):
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[0-9a-f-]{36}", path), url):
            return path
    raise AssertionError(url)


def test_the_route_list_covers_the_whole_api(app: FastAPI) -> None:
    templates = {route_path(app, url) for _, url in api_routes(app)}
    documented = set(app.openapi()["paths"])

    assert {p for p in documented if p.startswith("/api/")} - {"/api/auth/login"} <= templates
    assert {"/api/openapi.json", "/api/docs", "/api/backups/execute"} <= templates
    assert len(list(api_routes(app))) >= 18


def test_every_api_route_answers_401_without_credentials(
    app: FastAPI, anonymous: TestClient
) -> None:
    for method, url in api_routes(app):
        response = anonymous.request(method, url, json={})
        assert response.status_code == 401, (method, url, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "error" in response.json()


def test_a_body_that_is_not_json_gets_401_or_403_before_any_parsing(
    app: FastAPI, anonymous: TestClient, viewer: Api
) -> None:
    broken = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    for method, url in api_routes(app):
        if method in UNSAFE:
            response = anonymous.request(method, url, **broken)
            assert response.status_code == 401, (method, url, response.text)
            if not url.startswith("/api/auth/"):
                response = viewer.client.request(method, url, **broken)
                assert response.status_code == 403, (method, url, response.text)

    login = anonymous.post("/api/auth/login", **broken)
    assert login.status_code == 422


def test_healthz_answers_without_authentication(anonymous: TestClient) -> None:
    response = anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_an_unknown_or_malformed_token_is_401(api: Api, anonymous: TestClient) -> None:
    for header in (
        bearer("bk_not-a-real-token"),
        bearer(api.token + "x"),
        bearer(""),
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": api.token},
    ):
        response = anonymous.get("/api/backups/configs", headers=header)
        assert response.status_code == 401, header


def test_a_valid_token_is_accepted_and_identifies_its_user(api: Api) -> None:
    response = api.get("/api/auth/me")

    assert response.status_code == 200
    assert response.json() == {"username": "admin", "role": "admin", "via": "token"}


def test_a_viewer_reads_everything_but_file_content_and_changes_nothing(
    app: FastAPI, api: Api, viewer: Api
) -> None:
    for method, url in api_routes(app):
        if url.startswith("/api/auth/"):
            continue  # a viewer may see who they are and end their own session
        response = viewer.client.request(method, url, json={})
        if method in UNSAFE:
            assert response.status_code == 403, (method, url, response.text)
            assert "viewer" in response.json()["error"]
        elif "{" not in route_path(app, url):
            assert response.status_code == 200, (method, url, response.text)

    created = api.create_config(
        {
            "name": "Seen by viewer",
            "enabled": True,
            "sources": [{"path": "/data"}],
            "destination": {"bucket": "my-bucket", "region": "us-east-1"},
            "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
            "options": {"type": "full", "compression": True, "encryption": False},
        }
    )
    assert viewer.get(f"/api/backups/configs/{created['id']}").status_code == 200
    assert viewer.patch(f"/api/backups/configs/{created['id']}", json={}).status_code == 403
    assert viewer.delete(f"/api/backups/configs/{created['id']}").status_code == 403
    assert viewer.post("/api/backups/execute", json={"configId": created["id"]}).status_code == 403
    assert api.get(f"/api/backups/configs/{created['id']}").json() == created
    assert api.get("/api/backups/logs").json() == []


def test_an_operator_runs_and_reads_backups_but_manages_nothing(api: Api, operator: Api) -> None:
    doc = {
        "name": "Operated",
        "enabled": True,
        "sources": [{"path": "/data"}],
        "destination": {"type": "local", "path": "/tmp/operated-nowhere"},
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": False},
    }
    created = api.create_config(doc)
    for method, url, body in (
        ("POST", "/api/backups/configs", {**doc, "name": "Not allowed"}),
        ("PATCH", f"/api/backups/configs/{created['id']}", {"enabled": False}),
        ("DELETE", f"/api/backups/configs/{created['id']}", None),
        ("POST", "/api/backups/destinations/test", {"type": "local", "path": "/tmp"}),
    ):
        response = operator.client.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.text)
        assert "admin role" in response.json()["error"]
    queued = operator.post("/api/backups/execute", json={"configId": created["id"]})
    assert queued.status_code == 202, queued.text
    cancelled = operator.post(f"/api/backups/logs/{queued.json()['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text


def test_login_sets_an_http_only_same_site_lax_session_cookie(api: Api, app: FastAPI) -> None:
    client = TestClient(app)

    response = client.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == {"username": "admin", "role": "admin"}
    assert len(body["csrfToken"]) >= 32
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("backapp_session=")
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Path=/" in cookie
    me = client.get("/api/auth/me").json()
    assert me == {"username": "admin", "role": "admin", "via": "session"}


def test_a_session_needs_the_csrf_header_on_changes(api: Api, app: FastAPI) -> None:
    client = TestClient(app)
    login = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    csrf = login.json()["csrfToken"]
    document = {
        "name": "From a browser",
        "enabled": True,
        "sources": [{"path": "/data"}],
        "destination": {"bucket": "my-bucket", "region": "us-east-1"},
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": False},
    }

    assert client.get("/api/backups/configs").status_code == 200
    missing = client.post("/api/backups/configs", json=document)
    assert missing.status_code == 403
    assert "CSRF" in missing.json()["error"]
    wrong = client.post("/api/backups/configs", json=document, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    assert client.get("/api/backups/configs").json() == []

    created = client.post("/api/backups/configs", json=document, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    config_url = f"/api/backups/configs/{created.json()['id']}"
    assert client.patch(config_url, json={"enabled": False}).status_code == 403
    patched = client.patch(config_url, json={"enabled": False}, headers={"X-CSRF-Token": csrf})
    assert patched.status_code == 200


def test_logout_ends_the_session_on_the_server(api: Api, app: FastAPI) -> None:
    client = TestClient(app)
    login = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    cookie = client.cookies["backapp_session"]
    csrf = login.json()["csrfToken"]

    assert client.post("/api/auth/logout").status_code == 403  # logout needs the CSRF token too
    response = client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})

    assert response.status_code == 204
    assert "backapp_session" not in client.cookies
    replay = TestClient(app, cookies={"backapp_session": cookie})
    assert replay.get("/api/backups/configs").status_code == 401


def test_a_viewer_session_is_read_only_too(viewer: Api, app: FastAPI) -> None:
    client = TestClient(app)
    login = client.post("/api/auth/login", json={"username": "viewer", "password": VIEWER_PASSWORD})
    csrf = login.json()["csrfToken"]

    assert client.get("/api/backups/stats").status_code == 200
    response = client.post(
        "/api/backups/execute", json={"configId": "x"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 403


def test_a_wrong_password_or_unknown_user_cannot_log_in(api: Api, anonymous: TestClient) -> None:
    for username, password in (("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD)):
        response = anonymous.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        assert response.json()["error"] == "wrong username or password"


def test_a_malformed_login_is_a_422(anonymous: TestClient) -> None:
    assert anonymous.post("/api/auth/login", json={"username": "admin"}).status_code == 422
    response = anonymous.post(
        "/api/auth/login", json={"username": "a", "password": "b", "remember": True}
    )
    assert response.status_code == 422


def test_tokens_are_stored_only_as_hashes(api: Api, ctx: AppContext) -> None:
    with ctx.db.session() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).mappings().all()
        sessions_before = session.execute(text("SELECT * FROM web_sessions")).mappings().all()

    assert len(rows) == 1
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert api.token not in stored
    assert api.token[12:] not in stored
    assert rows[0]["prefix"] == api.token[:10]
    assert sessions_before == []


def test_session_cookies_are_stored_only_as_hashes(api: Api, app: FastAPI, ctx: AppContext) -> None:
    client = TestClient(app)
    client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    cookie = client.cookies["backapp_session"]

    with ctx.db.session() as session:
        rows = session.execute(text("SELECT * FROM web_sessions")).mappings().all()

    assert len(rows) == 1
    assert cookie not in " ".join(str(v) for v in rows[0].values())


def test_passwords_are_stored_as_argon2_hashes(api: Api, viewer: Api, ctx: AppContext) -> None:
    with ctx.db.session() as session:
        rows = session.execute(text("SELECT username, password_hash FROM users")).all()

    assert {r[0] for r in rows} == {"admin", "viewer"}
    for _, password_hash in rows:
        assert password_hash.startswith("$argon2id$")
        assert ADMIN_PASSWORD not in password_hash
        assert VIEWER_PASSWORD not in password_hash


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def test_guessing_one_account_meets_429s_that_grow_and_a_success_clears_them(
    api: Api, app: FastAPI, ctx: AppContext
) -> None:
    from backapp.services.logins import ACCOUNT_FREE, LoginGuard

    clock = _Clock()
    ctx.logins = LoginGuard(clock=clock)
    client = TestClient(app)
    for _ in range(ACCOUNT_FREE):
        assert _login(client, "admin", "wrong-password").status_code == 401
    locked = _login(client, "admin", ADMIN_PASSWORD)  # even the right password waits
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "1"
    assert "too many failed logins for this account" in locked.json()["error"]
    clock.now += 1.5
    assert _login(client, "admin", "wrong-password").status_code == 401
    again = _login(client, "admin", "wrong-password")
    assert again.status_code == 429 and again.headers["Retry-After"] == "2"  # doubled
    clock.now += 2.5
    assert _login(client, "admin", ADMIN_PASSWORD).status_code == 200
    assert _login(client, "admin", "wrong-password").status_code == 401  # counted anew


def test_guessing_many_accounts_from_one_address_meets_429s(
    api: Api, app: FastAPI, ctx: AppContext
) -> None:
    from backapp.services.logins import ADDRESS_LIMIT, WINDOW, LoginGuard

    clock = _Clock()
    ctx.logins = LoginGuard(clock=clock)
    client = TestClient(app)
    for n in range(ADDRESS_LIMIT):
        assert _login(client, f"user{n}", "guess-password").status_code == 401
    refused = _login(client, "admin", ADMIN_PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 60
    clock.now += WINDOW + 1
    assert _login(client, "admin", ADMIN_PASSWORD).status_code == 200


def test_parallel_guessers_never_hash_more_than_a_few_passwords_at_once(
    api: Api, app: FastAPI, ctx: AppContext, monkeypatch: Any
) -> None:
    import threading

    from backapp.services import users
    from backapp.services.logins import HASHING_SLOTS

    running, most = 0, 0
    lock = threading.Lock()
    real = users.authenticate

    def counted(*args: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(users, "authenticate", counted)
    client = TestClient(app)
    codes: list[int] = []

    def guess(n: int) -> None:
        for i in range(3):
            codes.append(_login(client, f"guesser{n}-{i}", "guess-password").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most <= HASHING_SLOTS
    assert set(codes) <= {401, 429}
    assert api.get("/api/auth/me").status_code == 200  # the server still answers


def test_the_login_page_says_when_to_try_again(api: Api, app: FastAPI, ctx: AppContext) -> None:
    from backapp.services.logins import ACCOUNT_FREE, LoginGuard

    ctx.logins = LoginGuard(clock=_Clock())
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    form = {"username": "admin", "password": "wrong-password", "csrf_token": token.group(1)}
    for _ in range(ACCOUNT_FREE):
        assert "Wrong username or password" in client.post("/login", data=form).text
    page = client.post("/login", data={**form, "password": ADMIN_PASSWORD})
    assert page.status_code == 429
    assert page.headers["Retry-After"] == "1"
    assert "try again in 1 s" in page.text
