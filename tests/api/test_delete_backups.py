"""Deleting one stored backup and pruning from the API: admins only, the prune after the
delete says what it freed (or why it did not run), format-1 chains and a held lock are
refused, and an encrypted backup listed without the key is shown as such, not damaged."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backapp.app import create_app
from backapp.domain.config import parse_config
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.lock import RepoLock
from backapp.engine.verify import run_verify
from backapp.services import retention
from backapp.services.context import AppContext
from backapp.storage.local import LocalStorage
from tests.api.conftest import ADMIN_PASSWORD, Api, add_user, config_doc, local_destination
from tests.api.test_openapi import Bodies

CONFIGS = "/api/backups/configs"
ONE_BACKUP = "/api/backups/configs/{config_id}/backups/{backup_id}"
PRUNE = "/api/backups/configs/{config_id}/prune"
STORED = "/api/backups/configs/{config_id}/backups"
KEY = MasterKey.from_base64(base64.b64encode(b"k" * 32).decode())  # the test context's key
FORMAT1 = Path(__file__).parents[1] / "fixtures" / "format1" / "store"


def _backup(config: dict[str, Any], dest: Path, key: MasterKey | None = None) -> str:
    """Given a stored config, make one backup of it with the engine; return its id."""
    document = parse_config(config)
    return run_backup(document, LocalStorage(dest), slug=config["slug"], key=key).backup_id


def _packs(dest: Path, slug: str) -> set[str]:
    return {p.name for p in (dest / slug).rglob("*") if p.is_file() and "packs" in p.parts}


def test_an_admin_deletes_a_backup_and_the_prune_after_it_frees_its_blocks(
    api: Api, worker: Any, source: Path, dest: Path
) -> None:
    bodies = Bodies(api.get("/api/openapi.json").json())
    (source / "only-in-the-first.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    config = api.create_config(config_doc([source], local_destination(dest)))
    first = api.wait_for_run(api.execute(config["id"])["id"])
    assert first["status"] == "completed", first
    (source / "only-in-the-first.bin").unlink()
    second = api.wait_for_run(api.execute(config["id"])["id"])
    assert second["status"] == "completed", second
    url = f"{CONFIGS}/{config['id']}"

    dry = bodies.check("POST", PRUNE, api.post(f"{url}/prune", params={"dryRun": "true"}))
    assert dry["dryRun"] is True and dry["bytesFreed"] == 0 and dry["backups"] == 2
    deleted = bodies.check("DELETE", ONE_BACKUP, api.delete(f"{url}/backups/{first['backupId']}"))

    assert deleted["backupId"] == first["backupId"]
    assert deleted["pruneSkipped"] is None
    pruned = deleted["prune"]
    assert pruned["dryRun"] is False and pruned["backups"] == 1
    assert pruned["blocksRemoved"] > 0 and pruned["bytesFreed"] >= 3 * 1024 * 1024
    listed = bodies.check("GET", STORED, api.get(f"{url}/backups"))
    assert [b["backupId"] for b in listed] == [second["backupId"]]
    assert api.run(first["id"])["backupDeleted"] is True
    assert api.run(second["id"])["backupDeleted"] is False
    repo = Repository(LocalStorage(dest), "", config["slug"])
    assert run_verify(repo, second["backupId"], full=True).ok
    # Gone now: 404, and a prune finds nothing more to free.
    again = bodies.check("DELETE", ONE_BACKUP, api.delete(f"{url}/backups/{first['backupId']}"))
    assert "not found" in again["error"]
    assert api.delete(f"{url}/backups/latest").status_code == 404  # an exact id only
    assert api.delete(f"{CONFIGS}/no-such-config/backups/{second['backupId']}").status_code == 404
    nothing = bodies.check("POST", PRUNE, api.post(f"{url}/prune"))
    assert nothing["dryRun"] is False and nothing["bytesFreed"] == 0
    assert api.get(f"{url}/backups").json()[0]["backupId"] == second["backupId"]


def test_only_admins_delete_backups_or_prune_and_a_session_needs_the_csrf_header(
    api: Api, viewer: Api, operator: Api, app: Any, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    backup_id = _backup(config, dest)
    url = f"{CONFIGS}/{config['id']}"
    packs = _packs(dest, config["slug"])

    for caller in (viewer, operator):
        refused = caller.delete(f"{url}/backups/{backup_id}")
        assert refused.status_code == 403, refused.text
        assert "admin" in refused.json()["error"]
        assert caller.post(f"{url}/prune").status_code == 403
    browser = TestClient(app)
    login = browser.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    csrf = login.json()["csrfToken"]
    no_header = browser.delete(f"{url}/backups/{backup_id}")
    assert no_header.status_code == 403 and "CSRF" in no_header.json()["error"]
    assert browser.post(f"{url}/prune").status_code == 403
    assert [b["backupId"] for b in api.get(f"{url}/backups").json()] == [backup_id]
    assert _packs(dest, config["slug"]) == packs

    deleted = browser.delete(f"{url}/backups/{backup_id}", headers={"X-CSRF-Token": csrf})
    assert deleted.status_code == 200, deleted.text
    assert api.get(f"{url}/backups").json() == []


def test_a_backup_a_format1_chain_still_needs_is_refused_and_its_newest_deleted(
    api: Api, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    shutil.copytree(FORMAT1 / "sealed", dest / config["slug"])
    base, incremental = sorted(p.name for p in (dest / config["slug"]).iterdir())
    url = f"{CONFIGS}/{config['id']}"

    refused = api.delete(f"{url}/backups/{base}")

    assert refused.status_code == 409, refused.text
    assert incremental in refused.json()["error"] and "require" in refused.json()["error"]
    assert (dest / config["slug"] / base / "backup.json").exists()
    deleted = api.delete(f"{url}/backups/{incremental}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["prune"]["backups"] == 0  # format 1 keeps its own objects
    assert [b["backupId"] for b in api.get(f"{url}/backups").json()] == [base]


def test_a_run_holding_the_lock_refuses_delete_and_prune(
    api: Api, source: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "REQUEST_LOCK_WAIT", 0.5)
    config = api.create_config(config_doc([source], local_destination(dest)))
    backup_id = _backup(config, dest)
    url = f"{CONFIGS}/{config['id']}"
    repo = Repository(LocalStorage(dest), "", config["slug"])

    with RepoLock(repo, "backup"):
        deleted = api.delete(f"{url}/backups/{backup_id}")
        pruned = api.post(f"{url}/prune")

    assert deleted.status_code == 409 and "locked" in deleted.json()["error"]
    assert pruned.status_code == 409 and "locked" in pruned.json()["error"]
    assert [b["backupId"] for b in api.get(f"{url}/backups").json()] == [backup_id]


def test_without_the_key_encrypted_backups_list_with_times_and_sizes_and_prune_is_skipped(
    api: Api,
    make_ctx: Callable[..., AppContext],
    database_url: str,
    source: Path,
    dest: Path,
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest), encryption=True))
    older, newer = _backup(config, dest, KEY), _backup(config, dest, KEY)
    keyless = make_ctx(database_url, backup_encryption_key=None)
    admin = Api(create_app(keyless), keyless, add_user(keyless, "keyless", ADMIN_PASSWORD, "admin"))
    bodies = Bodies(admin.get("/api/openapi.json").json())
    url = f"{CONFIGS}/{config['id']}"

    listed = bodies.check("GET", STORED, admin.get(f"{url}/backups"))

    assert [b["backupId"] for b in listed] == [newer, older]
    for body in listed:
        assert body["encrypted"] is True and body["needsKey"] is True
        assert "damaged" not in body and "BACKUP_ENCRYPTION_KEY" in body["problem"]
        assert body["createdAt"] <= body["completedAt"] and body["storedBytes"] > 0
    with_key = {b["backupId"]: b for b in api.get(f"{url}/backups").json()}
    assert with_key[older]["completedAt"] == listed[1]["completedAt"]
    assert with_key[older]["storedBytes"] == listed[1]["storedBytes"]
    # Forgetting needs no key; prune does (what the other backup references is sealed).
    deleted = bodies.check("DELETE", ONE_BACKUP, admin.delete(f"{url}/backups/{older}"))
    assert deleted["prune"] is None
    assert "BACKUP_ENCRYPTION_KEY" in deleted["pruneSkipped"]
    refused = bodies.check("POST", PRUNE, admin.post(f"{url}/prune"))
    assert refused["error"].startswith("prune deletes nothing")
    assert admin.post(f"{url}/prune").status_code == 409
    assert [b["backupId"] for b in api.get(f"{url}/backups").json()] == [newer]
    assert api.post(f"{url}/prune").json()["backups"] == 1  # with the key it runs
