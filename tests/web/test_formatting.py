"""Sizes, durations, moments and progress as the pages show them."""

from __future__ import annotations

from datetime import UTC, datetime

from backapp.web.formatting import (
    human_bytes,
    human_duration,
    progress_view,
    status_badge,
    time_tag,
)


def test_sizes_use_binary_units() -> None:
    assert human_bytes(None) == "—"
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KB"
    assert human_bytes(16 * 1024 * 1024) == "16.0 MB"
    assert human_bytes(3 * 1024**5 * 1024) == "3072.0 PB"


def test_durations_read_naturally() -> None:
    assert human_duration(None) == "—"
    assert human_duration(0.25) == "250 ms"
    assert human_duration(42.4) == "42 s"
    assert human_duration(185) == "3 min 5 s"
    assert human_duration(7440) == "2 h 4 min"


def test_a_moment_is_a_time_element_in_utc_or_in_the_named_zone() -> None:
    moment = datetime(2026, 7, 1, 0, 30, tzinfo=UTC)
    assert time_tag(moment) == (
        '<time datetime="2026-07-01T00:30:00+00:00" data-local>2026-07-01 00:30 UTC</time>'
    )
    paris = time_tag("2026-07-01T00:30:00+00:00", "Europe/Paris")
    assert 'data-tz="Europe/Paris"' in paris and "02:30 Europe/Paris" in paris
    assert "—" in time_tag(None)


def test_a_status_badge_carries_a_word_not_only_a_colour() -> None:
    assert "failed" in status_badge("failed") and "badge-failed" in status_badge("failed")
    assert "never run" in status_badge(None)
    assert "&lt;" in status_badge("<script>")


def test_progress_shows_counts_bytes_rate_and_time_left() -> None:
    view = progress_view(
        "running",
        {
            "filesDone": 1200,
            "filesTotal": 4000,
            "bytesDone": 512 * 1024 * 1024,
            "bytesTotal": 2048 * 1024 * 1024,
            "rateBytesPerSecond": 10 * 1024 * 1024,
            "etaSeconds": 150,
            "counting": True,
            "phase": "backing up",
        },
    )
    assert view["percent"] == 25.0
    assert view["files"] == "1,200 / ≈ 4,000 files"
    assert view["bytes"] == "512.0 MB / ≈ 2.0 GB"
    assert view["rate"] == "10.0 MB/s"
    assert view["eta"] == "2 min 30 s left"
    assert progress_view("queued", None)["percent"] is None
    assert progress_view("completed", None)["percent"] == 100.0
