"""The backup configuration document and its schedule: what is accepted, what is refused, how."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backapp.domain.config import (
    LocalDestination,
    S3Destination,
    check_slug,
    load_config_file,
    parse_config,
    slugify,
)
from backapp.domain.schedule import Schedule
from backapp.errors import ConfigError

# The document of the specification's "API Testing" section.
EXAMPLE: dict[str, Any] = {
    "name": "Test Backup",
    "enabled": True,
    "sources": [{"path": "/data/test"}],
    "destination": {"bucket": "my-bucket", "region": "us-east-1"},
    "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
    "options": {"type": "full", "compression": True, "encryption": False, "retentionDays": 30},
}


def example(**sections: Any) -> dict[str, Any]:
    """Return the example document with the given top-level sections merged in."""
    document = copy.deepcopy(EXAMPLE)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return document


def example_replacing(**sections: Any) -> dict[str, Any]:
    """Return the example document with the given top-level sections replaced whole."""
    return {**copy.deepcopy(EXAMPLE), **sections}


def problem_paths(document: Any) -> list[str]:
    """Given an invalid document, return the field paths that parse_config reports."""
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    paths = [path for path, _ in caught.value.problems]
    for path in paths:
        assert f"{path}: " in str(caught.value)  # the message names every field too
    return paths


def problem_message(document: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    return str(caught.value)


def assert_contains(document: Any, part: Any) -> None:
    """Assert every field of part appears in document with the same value."""
    if isinstance(part, dict):
        for key, value in part.items():
            assert key in document
            assert_contains(document[key], value)
    elif isinstance(part, list):
        assert len(document) == len(part)
        for item, expected in zip(document, part, strict=True):
            assert_contains(item, expected)
    else:
        assert document == part


def all_keys(document: Any) -> list[str]:
    if isinstance(document, dict):
        return [*document, *(k for v in document.values() for k in all_keys(v))]
    if isinstance(document, list):
        return [k for v in document for k in all_keys(v)]
    return []


# --- the document ---------------------------------------------------------------------


def test_the_specification_example_round_trips_as_camel_case_json() -> None:
    config = parse_config(EXAMPLE)

    document = config.to_json_dict()

    assert_contains(document, EXAMPLE)
    assert all("_" not in key for key in all_keys(document))
    assert document["options"]["compressionLevel"] == 6
    assert parse_config(json.loads(json.dumps(document))) == config


@given(
    name=st.text(min_size=1, max_size=50).filter(
        lambda s: s.strip() and all(ord(c) >= 32 for c in s)
    ),
    level=st.integers(1, 9),
    retention=st.none() | st.integers(1, 3650),
    prefix=st.sampled_from(["", "backups", "team/nightly"]),
    local=st.booleans(),
)
def test_any_valid_config_round_trips_through_its_json(
    name: str, level: int, retention: int | None, prefix: str, local: bool
) -> None:
    destination = (
        {"type": "local", "path": "/mnt/backups", "prefix": prefix}
        if local
        else {"bucket": "my-bucket", "region": "eu-west-3", "prefix": prefix}
    )
    options = {**EXAMPLE["options"], "compressionLevel": level, "retentionDays": retention}
    document = example_replacing(name=name, destination=destination, options=options)
    config = parse_config(document)

    assert parse_config(json.loads(json.dumps(config.to_json_dict()))) == config


def test_destination_type_defaults_to_s3() -> None:
    config = parse_config(EXAMPLE)

    assert isinstance(config.destination, S3Destination)
    assert config.destination.type == "s3"
    assert config.to_json_dict()["destination"]["type"] == "s3"


def test_local_destination_is_a_path() -> None:
    config = parse_config(example_replacing(destination={"type": "local", "path": "/mnt/backups"}))

    assert isinstance(config.destination, LocalDestination)
    assert config.destination.path == "/mnt/backups"


def test_local_destination_without_a_path_is_refused() -> None:
    assert problem_paths(example_replacing(destination={"type": "local"})) == ["destination.path"]


def test_local_destination_with_a_bucket_is_refused() -> None:
    document = example_replacing(
        destination={"type": "local", "path": "/mnt/backups", "bucket": "my-bucket"}
    )

    assert problem_paths(document) == ["destination.bucket"]


def test_local_destination_with_a_relative_path_is_refused() -> None:
    document = example_replacing(destination={"type": "local", "path": "backups"})

    assert problem_paths(document) == ["destination.path"]


def test_relative_source_path_is_reported_at_its_index() -> None:
    document = example(sources=[{"path": "/data/ok"}, {"path": "data/test"}])

    assert problem_paths(document) == ["sources[1].path"]
    assert "absolute path" in problem_message(document)


def test_bad_bucket_is_reported_at_destination_bucket() -> None:
    assert problem_paths(example(destination={"bucket": "My_Bucket"})) == ["destination.bucket"]


@pytest.mark.parametrize("level", [0, 10, -1])
def test_compression_level_outside_1_to_9_is_reported_at_options_compression_level(
    level: int,
) -> None:
    document = example(options={"compressionLevel": level})

    assert problem_paths(document) == ["options.compressionLevel"]


@given(level=st.integers(1, 9))
def test_compression_levels_1_to_9_are_accepted(level: int) -> None:
    config = parse_config(example(options={"compressionLevel": level}))

    assert config.options.compression_level == level


def test_bad_cron_expression_is_reported_at_schedule_cron_expression() -> None:
    document = example(schedule={"cronExpression": "every night"})

    assert problem_paths(document) == ["schedule.cronExpression"]


def test_bad_verify_schedule_is_reported_at_options_verify_schedule() -> None:
    document = example(options={"verifySchedule": "61 * * * *"})

    assert problem_paths(document) == ["options.verifySchedule"]


def test_unknown_timezone_is_reported_at_schedule_timezone() -> None:
    document = example(schedule={"timezone": "Mars/Olympus"})

    assert problem_paths(document) == ["schedule.timezone"]
    assert "Mars/Olympus" in problem_message(document)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (None, "colour"),
        ("destination", "destination.colour"),
        ("schedule", "schedule.colour"),
        ("options", "options.colour"),
    ],
)
def test_unknown_fields_are_refused_with_their_path(section: str | None, expected: str) -> None:
    document = example(colour="red") if section is None else example(**{section: {"colour": 1}})

    assert problem_paths(document) == [expected]


def test_unknown_field_in_a_source_is_refused_with_its_index() -> None:
    document = example(sources=[{"path": "/data/test", "colour": "red"}])

    assert problem_paths(document) == ["sources[0].colour"]


def test_sources_need_at_least_one_entry() -> None:
    assert problem_paths(example(sources=[])) == ["sources"]


def test_every_problem_is_reported_at_once() -> None:
    document = example(
        sources=[{"path": "relative"}],
        destination={"bucket": "x"},
        options={"compressionLevel": 10},
    )

    assert sorted(problem_paths(document)) == [
        "destination.bucket",
        "options.compressionLevel",
        "sources[0].path",
    ]


# --- bucket names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bucket",
    [
        "ab",
        "a" * 64,
        "MyBucket",
        "my_bucket",
        "192.168.1.1",
        "my..bucket",
        "xn--bucket",
        "my-bucket-s3alias",
        "-bucket",
        "bucket-",
        "",
    ],
)
def test_bucket_names_s3_refuses_are_refused(bucket: str) -> None:
    assert problem_paths(example(destination={"bucket": bucket})) == ["destination.bucket"]


@pytest.mark.parametrize("bucket", ["my-bucket.example", "abc", "a" * 63, "backups-2024"])
def test_bucket_names_s3_allows_are_accepted(bucket: str) -> None:
    config = parse_config(example(destination={"bucket": bucket}))

    assert isinstance(config.destination, S3Destination)
    assert config.destination.bucket == bucket


# --- cron and timezones ---------------------------------------------------------------


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/10 * * * * *", "30 0 2 * * MON-FRI"])
def test_five_fields_or_six_with_leading_seconds_are_accepted(expression: str) -> None:
    config = parse_config(example(schedule={"cronExpression": expression}))

    assert config.schedule.cron_expression == expression


@pytest.mark.parametrize("expression", ["* * * *", "0 0 2 * * * *", "61 * * * *", "@daily"])
def test_other_cron_expressions_are_refused(expression: str) -> None:
    document = example(schedule={"cronExpression": expression})

    assert problem_paths(document) == ["schedule.cronExpression"]


def test_field_count_is_named_when_it_is_wrong() -> None:
    message = problem_message(example(schedule={"cronExpression": "* * * *"}))

    assert "5 fields" in message
    assert "got 4" in message


def test_six_field_schedule_fires_every_ten_seconds() -> None:
    schedule = Schedule("*/10 * * * * *", "UTC")

    fires = list(islice(schedule.fire_times(datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)), 6))

    assert fires[0] == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert all(b - a == timedelta(seconds=10) for a, b in pairwise(fires))


def test_the_sixth_field_is_seconds_first_not_last() -> None:
    schedule = Schedule("30 0 2 * * *", "UTC")

    assert schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2026, 1, 1, 2, 0, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Winter: Paris is UTC+1.
        (datetime(2026, 1, 14, 12, tzinfo=UTC), datetime(2026, 1, 15, 1, tzinfo=UTC)),
        # Summer: Paris is UTC+2.
        (datetime(2026, 7, 14, 12, tzinfo=UTC), datetime(2026, 7, 15, 0, tzinfo=UTC)),
    ],
)
def test_daily_schedule_fires_at_two_in_the_morning_paris_time(
    after: datetime, expected: datetime
) -> None:
    schedule = Schedule("0 2 * * *", "Europe/Paris")

    assert schedule.next_after(after) == expected


def test_daily_schedule_skipped_by_spring_forward_fires_once_at_the_shifted_instant() -> None:
    schedule = Schedule("30 2 * * *", "Europe/Paris")

    fires = list(islice(schedule.fire_times(datetime(2026, 3, 28, 12, tzinfo=UTC)), 2))

    # 02:30 does not exist on 29 March 2026; it fires at 03:00 CEST (01:00 UTC).
    assert fires == [
        datetime(2026, 3, 29, 1, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]


def test_daily_schedule_repeated_by_fall_back_fires_once() -> None:
    schedule = Schedule("0 2 * * *", "Europe/Paris")

    fires = list(islice(schedule.fire_times(datetime(2026, 10, 24, 12, tzinfo=UTC)), 2))

    # 02:00 happens twice on 25 October 2026 (CEST, then CET); the backup runs once.
    assert fires == [datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 26, 1, tzinfo=UTC)]


def test_next_run_after_the_first_of_a_repeated_hour_is_the_next_day() -> None:
    schedule = Schedule("0 2 * * *", "Europe/Paris")
    first_run = datetime(2026, 10, 25, 0, tzinfo=UTC)  # 02:00 CEST

    assert schedule.next_after(first_run + timedelta(seconds=1)) == datetime(
        2026, 10, 26, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "", " UTC", "/etc/localtime", "../usr/share/zoneinfo/UTC"]
)
def test_names_that_are_not_iana_timezones_are_refused(timezone: str) -> None:
    assert problem_paths(example(schedule={"timezone": timezone})) == ["schedule.timezone"]


@pytest.mark.parametrize("timezone", ["America/New_York", "Europe/Paris", "UTC"])
def test_iana_timezones_are_accepted(timezone: str) -> None:
    config = parse_config(example(schedule={"timezone": timezone}))

    assert config.schedule.timezone == timezone


# --- config files ---------------------------------------------------------------------


def test_missing_config_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "nightly.json"

    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config_file(path)


def test_invalid_json_is_reported_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "nightly.json"
    path.write_text('{\n  "name": "Nightly",\n  enabled: true\n}\n', encoding="utf-8")

    with pytest.raises(ConfigError, match=r"not valid JSON.*line 3 column 3"):
        load_config_file(path)


def test_config_exported_from_the_api_loads_without_its_server_fields(tmp_path: Path) -> None:
    exported = {
        "id": "0b7f3c2e-6a43-4d8e-9a51-3e2f0f7c1d11",
        "createdAt": "2026-01-01T10:00:00Z",
        "updatedAt": "2026-01-02T10:00:00Z",
        "version": 3,
        "nextRunAt": "2026-01-03T02:00:00Z",
        "nextVerifyAt": None,
        "slug": "test-backup-2",
        **EXAMPLE,
    }
    path = tmp_path / "nightly.json"
    path.write_text(json.dumps(exported), encoding="utf-8")

    loaded = load_config_file(path)

    assert loaded.document == parse_config(EXAMPLE)
    assert "id" not in loaded.document.to_json_dict()
    # The server's identity of the config is kept: its folder is not derived from its name.
    assert (loaded.slug, loaded.config_id) == ("test-backup-2", exported["id"])


@pytest.mark.parametrize("slug", ["", "../other", "Caps", "a--b", "-a", 7])
def test_a_config_file_with_a_slug_backapp_never_makes_is_refused(
    tmp_path: Path, slug: object
) -> None:
    path = tmp_path / "nightly.json"
    path.write_text(json.dumps({**EXAMPLE, "slug": slug}), encoding="utf-8")
    with pytest.raises(ConfigError, match="slug") as caught:
        load_config_file(path)
    assert caught.value.problems[0][0] == "slug"


def test_config_file_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "nightly.json"
    path.write_text(json.dumps(example(options={"compressionLevel": 10})), encoding="utf-8")

    with pytest.raises(ConfigError, match=r"options\.compressionLevel"):
        load_config_file(path)


# --- storage folder names -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Nightly DB Backup", "nightly-db-backup"),
        ("  Photos / 2024 (RAW)  ", "photos-2024-raw"),
        ("!!!", "backup"),
    ],
)
def test_slugify_gives_lowercase_dashed_names(name: str, slug: str) -> None:
    assert slugify(name) == slug


@given(name=st.text(max_size=300))
def test_slugify_always_gives_a_short_non_empty_dashed_name(name: str) -> None:
    slug = slugify(name)

    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)
    assert len(slug) <= 80
    assert slugify(slug) == slug


def test_a_new_configs_folder_is_its_slugified_name_and_a_document_has_none() -> None:
    assert slugify("Nightly DB Backup") == "nightly-db-backup"
    assert check_slug(slugify("Nightly DB Backup!")) == "nightly-db-backup"
    # The folder is the identity's (fixed at creation), never re-derived from a name.
    assert not hasattr(parse_config(example(name="Nightly DB Backup")), "slug")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("/srv//data", "/srv/data"),
        ("/srv/./data", "/srv/data"),
        ("/srv/data/.", "/srv/data"),
        ("/srv/data/", "/srv/data"),
        ("//srv///data//", "/srv/data"),
        ("/./", "/"),
        ("/", "/"),
    ],
)
def test_source_paths_are_normalised_so_that_every_backup_restores(given: str, stored: str) -> None:
    config = parse_config(example(sources=[{"path": given}]))
    assert config.sources[0].path == stored


@pytest.mark.parametrize("given", ["/srv/../etc", "/srv/data/..", "/.."])
def test_source_paths_with_dot_dot_are_refused_with_the_field(given: str) -> None:
    document = example(sources=[{"path": "/ok"}, {"path": given}])
    assert problem_paths(document) == ["sources[1].path"]
    assert "'..'" in problem_message(document)


@pytest.mark.parametrize(
    ("sections", "field", "words"),
    [
        ({"sources": [{"path": f"/data/{i}"} for i in range(101)]}, "sources", "at most 100"),
        (
            {"sources": [{"path": "/data", "excludePatterns": ["*.tmp"] * 1001}]},
            "sources[0].excludePatterns",
            "at most 1000 items",
        ),
        ({"sources": [{"path": "/" + "a" * 5000}]}, "sources[0].path", "at most 4096"),
        ({"sources": [{"path": "/data/\ud800"}]}, "sources[0].path", "lone surrogate"),
        ({"name": "caf\udce9"}, "name", "unicode"),
        (
            {"sources": [{"path": "/d", "excludePatterns": ["\udcff*"]}]},
            "sources[0].excludePatterns",
            "lone surrogate",
        ),
    ],
)
def test_limits_and_unstorable_text_are_refused_with_the_field(
    sections: dict[str, Any], field: str, words: str
) -> None:
    document = example(**sections)
    assert problem_paths(document) == [field]
    assert words in problem_message(document).lower()


def test_a_config_document_beyond_the_size_limit_is_refused() -> None:
    patterns = ["p" * 4000] * 40
    document = example(sources=[{"path": f"/d{i}", "excludePatterns": patterns} for i in range(3)])
    with pytest.raises(ConfigError, match="at most 262144 are allowed"):
        parse_config(document)
