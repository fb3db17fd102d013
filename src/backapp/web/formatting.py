"""Numbers, sizes, durations and moments as people read them (Jinja filters and SSE text)."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from markupsafe import Markup, escape

from backapp.domain.runs import ACTIVE

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(value: int | float | None) -> str:
    """Given a byte count, return it in binary units ('1.5 MB', '512 B'); '—' for None."""
    if value is None:
        return "—"
    size = float(value)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """Given seconds, return '850 ms', '42 s', '3 min 5 s' or '2 h 4 min'; '—' for None."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def number(value: int | None) -> str:
    """Given an integer, return it with thousands separators."""
    return "—" if value is None else f"{value:,}"


def to_datetime(value: str | datetime | None) -> datetime | None:
    """Given an ISO string or a datetime, return an aware datetime (naive means UTC)."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def time_tag(value: str | datetime | None, zone: str | None = None) -> Markup:
    """Given a moment, return a <time> element the page's script shows in local time.

    With ``zone`` (an IANA name) the moment is shown in that timezone instead, named.
    The server's text (UTC or the zone) stays when scripts do not run.
    """
    moment = to_datetime(value)
    if moment is None:
        return Markup('<span class="muted">—</span>')
    try:
        shown = moment.astimezone(ZoneInfo(zone)) if zone else moment.astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        zone, shown = None, moment.astimezone(UTC)
    text = f"{shown:%Y-%m-%d %H:%M} {zone or 'UTC'}"
    zone_attr = Markup(' data-tz="{}"').format(zone) if zone else Markup("")
    return Markup('<time datetime="{}" data-local{}>{}</time>').format(
        moment.isoformat(), zone_attr, escape(text)
    )


STATUS_SYMBOLS = {
    "queued": "◷",
    "running": "▶",
    "completed": "✓",
    "failed": "✕",
    "cancelled": "■",
    "skipped": "↷",
    "passed": "✓",
}


def status_badge(status: str | None) -> Markup:
    """Given a run status, return a badge with a symbol and the word (never colour alone)."""
    if not status:
        return Markup('<span class="badge badge-none">never run</span>')
    symbol = STATUS_SYMBOLS.get(status, "•")
    return Markup(
        '<span class="badge badge-{0}" data-status="{0}"><span aria-hidden="true">{1}</span> {0}'
        "</span>"
    ).format(status, symbol)


def progress_view(status: str, progress: dict[str, Any] | None) -> dict[str, Any]:
    """Given a run's status and progress document, return what its progress bar shows."""
    p = progress or {}
    done, total = int(p.get("bytesDone") or 0), int(p.get("bytesTotal") or 0)
    counting = bool(p.get("counting"))
    if status == "completed":
        percent: float | None = 100.0
    elif total > 0:
        percent = min(100.0, done * 100.0 / total)
    else:
        percent = None if status in ACTIVE else 0.0
    files_total = int(p.get("filesTotal") or 0)
    about = "≈ " if counting else ""
    eta = p.get("etaSeconds")
    rate = p.get("rateBytesPerSecond")
    return {
        "status": status,
        "percent": None if percent is None else round(percent, 1),
        "phase": "waiting for a worker" if status == "queued" else str(p.get("phase") or status),
        "files": f"{number(int(p.get('filesDone') or 0))} / {about}{number(files_total)} files",
        "bytes": f"{human_bytes(done)} / {about}{human_bytes(total)}",
        "rate": f"{human_bytes(rate)}/s" if rate else "—/s",
        "eta": f"{human_duration(eta)} left" if eta is not None and status == "running" else "",
        "percentText": "…" if percent is None else f"{percent:.0f}%",
    }


_FILE_TYPES = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}
_BACKUP_ID = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{3}))?Z-")


def file_mode(kind: str, mode: str | int) -> str:
    """Given an entry's type and its octal permission bits, return 'drwxr-xr-x' (as ls does)."""
    bits = int(mode, 8) if isinstance(mode, str) else mode
    return stat.filemode(_FILE_TYPES.get(kind, stat.S_IFREG) | (bits & 0o7777))


def backup_moment(backup_id: str) -> datetime | None:
    """Given a backup id ('20261126T020000.123Z-3f9a1c'), return when it was made (or None)."""
    match = _BACKUP_ID.match(backup_id)
    if match is None:
        return None
    moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return moment.replace(microsecond=int(match.group(2) or 0) * 1000)
