"""A restore request is checked once (the domain's rules), travels typed to the worker,
and a new folder is chosen by the worker that writes it, not by the web process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from backapp.db.repositories import runs as run_repo
from backapp.domain.restore import EXISTING, RestoreRequest
from backapp.errors import ConfigError
from backapp.services.context import AppContext
from tests.api.conftest import Api, config_doc, local_destination, running_worker
from tests.helpers.trees import restored_root, snapshot


def test_a_restore_without_a_target_goes_under_the_workers_data_dir_not_the_webs(
    api: Api,
    make_ctx: Callable[..., AppContext],
    database_url: str,
    tmp_path: Path,
    source: Path,
    dest: Path,
) -> None:
    # The API's process and the worker's are two machines (compose): two data dirs.
    worker_ctx = make_ctx(database_url, data_dir=tmp_path / "worker-data", shutdown_grace=0)
    config = api.create_config(config_doc([source], local_destination(dest)))
    with running_worker(worker_ctx):
        assert api.wait_for_run(api.execute(config["id"])["id"])["status"] == "completed"
        queued = api.post("/api/backups/restore", json={"configId": config["id"]}).json()
        run = api.wait_for_run(queued["id"])

    assert run["status"] == "completed", run
    target = Path(run["details"]["target"])
    assert target.is_relative_to(tmp_path / "worker-data" / "restores" / "api-test")
    assert snapshot(restored_root(target, source)) == snapshot(source)
    assert not (tmp_path / "data" / "restores").exists()  # the web process's data dir


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inPlace": True}, "existing"),
        ({"inPlace": True, "existing": "refuse"}, "existing"),
        ({"inPlace": True, "target": "/tmp/x", "existing": "skip"}, "target"),
        ({"target": "relative/dir"}, "target"),
    ],
)
def test_the_restore_rules_answer_422_with_the_field(
    api: Api, source: Path, dest: Path, body: dict[str, object], field: str
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    response = api.post("/api/backups/restore", json={"configId": config["id"], **body})
    assert response.status_code == 422, response.text
    assert field in response.text


def test_a_stored_restore_request_round_trips_and_a_damaged_one_fails_its_run_clearly(
    api: Api, ctx: AppContext, source: Path, dest: Path
) -> None:
    for existing in EXISTING:
        asked = RestoreRequest.checked(
            backup_id="b", target="/t", include=["/a", "b*"], existing=existing
        )
        assert RestoreRequest.from_json(asked.to_json()) == asked
    with pytest.raises(ConfigError, match="existing"):
        RestoreRequest.from_json({"backupId": "b", "existing": "clobber"})

    config = api.create_config(config_doc([source], local_destination(dest)))
    with running_worker(ctx):
        assert api.wait_for_run(api.execute(config["id"])["id"])["status"] == "completed"
    target = dest.parent / "restored"
    queued = api.post(
        "/api/backups/restore", json={"configId": config["id"], "target": str(target)}
    ).json()
    with ctx.db.session() as session:  # damaged in the database before a worker reads it
        row = run_repo.get(session, queued["id"])
        assert row is not None and row.status == "queued"
        row.request = {**(row.request or {}), "existing": "clobber"}
    with running_worker(ctx):
        run = api.wait_for_run(queued["id"])
    assert run["status"] == "failed"
    assert "existing" in run["error"] and "Traceback" not in run["error"]
    assert not target.exists()
