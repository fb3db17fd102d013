"""The stored-backups list and the delete and prune pages by role (admins only), and an
encrypted backup listed by a server without the key: its times and size, not "damaged"."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from backapp.app import create_app
from backapp.domain.config import parse_config
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.services import users
from backapp.services.context import AppContext
from backapp.storage.local import LocalStorage
from backapp.web.formatting import human_bytes

PASSWORD = "a-password-1"
KEY = MasterKey.from_base64(base64.b64encode(b"k" * 32).decode())


def _browser(ctx: AppContext, username: str, role: str) -> tuple[TestClient, str]:
    """Given a context, a new user's name and role, return a logged-in client and its CSRF
    token (the session cookie serves the pages as it serves the API)."""
    with ctx.db.session() as session:
        users.create_user(session, username, PASSWORD, role)
    client = TestClient(create_app(ctx))
    login = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return client, str(login.json()["csrfToken"])


def test_without_the_key_encrypted_backups_show_their_times_and_sizes_and_only_admins_delete(
    make_ctx: Callable[..., AppContext], database_url: str, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url, backup_encryption_key=None)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("sealed\n")
    admin, admin_csrf = _browser(ctx, "admin", "admin")
    document = {
        "name": "Sealed",
        "enabled": True,
        "sources": [{"path": str(tmp_path / "src")}],
        "destination": {"type": "local", "path": str(tmp_path / "dest")},
        "schedule": {"cronExpression": "0 3 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": True},
    }
    created = admin.post(
        "/api/backups/configs", json=document, headers={"X-CSRF-Token": admin_csrf}
    )
    assert created.status_code == 201, created.text
    config = created.json()
    storage = LocalStorage(tmp_path / "dest")
    made = run_backup(parse_config(config), storage, slug=config["slug"], key=KEY)
    stored = f"/backups/{config['id']}/stored"
    delete = f"/backups/{config['id']}/backups/{made.backup_id}/delete"

    listed = admin.get(stored)

    assert listed.status_code == 200
    row = re.search(
        rf'<tr data-backup="{made.backup_id}" class="(\w+)">(.*?)</tr>', listed.text, re.S
    )
    assert row is not None and row.group(1) == "sealed", listed.text
    assert "encrypted — details need the key" in row.group(2) and "damaged" not in row.group(2)
    assert human_bytes(made.info.stored_bytes) in row.group(2)
    assert made.info.completed_at.isoformat() in row.group(2)  # its <time datetime=…>
    assert f'href="{delete}"' in row.group(2) and "Prune now" in listed.text
    confirm = admin.get(delete)
    assert confirm.status_code == 200 and "encrypted — details need the key" in confirm.text

    for username, role in (("viewer", "viewer"), ("operator", "operator")):
        client, csrf = _browser(ctx, username, role)
        page = client.get(stored)
        assert page.status_code == 200 and made.backup_id in page.text
        assert f'href="{delete}"' not in page.text and "Prune now" not in page.text
        assert client.get(delete).status_code == 403
        posted = client.post(delete, data={"csrf_token": csrf}, follow_redirects=False)
        assert posted.status_code == 403
        pruned = client.post(
            f"/backups/{config['id']}/prune", data={"csrf_token": csrf}, follow_redirects=False
        )
        assert pruned.status_code == 403
    forged = admin.post(delete, data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    assert (tmp_path / "dest" / config["slug"] / made.backup_id / "backup.json").exists()

    deleted = admin.post(delete, data={"csrf_token": admin_csrf}, follow_redirects=False)

    assert deleted.status_code == 303 and deleted.headers["location"] == f"/backups/{config['id']}"
    assert not (tmp_path / "dest" / config["slug"] / made.backup_id).exists()
    assert made.backup_id not in admin.get(stored).text
