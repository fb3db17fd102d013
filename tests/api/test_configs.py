"""Backup configurations through the API: create, read, deep-merged edits, errors, deletes."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import Api, bearer, config_doc, local_destination

# The specification's curl example, word for word.
SPEC_DOCUMENT: dict[str, Any] = {
    "name": "Test Backup",
    "enabled": True,
    "sources": [{"path": "/data/test"}],
    "destination": {"bucket": "my-bucket", "region": "us-east-1"},
    "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
    "options": {"type": "full", "compression": True, "encryption": False, "retentionDays": 30},
}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _problem_fields(response: Any) -> list[str]:
    return [p["field"] for p in response.json().get("problems", [])]


def test_created_config_has_a_uuid_and_the_schemas_camel_case_fields(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)

    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created["name"] == "Test Backup"
    assert created["enabled"] is True
    assert created["sources"] == [
        {"path": "/data/test", "excludePatterns": [], "includePatterns": []}
    ]
    assert created["destination"]["bucket"] == "my-bucket"
    assert created["destination"]["region"] == "us-east-1"
    assert created["schedule"] == {"cronExpression": "0 2 * * *", "timezone": "UTC"}
    options = created["options"]
    assert options["type"] == "full"
    assert options["compression"] is True
    assert options["compressionLevel"] == 6
    assert options["encryption"] is False
    assert options["retentionDays"] == 30
    assert created["version"] == 1
    assert created["nextRunAt"].endswith("T02:00:00+00:00")
    assert not [k for k in _keys(created) if "_" in k], "every field name is camelCase"


def test_configs_are_listed_and_read_back_as_created(api: Api, source: Path, dest: Path) -> None:
    first = api.create_config(SPEC_DOCUMENT)
    second = api.create_config({**config_doc([source], local_destination(dest)), "name": "Local"})

    listed = api.get("/api/backups/configs")
    assert listed.status_code == 200
    assert {c["id"] for c in listed.json()} == {first["id"], second["id"]}
    for config in (first, second):
        assert api.get(f"/api/backups/configs/{config['id']}").json() == config


def test_two_configs_with_the_same_name_get_distinct_slugs(api: Api) -> None:
    first = api.create_config(SPEC_DOCUMENT)
    second = api.create_config(SPEC_DOCUMENT)

    assert first["slug"] == "test-backup"
    assert second["slug"] != first["slug"]


def test_patch_deep_merges_objects_and_keeps_the_other_options(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)

    response = api.patch(
        f"/api/backups/configs/{created['id']}", json={"options": {"retentionDays": 7}}
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["options"] == {**created["options"], "retentionDays": 7}
    assert updated["sources"] == created["sources"]
    assert updated["destination"] == created["destination"]
    assert updated["version"] == created["version"] + 1
    assert api.get(f"/api/backups/configs/{created['id']}").json() == updated


def test_patch_replaces_lists_instead_of_merging_them(api: Api) -> None:
    created = api.create_config(
        {**SPEC_DOCUMENT, "sources": [{"path": "/data/a"}, {"path": "/data/b"}]}
    )

    response = api.patch(
        f"/api/backups/configs/{created['id']}",
        json={"sources": [{"path": "/data/c", "excludePatterns": ["*.tmp"]}]},
    )

    assert response.status_code == 200, response.text
    assert response.json()["sources"] == [
        {"path": "/data/c", "excludePatterns": ["*.tmp"], "includePatterns": []}
    ]


def test_patch_with_null_removes_an_optional_field(api: Api) -> None:
    created = api.create_config(
        {**SPEC_DOCUMENT, "destination": {**SPEC_DOCUMENT["destination"], "prefix": "p"}}
    )
    config_url = f"/api/backups/configs/{created['id']}"

    response = api.patch(config_url, json={"options": {"retentionDays": None}})

    assert response.status_code == 200, response.text
    assert "retentionDays" not in response.json()["options"]
    assert response.json()["options"]["compression"] is True


def test_patch_with_null_on_a_required_field_is_refused_with_its_path(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)

    response = api.patch(f"/api/backups/configs/{created['id']}", json={"schedule": None})

    assert response.status_code == 422
    assert "schedule" in _problem_fields(response)


def test_patch_that_breaks_the_schema_is_refused_and_changes_nothing(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)
    config_url = f"/api/backups/configs/{created['id']}"

    response = api.patch(
        config_url,
        json={"options": {"compressionLevel": 12}, "schedule": {"cronExpression": "every day"}},
    )

    assert response.status_code == 422
    fields = _problem_fields(response)
    assert "options.compressionLevel" in fields
    assert "schedule.cronExpression" in fields
    assert all(p["message"] for p in response.json()["problems"])
    assert api.get(config_url).json() == created


def test_invalid_documents_list_every_field_path_with_a_message(api: Api) -> None:
    document = {
        **SPEC_DOCUMENT,
        "sources": [{"path": "relative/path"}],
        "destination": {"bucket": "Not_A_Bucket", "region": "us-east-1"},
        "options": {**SPEC_DOCUMENT["options"], "compressionLevel": 0},
    }

    response = api.post("/api/backups/configs", json=document)

    assert response.status_code == 422
    fields = _problem_fields(response)
    assert {"sources[0].path", "destination.bucket", "options.compressionLevel"} <= set(fields)
    assert "compressionLevel" in response.json()["error"]


def test_an_unknown_destination_type_is_named_with_the_known_ones(api: Api) -> None:
    document = {**SPEC_DOCUMENT, "destination": {"type": "ftp", "host": "example.com"}}

    response = api.post("/api/backups/configs", json=document)

    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"field": "destination", "message": "unknown type 'ftp': use one of 's3', 'local'"}
    ]


def test_missing_required_fields_are_named(api: Api) -> None:
    document = {k: v for k, v in SPEC_DOCUMENT.items() if k not in ("name", "schedule")}

    response = api.post("/api/backups/configs", json=document)

    assert response.status_code == 422
    assert {"name", "schedule"} <= set(_problem_fields(response))


def test_unknown_fields_are_rejected_by_name(api: Api) -> None:
    response = api.post("/api/backups/configs", json={**SPEC_DOCUMENT, "colour": "blue"})
    assert response.status_code == 422
    assert "colour" in _problem_fields(response)

    created = api.create_config(SPEC_DOCUMENT)
    response = api.patch(f"/api/backups/configs/{created['id']}", json={"options": {"speed": 3}})
    assert response.status_code == 422
    assert "options.speed" in _problem_fields(response)


def test_a_body_that_is_not_json_is_a_422(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)
    headers = {"Content-Type": "application/json"}

    for method, url in (
        ("POST", "/api/backups/configs"),
        ("PATCH", f"/api/backups/configs/{created['id']}"),
    ):
        response = api.client.request(method, url, content=b'{"name": ', headers=headers)
        assert response.status_code == 422, (method, response.text)
        assert "JSON" in response.json()["error"]


def test_a_patch_body_that_is_not_an_object_is_a_422(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)

    response = api.patch(f"/api/backups/configs/{created['id']}", json=["name"])

    assert response.status_code == 422


def test_unknown_config_ids_are_404_on_every_config_route(api: Api) -> None:
    missing = str(uuid.uuid4())
    url = f"/api/backups/configs/{missing}"

    assert api.get(url).status_code == 404
    assert api.patch(url, json={"enabled": False}).status_code == 404
    assert api.delete(url).status_code == 404
    assert api.get(f"{url}/backups").status_code == 404
    assert missing in api.get(url).json()["error"]


def test_a_deleted_config_is_gone(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)
    url = f"/api/backups/configs/{created['id']}"

    response = api.delete(url)

    assert response.status_code == 204
    assert response.content == b""
    assert api.get(url).status_code == 404
    assert api.delete(url).status_code == 404
    assert api.get("/api/backups/configs").json() == []


def test_a_config_with_runs_can_be_deleted_and_its_runs_stay_readable(
    api: Api, worker: Any, source: Path, dest: Path
) -> None:
    created = api.create_config(config_doc([source], local_destination(dest)))
    run = api.wait_for_run(api.execute(created["id"])["id"])
    assert run["status"] == "completed"

    assert api.delete(f"/api/backups/configs/{created['id']}").status_code == 204

    kept = api.run(run["id"])
    assert kept["configDeleted"] is True
    assert kept["configName"] == "API Test"
    assert kept["status"] == "completed"
    assert kept["backupId"] == run["backupId"]
    logs = api.get("/api/backups/logs", params={"configId": created["id"]}).json()
    assert [r["id"] for r in logs] == [run["id"]]
    assert logs[0]["configDeleted"] is True


def test_if_match_with_a_stale_version_is_a_409_and_the_current_one_succeeds(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)
    url = f"/api/backups/configs/{created['id']}"
    assert api.patch(url, json={"name": "Renamed"}).status_code == 200

    stale = api.patch(url, json={"enabled": False}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert "version" in stale.json()["error"]
    assert api.get(url).json()["enabled"] is True

    current = api.patch(url, json={"enabled": False}, headers={"If-Match": '"2"'})
    assert current.status_code == 200, current.text
    assert current.json()["enabled"] is False
    assert current.json()["version"] == 3

    assert api.patch(url, json={}, headers={"If-Match": "yesterday"}).status_code == 422


def test_concurrent_patches_of_different_fields_lose_no_update(api: Api) -> None:
    created = api.create_config(SPEC_DOCUMENT)
    url = f"/api/backups/configs/{created['id']}"
    rounds = 15
    failures: list[str] = []

    def edit(make_patch: Any) -> None:
        with TestClient(api.app, headers=bearer(api.token)) as client:
            for i in range(1, rounds + 1):
                response = client.patch(url, json=make_patch(i))
                if response.status_code != 200:
                    failures.append(response.text)

    threads = [
        threading.Thread(target=edit, args=(lambda i: {"options": {"retentionDays": i}},)),
        threading.Thread(target=edit, args=(lambda i: {"destination": {"prefix": f"p{i}"}},)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    final = api.get(url).json()
    assert final["options"]["retentionDays"] == rounds
    assert final["destination"]["prefix"] == f"p{rounds}"
    assert final["version"] == 1 + 2 * rounds


def test_a_lone_surrogate_or_too_many_sources_is_422_and_listing_keeps_working(
    api: Api, source: Path, dest: Path
) -> None:
    bad_path = config_doc([source], local_destination(dest))
    bad_path["sources"] = [{"path": "/data/caf\udce9"}]
    raw = json.dumps(bad_path)  # the escape "\\udce9", as any JSON client may send it
    refused = api.client.post(
        "/api/backups/configs",
        content=raw,
        headers={**bearer(api.token), "Content-Type": "application/json"},
    )
    assert refused.status_code == 422
    assert [p["field"] for p in refused.json()["problems"]] == ["sources[0].path"]
    many = config_doc([source], local_destination(dest))
    many["sources"] = [{"path": f"/data/{i}"} for i in range(10_000)]
    refused = api.post("/api/backups/configs", json=many)
    assert refused.status_code == 422 and "at most 100" in refused.text
    assert api.get("/api/backups/configs").status_code == 200


def test_a_body_beyond_a_megabyte_is_413_before_it_is_read(api: Api) -> None:
    huge = {"name": "x" * (10 * 1024 * 1024)}
    response = api.post("/api/backups/configs", json=huge)
    assert response.status_code == 413
    assert "at most 1048576 bytes" in response.json()["error"]
