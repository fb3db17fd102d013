"""Restore, verify, browse and download through the API, as restore runs with a log entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backapp.services import configs as config_service
from backapp.services import scheduling
from tests.api.conftest import Api, config_doc, local_destination
from tests.helpers.trees import restored_root, snapshot


def _backed_up(api: Api, source: Path, dest: Path, **options: object) -> tuple[str, dict]:
    config = api.create_config(config_doc([source], local_destination(dest), **options))
    run = api.wait_for_run(api.execute(config["id"])["id"])
    assert run["status"] == "completed", run
    return config["id"], run


def test_restore_to_a_new_folder_is_a_run_with_progress_and_a_log_entry(
    api: Api, worker: object, source: Path, dest: Path
) -> None:
    config_id, backup = _backed_up(api, source, dest, encryption=True)
    response = api.post("/api/backups/restore", json={"configId": config_id})
    assert response.status_code == 202, response.text
    queued = response.json()
    assert (queued["kind"], queued["status"]) == ("restore", "queued")
    run = api.wait_for_run(queued["id"])
    assert run["status"] == "completed", run
    assert run["backupId"] == backup["backupId"]
    target = Path(run["details"]["target"])
    assert target.is_absolute() and "restores" in target.parts
    assert snapshot(restored_root(target, source)) == snapshot(source)
    assert run["filesProcessed"] == 3
    logs = api.get("/api/backups/logs", params={"kind": "restore"}).json()
    assert [r["id"] for r in logs] == [run["id"]]


def test_restore_of_chosen_paths_into_a_given_folder(
    api: Api, worker: object, source: Path, dest: Path, tmp_path: Path
) -> None:
    config_id, _ = _backed_up(api, source, dest)
    target = tmp_path / "picked"
    response = api.post(
        "/api/backups/restore",
        json={
            "configId": config_id,
            "backupId": "latest",
            "target": str(target),
            "paths": [str(source / "docs" / "notes.md")],
        },
    )
    run = api.wait_for_run(response.json()["id"])
    assert run["status"] == "completed", run
    root = restored_root(target, source)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["docs", "docs/notes.md"]


def test_restore_in_place_needs_an_explicit_choice_for_existing_files(
    api: Api, worker: object, source: Path, dest: Path
) -> None:
    config_id, _ = _backed_up(api, source, dest)
    refused = api.post("/api/backups/restore", json={"configId": config_id, "inPlace": True})
    assert refused.status_code == 422
    assert any(p["field"] == "existing" for p in refused.json()["problems"])
    relative = api.post(
        "/api/backups/restore", json={"configId": config_id, "target": "relative/dir"}
    )
    assert relative.status_code == 422
    (source / "docs" / "readme.txt").write_text("changed after the backup\n")
    (source / "docs" / "notes.md").unlink()
    response = api.post(
        "/api/backups/restore",
        json={"configId": config_id, "inPlace": True, "existing": "skip"},
    )
    run = api.wait_for_run(response.json()["id"])
    assert run["status"] == "completed", run
    assert (source / "docs" / "readme.txt").read_text() == "changed after the backup\n"  # kept
    assert (source / "docs" / "notes.md").read_text() == "# notes\n"  # brought back


def test_unknown_backup_is_404_and_restore_needs_admin(
    api: Api, viewer: Api, worker: object, source: Path, dest: Path
) -> None:
    config_id, _ = _backed_up(api, source, dest)
    missing = api.post(
        "/api/backups/restore", json={"configId": config_id, "backupId": "20000101T000000Z-abcdef"}
    )
    assert missing.status_code == 404
    assert viewer.post("/api/backups/restore", json={"configId": config_id}).status_code == 403


def test_verify_passes_on_a_good_backup_and_fails_naming_the_damage(
    api: Api, worker: object, source: Path, dest: Path
) -> None:
    config_id, _ = _backed_up(api, source, dest)
    good = api.post("/api/backups/verify", json={"configId": config_id, "full": True})
    assert good.status_code == 202
    run = api.wait_for_run(good.json()["id"])
    assert run["status"] == "completed", run
    assert run["details"]["status"] == "passed" and run["details"]["mode"] == "full"

    data = max(dest.rglob("packs/*/*"), key=lambda p: p.stat().st_size)  # the data pack
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    data.write_bytes(bytes(raw))
    bad = api.post("/api/backups/verify", json={"configId": config_id, "full": True})
    run = api.wait_for_run(bad.json()["id"])
    assert run["status"] == "failed"
    assert "is damaged" in run["error"]
    assert run["details"]["problems"]
    alerts = api.get("/api/alerts").json()
    assert [a["kind"] for a in alerts] == ["verify_failed"]
    assert alerts[0]["runId"] == run["id"]


def test_browse_a_backup_tree_and_download_one_file(
    api: Api, operator: Api, viewer: Api, worker: object, source: Path, dest: Path
) -> None:
    config_id, backup = _backed_up(api, source, dest, encryption=True)
    base = f"/api/backups/configs/{config_id}/backups/{backup['backupId']}"
    docs_path = str(source / "docs").lstrip("/")
    # A viewer watches runs, alerts and statistics, but reads no backed-up content.
    assert viewer.get(f"{base}/tree").status_code == 403
    denied = viewer.get(f"{base}/file", params={"path": f"{docs_path}/readme.txt"})
    assert denied.status_code == 403 and "operator or admin" in denied.json()["error"]
    assert viewer.get(f"/api/backups/configs/{config_id}/backups").status_code == 200
    viewer = operator
    top = viewer.get(f"{base}/tree").json()
    assert [e["name"] for e in top["entries"]] == [str(source).strip("/").split("/")[0]]
    listing = viewer.get(f"{base}/tree", params={"path": docs_path}).json()
    assert [(e["name"], e["type"], e.get("size")) for e in listing["entries"]] == [
        ("notes.md", "file", 8),
        ("readme.txt", "file", 1400),
    ]
    got = viewer.get(f"{base}/file", params={"path": f"{docs_path}/readme.txt"})
    assert got.status_code == 200
    assert got.content == (source / "docs" / "readme.txt").read_bytes()
    assert "readme.txt" in got.headers["content-disposition"]
    assert viewer.get(f"{base}/tree", params={"path": "no/such"}).status_code == 404
    assert viewer.get(f"{base}/file", params={"path": docs_path}).status_code == 404


def test_scheduled_verification_runs_on_its_own_cron(api: Api, source: Path, dest: Path) -> None:
    config = api.create_config(
        config_doc([source], local_destination(dest), verifySchedule="0 3 * * 0")
    )
    assert config["nextVerifyAt"] is not None
    due = datetime.fromisoformat(config["nextVerifyAt"])
    assert due.astimezone(UTC).weekday() == 6 and due.hour == 3
    with api.ctx.db.session() as session:
        config_service.get(session, config["id"]).next_run_at = due + timedelta(days=1)
    assert scheduling.fire_due(api.ctx, due + timedelta(seconds=1)) == 1
    assert scheduling.fire_due(api.ctx, due + timedelta(seconds=2)) == 0  # once
    runs = api.get("/api/backups/logs", params={"kind": "verify"}).json()
    assert [(r["trigger"], r["status"]) for r in runs] == [("scheduled", "queued")]


def test_downloading_a_hard_link_gives_its_content_under_its_own_name(
    api: Api, worker: object, source: Path, dest: Path
) -> None:
    import os

    os.link(source / "docs" / "notes.md", source / "docs" / "zz-link.md")
    config_id, backup = _backed_up(api, source, dest, encryption=True)
    base = f"/api/backups/configs/{config_id}/backups/{backup['backupId']}"
    link = str(source / "docs" / "zz-link.md").lstrip("/")
    got = api.get(f"{base}/file", params={"path": link})
    assert got.status_code == 200
    assert got.content == b"# notes\n"
    assert "zz-link.md" in got.headers["content-disposition"]
