"""The OpenAPI document and docs page: every operation declares its bodies, real responses
match them, and a schemathesis run finds no server error and no body the document denies."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from backapp.api.schemas import ConfigOut
from backapp.app import build_context, create_app
from backapp.domain.config import SERVER_FIELDS, BackupConfig
from backapp.services.context import AppContext
from backapp.settings import Settings
from tests.api.conftest import (
    ADMIN_PASSWORD,
    Api,
    add_user,
    bearer,
    config_doc,
    local_destination,
)


def test_the_openapi_document_needs_authentication_and_then_describes_the_api(
    api: Api, anonymous: TestClient
) -> None:
    assert anonymous.get("/api/openapi.json").status_code == 401

    response = api.get("/api/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/api/backups/configs"])
    assert {"get", "patch", "delete"} <= set(paths["/api/backups/configs/{config_id}"])
    assert "post" in paths["/api/backups/execute"]
    assert "get" in paths["/api/backups/logs"]
    assert "get" in paths["/api/backups/stats"]
    limit = next(p for p in paths["/api/backups/logs"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 1000
    schemas = document["components"]["schemas"]
    assert {"name", "enabled", "sources", "destination", "schedule", "options"} <= set(
        schemas["BackupConfig"]["properties"]
    )


def test_the_docs_page_needs_authentication_and_then_loads_the_document(
    api: Api, anonymous: TestClient
) -> None:
    assert anonymous.get("/api/docs").status_code == 401

    response = api.get("/api/docs")

    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/api/openapi.json" in response.text
    # Swagger UI is served from here, not a CDN: the docs work without internet access.
    scripts = re.findall(r'(?:src|href)="(/static/[^"]+)"', response.text)
    assert len(scripts) == 4
    for url in scripts:
        assert api.get(url).status_code == 200


@pytest.fixture
def sqlite_api(make_ctx: Callable[..., AppContext], tmp_path: Path) -> Api:
    """The admin's API on a SQLite database (schemathesis runs on one database, for time)."""
    ctx = make_ctx(f"sqlite:///{tmp_path}/fuzz.db")
    return Api(create_app(ctx), ctx, add_user(ctx, "admin", ADMIN_PASSWORD, "admin"))


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _reachable(document: dict[str, Any], schema: Any, seen: set[str]) -> Iterator[Any]:
    """Yield a schema and every schema below it, following $refs into the components."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref is not None:
            if ref not in seen:
                seen.add(ref)
                name = ref.removeprefix("#/components/schemas/")
                yield from _reachable(document, document["components"]["schemas"][name], seen)
            return
        yield schema
        for value in schema.values():
            yield from _reachable(document, value, seen)
    elif isinstance(schema, list):
        for item in schema:
            yield from _reachable(document, item, seen)


def test_every_operation_declares_its_success_body_and_its_error_body(api: Api) -> None:
    document = api.get("/api/openapi.json").json()

    for method, path, operation in _operations(document):
        where = f"{method} {path}"
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert success, f"{where} declares no success response"
        for code in success:
            content = responses[code].get("content", {})
            if code == "204":
                assert content == {}, f"{where}: a 204 has no body"
            elif "application/octet-stream" in content:
                schema = content["application/octet-stream"]["schema"]
                assert schema == {"type": "string", "format": "binary"}, where
            else:
                schema = content["application/json"]["schema"]
                for part in _reachable(document, schema, set()):
                    assert part != {}, f"{where} {code}: a part of the body is undescribed"
                    if part.get("type") == "object" and "additionalProperties" not in part:
                        assert part.get("properties"), f"{where} {code}: an object without fields"
        if path != "/healthz":
            error = responses["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorOut"}, where
    # FastAPI's own 422 body ({"detail": […]}) is not what the API sends.
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_a_config_exported_from_the_api_names_only_fields_a_config_file_may_carry() -> None:
    added = {f.alias or name for name, f in ConfigOut.model_fields.items()} - {
        f.alias or name for name, f in BackupConfig.model_fields.items()
    }

    assert added <= set(SERVER_FIELDS)


class Bodies:
    """Checks responses against the schema the OpenAPI document declares for them."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, response: Any) -> Any:
        """Given an operation and its response, validate the body; return it decoded."""
        responses = self.document["paths"][path][method.lower()]["responses"]
        status = response.status_code
        code = str(status) if str(status) in responses else f"{status // 100}XX"
        assert code in responses, f"{method} {path} answered an undeclared {status}"
        pointer = "/".join(
            p.replace("~", "~0").replace("/", "~1")
            for p in ("paths", path, method.lower(), "responses", code, "content")
        )
        content = responses[code].get("content", {})
        self.checked.add((method, path, status))
        if status == 204:
            assert content == {} and response.content == b""
            return None
        body = response.json()
        schema = {"$ref": f"urn:openapi#/{pointer}/application~1json/schema"}
        validator = Draft202012Validator(
            schema, registry=self.registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(body)
        ]
        assert not errors, f"{method} {path} ({status}) does not match its schema: {errors}"
        return body


def test_real_responses_match_the_schemas_the_document_declares(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path
) -> None:
    bodies = Bodies(api.get("/api/openapi.json").json())
    configs = "/api/backups/configs"
    one = "/api/backups/configs/{config_id}"
    tree = "/api/backups/configs/{config_id}/backups/{backup_id}/tree"

    config = bodies.check(
        "POST",
        configs,
        api.post(
            configs,
            json=config_doc([source], local_destination(dest), retentionDays=7, type="incremental"),
        ),
    )
    url = f"{configs}/{config['id']}"
    bodies.check("PATCH", one, api.patch(url, json={"options": {"bandwidth": 500}}))
    first = api.wait_for_run(api.execute(config["id"])["id"])
    (source / "docs" / "more.txt").write_text("more\n")
    (source / "link").symlink_to("docs/notes.md")
    run = bodies.check(
        "POST",
        "/api/backups/execute",
        api.post("/api/backups/execute", json={"configId": config["id"]}),
    )
    bodies.check("GET", "/api/backups/logs/{run_id}", api.get(f"/api/backups/logs/{run['id']}"))
    api.wait_for_run(run["id"])
    missing = {**config_doc([tmp_path / "gone"], local_destination(dest)), "name": "Gone"}
    broken = api.create_config(missing)
    api.wait_for_run(api.execute(broken["id"])["id"])
    queued = api.execute(broken["id"])  # cancelled before the worker takes it, or after
    bodies.check(
        "POST",
        "/api/backups/logs/{run_id}/cancel",
        api.post(f"/api/backups/logs/{queued['id']}/cancel"),
    )
    folder = str(source).strip("/")
    for path in ("", folder, f"{folder}/docs", "no/such/folder"):
        bodies.check("GET", tree, api.get(f"{url}/backups/latest/tree", params={"path": path}))
    verify = bodies.check(
        "POST",
        "/api/backups/verify",
        api.post("/api/backups/verify", json={"configId": config["id"], "full": True}),
    )
    restore = bodies.check(
        "POST",
        "/api/backups/restore",
        api.post(
            "/api/backups/restore", json={"configId": config["id"], "target": str(tmp_path / "out")}
        ),
    )
    api.wait_for_run(verify["id"])
    api.wait_for_run(restore["id"])
    marker = next(dest.rglob(f"{first['backupId']}/backup.json"))
    marker.write_text("{damaged")
    for method, path, call in [
        ("GET", configs, lambda: api.get(configs)),
        ("GET", one, lambda: api.get(url)),
        ("GET", one, lambda: api.get(f"{configs}/nope")),
        ("POST", configs, lambda: api.post(configs, json={"name": ""})),
        ("GET", f"{one}/backups", lambda: api.get(f"{url}/backups")),
        ("GET", f"{one}/retention-preview", lambda: api.get(f"{url}/retention-preview")),
        ("GET", "/api/backups/logs", lambda: api.get("/api/backups/logs")),
        ("GET", "/api/backups/stats", lambda: api.get("/api/backups/stats")),
        ("GET", "/api/alerts", lambda: api.get("/api/alerts", params={"status": "all"})),
        ("GET", "/api/auth/me", lambda: api.get("/api/auth/me")),
        ("GET", "/healthz", lambda: api.get("/healthz")),
        (
            "POST",
            "/api/backups/destinations/test",
            lambda: api.post("/api/backups/destinations/test", json=local_destination(dest)),
        ),
        (
            "POST",
            "/api/backups/destinations/test",
            lambda: api.post("/api/backups/destinations/test", json=local_destination(marker)),
        ),
        (
            "POST",
            "/api/auth/login",
            lambda: api.client.post(
                "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            ),
        ),
    ]:
        bodies.check(method, path, call())
    alert = api.get("/api/alerts").json()[0]
    ack = "/api/alerts/{alert_id}/acknowledge"
    bodies.check("POST", ack, api.post(f"/api/alerts/{alert['id']}/acknowledge"))
    bodies.check("POST", ack, api.post(f"/api/alerts/{alert['id']}/acknowledge"))  # 409
    bodies.check("DELETE", one, api.delete(f"{configs}/{broken['id']}"))

    # Every kind of body was seen: each success shape, a damaged backup, errors.
    backups = api.get(f"{url}/backups").json()
    assert any(b.get("damaged") for b in backups) and any("stats" in b for b in backups)
    assert {s for _, _, s in bodies.checked} >= {200, 201, 202, 204, 404, 409, 422}


def _openapi_document() -> dict[str, Any]:
    # The document depends on the code only: an app on a database file that is never
    # connected to is enough to produce it at collection time.
    url = f"sqlite:///{tempfile.gettempdir()}/backapp-openapi-never-opened.db"
    ctx = build_context(Settings(_env_file=None, database_url=url))
    return create_app(ctx).openapi()


# Destination checks are left out: with made-up documents they would write probe files
# into arbitrary local folders and call arbitrary hosts. Their tests are in test_destinations.
schema = schemathesis.openapi.from_dict(_openapi_document()).exclude(
    path="/api/backups/destinations/test"
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_never_answers_with_a_server_error_nor_a_body_it_does_not_document(
    case: Any, sqlite_api: Api
) -> None:
    case.call_and_validate(
        app=sqlite_api.app,
        headers=bearer(sqlite_api.token),
        checks=[not_a_server_error, response_schema_conformance],
    )
