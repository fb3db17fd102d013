"""The configuration form: posted fields to a document and back, and errors to their fields."""

from __future__ import annotations

from typing import Any

import pytest

from backapp.domain.config import parse_config
from backapp.errors import ConfigError
from backapp.services.configs import deep_merge
from backapp.web.forms import (
    ConfigForm,
    errors_by_field,
    field_for,
    label_for,
    parse_destination,
    replacement_patch,
)

POSTED: dict[str, Any] = {
    "name": " Photos ",
    "enabled": "on",
    "sources-0-path": "/home/me/photos",
    "sources-0-include": "",
    "sources-0-exclude": "*.tmp\n\n cache/ \n",
    "sources-3-path": "/srv/music",
    "dest-type": "s3",
    "dest-bucket": "my-backups",
    "dest-region": "eu-west-3",
    "dest-endpoint": "",
    "dest-path": "/typed/before/switching",
    "dest-prefix": "home",
    "schedule-cron": "0 2 * * *",
    "schedule-timezone": "Europe/Paris",
    "options-type": "incremental",
    "options-compression": "on",
    "options-level": "3",
    "options-algorithm": "zstd",
    "options-retention": "30",
    "options-bandwidth": "",
    "options-full-every": "7",
    "options-verify": "",
}


def test_a_posted_form_becomes_the_documented_config_document() -> None:
    document, problems = ConfigForm.from_form(POSTED).to_document()
    assert problems == []
    assert document == {
        "name": "Photos",
        "enabled": True,
        "sources": [
            {
                "path": "/home/me/photos",
                "includePatterns": [],
                "excludePatterns": ["*.tmp", "cache/"],
            },
            {"path": "/srv/music", "includePatterns": [], "excludePatterns": []},
        ],
        "destination": {
            "type": "s3",
            "bucket": "my-backups",
            "region": "eu-west-3",
            "prefix": "home",
        },
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "Europe/Paris"},
        "options": {
            "type": "incremental",
            "compression": True,
            "compressionAlgorithm": "zstd",
            "encryption": False,
            "compressionLevel": 3,
            "retentionDays": 30,
            "fullEvery": 7,
        },
    }


def test_a_stored_document_fills_the_form_that_gives_it_back() -> None:
    document, _ = ConfigForm.from_form(POSTED).to_document()
    stored = parse_config(document, strict=True).to_json_dict()
    again, problems = ConfigForm.from_document(stored, version=4).to_document()
    assert problems == []
    assert parse_config(again, strict=True).to_json_dict() == stored
    assert ConfigForm.from_document(stored, version=4).version == "4"


def test_every_problem_is_reported_at_once_and_tied_to_its_field() -> None:
    posted = {
        **POSTED,
        "name": "",
        "sources-3-path": "relative/path",
        "dest-bucket": "No_Such Bucket",
        "schedule-cron": "61 * * * *",
        "options-level": "twelve",
        "options-retention": "0",
    }
    form = ConfigForm.from_form(posted)
    _, problems = form.to_document()
    errors = errors_by_field(problems)
    assert set(errors) == {
        "name",
        "sources-1-path",
        "dest-bucket",
        "schedule-cron",
        "options-level",
        "options-retention",
    }
    assert "whole number" in errors["options-level"][0]
    assert "absolute path" in errors["sources-1-path"][0]
    # Nothing typed is lost: the form still holds it all.
    assert form.sources[1].path == "relative/path"
    assert form.level == "twelve"
    assert form.local_path == "/typed/before/switching"


def test_blank_source_rows_are_dropped_before_validation_so_indices_match_the_rows() -> None:
    posted = {
        **POSTED,
        "sources-0-path": "",
        "sources-0-exclude": "",
        "sources-3-path": "nope",
    }
    form = ConfigForm.from_form(posted).without_blank_rows()
    _, problems = form.to_document()
    assert [p for p, _ in problems] == ["sources[0].path"]
    assert form.sources[0].path == "nope"


def test_no_source_at_all_points_at_the_first_row() -> None:
    posted = {k: v for k, v in POSTED.items() if not k.startswith("sources-")}
    form = ConfigForm.from_form(posted).without_blank_rows()
    _, problems = form.to_document()
    assert errors_by_field(problems)["sources-0-path"]
    assert len(form.sources) == 1


@pytest.mark.parametrize(
    ("action", "paths"),
    [
        ("add-source", ["/home/me/photos", "/srv/music", ""]),
        ("remove-source-0", ["/srv/music"]),
        ("remove-source-9", ["/home/me/photos", "/srv/music"]),
    ],
)
def test_row_buttons_work_without_the_page_script(action: str, paths: list[str]) -> None:
    form = ConfigForm.from_form(POSTED)
    assert form.apply_row_action(action)
    assert [s.path for s in form.sources] == paths
    assert not ConfigForm.from_form(POSTED).apply_row_action("save")


def test_error_paths_map_to_fields_and_labels() -> None:
    assert field_for("sources[2].excludePatterns") == "sources-2-exclude"
    assert field_for("sources[0]") == "sources-0-path"
    assert field_for("destination") == "dest-type"
    assert field_for("options.compressionLevel") == "options-level"
    assert field_for("(document)") == ""
    assert label_for("sources-2-exclude") == "Source 3 exclude patterns"
    assert label_for("dest-bucket") == "Bucket"


def test_a_replacement_patch_turns_the_stored_document_into_the_new_one() -> None:
    old, _ = ConfigForm.from_form(POSTED).to_document()
    local = {**POSTED, "dest-type": "local", "options-retention": "", "sources-3-path": ""}
    new, problems = ConfigForm.from_form(local).without_blank_rows().to_document()
    assert problems == []
    patch = replacement_patch(old, new)
    assert patch["destination"]["bucket"] is None
    assert patch["options"]["retentionDays"] is None
    assert deep_merge(old, patch) == new


def test_a_destination_is_checked_on_its_own() -> None:
    form = ConfigForm.from_form({**POSTED, "dest-type": "local", "dest-path": "/srv/backups"})
    assert parse_destination(form.destination_document()).type == "local"
    with pytest.raises(ConfigError) as caught:
        parse_destination({"type": "s3", "bucket": "x", "region": "eu-west-3"})
    assert caught.value.problems[0][0] == "destination.bucket"
    assert "Bucket:" in caught.value.message
