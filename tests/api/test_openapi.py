"""The OpenAPI document and docs page, and a schemathesis run that must find no server error."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from backapp.app import build_context, create_app
from backapp.services.context import AppContext
from backapp.settings import Settings
from tests.api.conftest import ADMIN_PASSWORD, Api, add_user, bearer


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


def _openapi_document() -> dict[str, Any]:
    # The document depends on the code only: an app on an in-memory database (never
    # connected to) is enough to produce it at collection time.
    ctx = build_context(Settings(_env_file=None, database_url="sqlite://"))
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
def test_the_api_never_answers_with_a_server_error(case: Any, sqlite_api: Api) -> None:
    case.call_and_validate(
        app=sqlite_api.app, headers=bearer(sqlite_api.token), checks=[not_a_server_error]
    )
