"""Notification targets through the API: added, listed masked, edited, tested, removed;
alerts resolve on a later success and can all be acknowledged at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api.conftest import Api, config_doc, local_destination
from tests.helpers.sinks import smtp_sink, wait_until, webhook_sink

TARGETS = "/api/notifications/targets"


def test_an_admin_adds_edits_tests_and_removes_a_target_whose_url_stays_secret(
    api: Api, viewer: Api
) -> None:
    with smtp_sink(password="hunter2-pw") as smtp:
        response = api.post(TARGETS, json={"url": smtp.url, "label": "ops mail"})
        assert response.status_code == 201, response.text
        target = response.json()
        assert target["source"] == "settings" and target["label"] == "ops mail"
        assert target["events"] == ["failure", "recovered", "missed"]
        assert target["url"].startswith("mailto://backapp:****@127.0.0.1")
        listed = api.get(TARGETS)
        assert "hunter2-pw" not in listed.text and "hunter2-pw" not in response.text
        assert [t["id"] for t in listed.json()] == [target["id"]]
        assert viewer.get(TARGETS).json() == listed.json()  # masked: a viewer reads them too
        assert viewer.post(TARGETS, json={"url": smtp.url}).status_code == 403
        assert viewer.post(f"{TARGETS}/{target['id']}/test").status_code == 403

        tested = api.post(f"{TARGETS}/{target['id']}/test")
        assert tested.status_code == 200, tested.text
        assert tested.json() == {"delivered": True, "target": target["url"]}
        wait_until(lambda: smtp.mails, 5, "the test email")
        assert "test message" in smtp.texts()[0]

        edited = api.patch(
            f"{TARGETS}/{target['id']}", json={"url": target["url"], "events": ["success"]}
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["events"] == ["success"]
        assert edited.json()["addedAt"] == target["addedAt"]  # the masked URL kept it
        assert api.delete(f"{TARGETS}/{target['id']}").status_code == 204
        assert api.get(TARGETS).json() == []


def test_an_invalid_url_is_refused_without_being_echoed_and_a_dead_one_fails_its_test(
    api: Api,
) -> None:
    refused = api.post(TARGETS, json={"url": "nosuch://user:hunter2@host"})
    assert refused.status_code == 422
    assert "hunter2" not in refused.text
    dead = api.post(TARGETS, json={"url": "json://127.0.0.1:9/hook?token=hunter2"}).json()
    failed = api.post(f"{TARGETS}/{dead['id']}/test")
    assert failed.status_code == 502
    assert "hunter2" not in failed.text and "could not deliver" in failed.json()["error"]


def test_a_configs_notification_urls_come_back_masked(api: Api, tmp_path: Path) -> None:
    url = "json://user:hunter2@127.0.0.1:9/hook"
    doc = config_doc([tmp_path / "src"], local_destination(tmp_path / "dest"))
    doc["options"]["notify"] = {"urls": [url], "on": ["failure"]}
    created = api.create_config(doc)
    assert "hunter2" not in json.dumps(created)
    again = api.get(f"/api/backups/configs/{created['id']}").json()
    assert again["options"]["notify"]["urls"] == ["json://user:****@127.0.0.1:9/hook"]
    (target,) = api.get(TARGETS).json()
    assert target["source"] == "config" and target["configId"] == created["id"]
    # Sending the document back as it came keeps the target; its own URL can't be edited here.
    patched = api.patch(f"/api/backups/configs/{created['id']}", json={"options": again["options"]})
    assert patched.status_code == 200, patched.text
    assert api.get(TARGETS).json() == [target]
    assert api.delete(f"{TARGETS}/{target['id']}").status_code == 422
    # A copy of the document elsewhere has only the masked URL: refused, not stored broken.
    fields = ("enabled", "sources", "destination", "schedule", "options")
    copy = {k: again[k] for k in fields} | {"name": "Copy"}
    masked = api.post("/api/backups/configs", json=copy)
    assert masked.status_code == 422 and "masked URL" in masked.text
    bad = {"options": {"notify": {"urls": ["nosuch://x:hunter2@y"]}}}
    refused = api.patch(f"/api/backups/configs/{created['id']}", json=bad)
    assert refused.status_code == 422 and "hunter2" not in refused.text
    assert "options.notify.urls[0]" in refused.text


def test_a_later_success_resolves_the_failure_alert_and_acknowledge_all_closes_the_rest(
    api: Api, operator: Api, worker: Any, tmp_path: Path, dest: Path
) -> None:
    source = tmp_path / "later"
    with webhook_sink() as hook:
        api.post(TARGETS, json={"url": hook.url, "events": ["failure", "recovered", "success"]})
        config = api.create_config(
            {**config_doc([source], local_destination(dest)), "name": "Later"}
        )
        other = api.create_config(
            {**config_doc([tmp_path / "never"], local_destination(dest)), "name": "Never"}
        )
        failed = api.wait_for_run(api.execute(config["id"])["id"])
        api.wait_for_run(api.execute(other["id"])["id"])
        assert failed["status"] == "failed"
        source.mkdir()
        (source / "a.txt").write_text("a")
        done = api.wait_for_run(api.execute(config["id"])["id"])
        assert done["status"] == "completed"
        wait_until(lambda: len(hook.received) >= 4, 15, "four notifications")
        titles = [r["title"] for r in hook.received]
    assert sorted(titles) == sorted(
        [
            "BackApp: Backup of 'Later' failed",
            "BackApp: Backup of 'Never' failed",
            "BackApp: Backup of 'Later' recovered",
            "BackApp: Backup of 'Later' completed",
        ]
    )
    everything = api.get("/api/alerts", params={"status": "all"}).json()
    (resolved,) = [a for a in everything if a["configName"] == "Later"]
    assert resolved["resolved"] is True and resolved["resolvedByRunId"] == done["id"]
    assert resolved["acknowledged"] is False
    assert [a["configName"] for a in api.get("/api/alerts").json()] == ["Never"]
    assert api.get("/api/backups/stats").json()["openAlerts"] == 1
    closed = operator.post("/api/alerts/acknowledge-all")
    assert closed.status_code == 200 and closed.json() == {"acknowledged": 1}
    assert api.get("/api/alerts").json() == []
