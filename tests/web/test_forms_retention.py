"""The configuration form's keep-N retention fields: posted, stored, refused, cleared."""

from __future__ import annotations

from typing import Any

from backapp.domain.config import parse_config
from backapp.services.configs import deep_merge
from backapp.web.forms import ConfigForm, errors_by_field, replacement_patch
from tests.web.test_forms import POSTED


def test_keep_fields_become_options_retention_and_come_back() -> None:
    posted = {
        **POSTED,
        "options-keep-daily": "7",
        "options-keep-last": " 3 ",
        "options-keep-yearly": "",
    }

    document, problems = ConfigForm.from_form(posted).without_blank_rows().to_document()

    assert problems == []
    assert document["options"]["retention"] == {"keepLast": 3, "keepDaily": 7}
    assert document["options"]["retentionDays"] == 30
    again = ConfigForm.from_document(parse_config(document).model_dump(mode="json", by_alias=True))
    assert again.keep["keepDaily"] == "7" and again.keep["keepYearly"] == ""
    assert ("options-keep-last", "Keep last", "3") in again.keep_rows()


def test_a_stored_keep_within_days_is_shown_as_the_retention_days() -> None:
    stored: dict[str, Any] = {"options": {"retention": {"keepWithinDays": 14, "keepWeekly": 4}}}
    form = ConfigForm.from_document(stored)
    assert form.retention == "14" and form.keep["keepWeekly"] == "4"


def test_bad_keep_numbers_are_reported_at_their_fields() -> None:
    posted = {**POSTED, "options-keep-daily": "0", "options-keep-hourly": "many"}

    _, problems = ConfigForm.from_form(posted).without_blank_rows().to_document()

    errors = errors_by_field(problems)
    assert errors["options-keep-hourly"] == ["must be a whole number"]
    assert "greater than or equal to 1" in errors["options-keep-daily"][0]


def test_clearing_the_keep_fields_removes_the_rules_from_the_stored_config() -> None:
    kept, _ = ConfigForm.from_form({**POSTED, "options-keep-daily": "7"}).to_document()
    cleared, _ = ConfigForm.from_form(POSTED).to_document()
    merged = deep_merge(kept, replacement_patch(kept, cleared))
    assert parse_config(merged).options.retention is None
