"""The configuration form: posted fields to a config document and back, keeping every input.

Field names are flat (``sources-0-path``, ``dest-bucket``, ``options-level``); a
document's error paths (``sources[0].path``) map back to them so each message
appears next to its field, and a form that fails keeps exactly what was typed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from backapp.domain.config import (
    DEFAULT_NOTIFY_EVENTS,
    NOTIFY_EVENTS,
    Destination,
    LocalDestination,
    S3Destination,
    parse_config,
    validation_problems,
)
from backapp.errors import ConfigError

Problems = list[tuple[str, str]]


@dataclass
class SourceRow:
    """One row of the Sources section; patterns are one per line."""

    path: str = ""
    include: str = ""
    exclude: str = ""

    @property
    def blank(self) -> bool:
        """Return whether nothing was typed in this row."""
        return not (self.path.strip() or self.include.strip() or self.exclude.strip())


# The keep-N rules of options.retention the form edits: (form field, key, label). Its
# keepWithinDays is the "Retention (days)" field (options.retentionDays, the same rule).
KEEP_FIELDS = (
    ("options-keep-last", "keepLast", "Keep last"),
    ("options-keep-hourly", "keepHourly", "Keep hourly"),
    ("options-keep-daily", "keepDaily", "Keep daily"),
    ("options-keep-weekly", "keepWeekly", "Keep weekly"),
    ("options-keep-monthly", "keepMonthly", "Keep monthly"),
    ("options-keep-yearly", "keepYearly", "Keep yearly"),
)

# Flat field name -> document path, for every field outside the source rows.
FIELD_PATHS = {
    "name": "name",
    "enabled": "enabled",
    "dest-type": "destination.type",
    "dest-bucket": "destination.bucket",
    "dest-region": "destination.region",
    "dest-endpoint": "destination.endpoint",
    "dest-addressing": "destination.addressingStyle",
    "dest-path": "destination.path",
    "dest-prefix": "destination.prefix",
    "schedule-cron": "schedule.cronExpression",
    "schedule-timezone": "schedule.timezone",
    "options-type": "options.type",
    "options-compression": "options.compression",
    "options-level": "options.compressionLevel",
    "options-algorithm": "options.compressionAlgorithm",
    "options-encryption": "options.encryption",
    "options-retention": "options.retentionDays",
    "options-bandwidth": "options.bandwidth",
    "options-download": "options.downloadBandwidth",
    "options-full-every": "options.fullEvery",
    "options-verify": "options.verifySchedule",
    "options-hooks": "options.hooks",
    "options-notify-urls": "options.notify",  # its urls[i] and on
    "options-max-age": "options.maxAgeHours",
    **{name: f"options.retention.{key}" for name, key, _ in KEEP_FIELDS},
    "options-keep-within": "options.retention.keepWithinDays",  # shown at retentionDays
}
_PATH_FIELDS = {path: name for name, path in FIELD_PATHS.items()}
_SOURCE_PATH = re.compile(r"^sources\[(\d+)\](?:\.(\w+))?")
_SOURCE_FIELDS = {"path": "path", "includePatterns": "include", "excludePatterns": "exclude"}
LABELS = {
    "name": "Name",
    "enabled": "Enabled",
    "dest-type": "Destination type",
    "dest-bucket": "Bucket",
    "dest-region": "Region",
    "dest-endpoint": "Endpoint",
    "dest-addressing": "Addressing style",
    "dest-path": "Folder",
    "dest-prefix": "Prefix",
    "schedule-cron": "Cron expression",
    "schedule-timezone": "Timezone",
    "options-type": "Backup type",
    "options-compression": "Compression",
    "options-level": "Compression level",
    "options-algorithm": "Compression algorithm",
    "options-encryption": "Encryption",
    "options-retention": "Retention (days)",
    "options-bandwidth": "Bandwidth limit",
    "options-download": "Download limit",
    "options-full-every": "Full backup every",
    "options-verify": "Verify schedule",
    "options-hooks": "Hooks",
    "options-notify-urls": "Notification URLs",
    "options-max-age": "Alert when no backup for (hours)",
    **{name: label for name, _, label in KEEP_FIELDS},
}
_SOURCE_LABELS = {"path": "path", "include": "include patterns", "exclude": "exclude patterns"}


def label_for(name: str) -> str:
    """Given a form field name, return its label as the page shows it."""
    match = re.match(r"^sources-(\d+)-(\w+)$", name)
    if match:
        return f"Source {int(match.group(1)) + 1} {_SOURCE_LABELS.get(match.group(2), '')}".strip()
    return LABELS.get(name, "Configuration")


def field_for(path: str) -> str:
    """Given a document error path (``sources[1].path``), return the form field it is about."""
    match = _SOURCE_PATH.match(path)
    if match:
        index, key = match.groups()
        return f"sources-{index}-{_SOURCE_FIELDS.get(key or '', 'path')}"
    if path == "sources":
        return "sources-0-path"
    if path == "destination":
        return "dest-type"
    while path and path not in _PATH_FIELDS:
        path = path.rpartition(".")[0]  # e.g. options.compressionLevel.<extra> -> its field
    return _PATH_FIELDS.get(path, "")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _text(form: Mapping[str, Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


def hooks_text(hooks: Any) -> str:
    """Given a document's ``options.hooks``, return the JSON the form shows: one command a
    line, without empty phases ("" for no hooks)."""
    if not isinstance(hooks, Mapping):
        return "" if hooks is None else json.dumps(hooks)
    parts = []
    for key, value in hooks.items():
        if isinstance(value, list) and not value:
            continue
        if isinstance(value, list):
            lines = ",\n".join(f"    {json.dumps(item)}" for item in value)
            parts.append(f"  {json.dumps(key)}: [\n{lines}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}" if parts else ""


@dataclass
class ConfigForm:
    """Everything the configuration form shows, as typed (numbers stay text)."""

    name: str = ""
    enabled: bool = True
    sources: list[SourceRow] = field(default_factory=lambda: [SourceRow()])
    dest_type: str = "local"
    bucket: str = ""
    region: str = "us-east-1"
    endpoint: str = ""
    addressing_style: str = ""  # "", auto, path or virtual
    local_path: str = ""
    prefix: str = ""
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    backup_type: str = "full"
    compression: bool = True
    level: str = "6"
    algorithm: str = "gzip"
    encryption: bool = False
    retention: str = ""
    keep: dict[str, str] = field(default_factory=dict)  # by key of KEEP_FIELDS, as typed
    bandwidth: str = ""
    download: str = ""
    full_every: str = "7"
    verify: str = ""
    hooks: str = ""  # options.hooks as JSON, as typed (admins only: the form is theirs)
    notify_urls: str = ""  # one a line; stored ones arrive masked and stay so
    notify_on: list[str] = field(default_factory=lambda: list(DEFAULT_NOTIFY_EVENTS))
    max_age: str = ""
    version: str = ""

    def keep_rows(self) -> list[tuple[str, str, str]]:
        """Return the keep-N fields as the page shows them: (field name, label, value)."""
        return [(name, label, self.keep.get(key, "")) for name, key, label in KEEP_FIELDS]

    # -- from a posted form, or from a stored document -----------------------------

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> ConfigForm:
        """Given posted fields, return the form exactly as typed (blank source rows too)."""
        indices = sorted({int(m.group(1)) for k in form if (m := re.match(r"^sources-(\d+)-", k))})
        rows = [
            SourceRow(
                _text(form, f"sources-{i}-path"),
                _text(form, f"sources-{i}-include"),
                _text(form, f"sources-{i}-exclude"),
            )
            for i in indices
        ]
        return cls(
            name=_text(form, "name"),
            enabled=form.get("enabled") is not None,
            sources=rows or [SourceRow()],
            dest_type=_text(form, "dest-type", "s3"),
            bucket=_text(form, "dest-bucket"),
            region=_text(form, "dest-region"),
            endpoint=_text(form, "dest-endpoint"),
            addressing_style=_text(form, "dest-addressing"),
            local_path=_text(form, "dest-path"),
            prefix=_text(form, "dest-prefix"),
            cron=_text(form, "schedule-cron"),
            timezone=_text(form, "schedule-timezone"),
            backup_type=_text(form, "options-type", "full"),
            compression=form.get("options-compression") is not None,
            level=_text(form, "options-level"),
            algorithm=_text(form, "options-algorithm", "gzip"),
            encryption=form.get("options-encryption") is not None,
            retention=_text(form, "options-retention"),
            keep={key: _text(form, name) for name, key, _ in KEEP_FIELDS},
            bandwidth=_text(form, "options-bandwidth"),
            download=_text(form, "options-download"),
            full_every=_text(form, "options-full-every"),
            verify=_text(form, "options-verify"),
            hooks=_text(form, "options-hooks"),
            notify_urls=_text(form, "options-notify-urls"),
            notify_on=[e for e in NOTIFY_EVENTS if form.get(f"options-notify-{e}") is not None],
            max_age=_text(form, "options-max-age"),
            version=_text(form, "version"),
        )

    @classmethod
    def from_document(cls, document: Mapping[str, Any], version: int | None = None) -> ConfigForm:
        """Given a stored config document, return the form that edits it."""
        dest = document.get("destination", {})
        schedule = document.get("schedule", {})
        options = document.get("options", {})

        def opt(key: str, default: Any = "") -> str:
            value = options.get(key)
            return default if value is None else str(value)

        rules = options.get("retention") or {}
        within = options.get("retentionDays", rules.get("keepWithinDays"))
        notify = options.get("notify") or {}
        max_age = options.get("maxAgeHours")
        defaults = cls()
        return cls(
            name=str(document.get("name", "")),
            enabled=bool(document.get("enabled", True)),
            sources=[
                SourceRow(
                    str(s.get("path", "")),
                    "\n".join(s.get("includePatterns", [])),
                    "\n".join(s.get("excludePatterns", [])),
                )
                for s in document.get("sources", [])
            ]
            or [SourceRow()],
            dest_type=str(dest.get("type", "s3")),
            bucket=str(dest.get("bucket", "")),
            region=str(dest.get("region", defaults.region)),
            endpoint=str(dest.get("endpoint") or ""),
            addressing_style=str(dest.get("addressingStyle") or ""),
            local_path=str(dest.get("path", "")),
            prefix=str(dest.get("prefix", "")),
            cron=str(schedule.get("cronExpression", "")),
            timezone=str(schedule.get("timezone", "UTC")),
            backup_type=opt("type", "full"),
            compression=bool(options.get("compression", True)),
            level=opt("compressionLevel", "6"),
            algorithm=opt("compressionAlgorithm", "gzip"),
            encryption=bool(options.get("encryption", False)),
            retention="" if within is None else str(within),
            keep={
                key: "" if rules.get(key) is None else str(rules[key]) for _, key, _ in KEEP_FIELDS
            },
            bandwidth=opt("bandwidth"),
            download=opt("downloadBandwidth"),
            full_every=opt("fullEvery", "7"),
            verify=opt("verifySchedule"),
            hooks=hooks_text(options.get("hooks")),
            notify_urls="\n".join(notify.get("urls", [])),
            notify_on=list(notify.get("on", DEFAULT_NOTIFY_EVENTS)),
            max_age="" if max_age is None else f"{max_age:g}",
            version="" if version is None else str(version),
        )

    def without_blank_rows(self) -> ConfigForm:
        """Return this form without its empty source rows (one empty row if none is left).

        Done before validating, so that ``sources[i]`` in an error is the i-th row shown.
        """
        self.sources = [s for s in self.sources if not s.blank] or [SourceRow()]
        return self

    def apply_row_action(self, action: str) -> bool:
        """Given a submit button's action (add-source, remove-source-N), apply it.

        Return whether it was such an action (the form is then shown again, unsaved).
        Browsers running the page's script add and remove rows without a round trip.
        """
        if action == "add-source":
            self.sources.append(SourceRow())
            return True
        if action.startswith("remove-source-") and action[14:].isdigit():
            position = int(action[14:])
            if position < len(self.sources):
                del self.sources[position]
            self.sources = self.sources or [SourceRow()]
            return True
        return False

    # -- to a document ---------------------------------------------------------------

    def destination_document(self) -> dict[str, Any]:
        """Return the destination as a document (only the chosen type's fields)."""
        if self.dest_type == "local":
            return {"type": "local", "path": self.local_path.strip(), "prefix": self.prefix.strip()}
        doc: dict[str, Any] = {
            "type": self.dest_type,
            "bucket": self.bucket.strip(),
            "region": self.region.strip(),
            "prefix": self.prefix.strip(),
        }
        if self.endpoint.strip():
            doc["endpoint"] = self.endpoint.strip()
        if self.addressing_style.strip():
            doc["addressingStyle"] = self.addressing_style.strip()
        return doc

    def to_document(self) -> tuple[dict[str, Any], Problems]:
        """Return the config document and every problem with it (empty when valid)."""
        problems: Problems = []

        def whole(name: str, value: str, *, optional: bool) -> int | None:
            text = value.strip()
            if not text and optional:
                return None
            try:
                return int(text)
            except ValueError:
                problems.append((FIELD_PATHS[name], "must be a whole number"))
                return None

        options: dict[str, Any] = {
            "type": self.backup_type,
            "compression": self.compression,
            "compressionAlgorithm": self.algorithm,
            "encryption": self.encryption,
        }
        for name, key, value, optional in (
            ("options-level", "compressionLevel", self.level, False),
            ("options-retention", "retentionDays", self.retention, True),
            ("options-bandwidth", "bandwidth", self.bandwidth, True),
            ("options-download", "downloadBandwidth", self.download, True),
            ("options-full-every", "fullEvery", self.full_every, False),
        ):
            number = whole(name, value, optional=optional)
            if number is not None:
                options[key] = number
        keep = {}
        for name, key, _ in KEEP_FIELDS:
            number = whole(name, self.keep.get(key, ""), optional=True)
            if number is not None:
                keep[key] = number
        if keep:
            options["retention"] = keep
        if self.verify.strip():
            options["verifySchedule"] = self.verify.strip()
        if self.hooks.strip():
            try:
                options["hooks"] = json.loads(self.hooks)
            except json.JSONDecodeError as exc:
                problems.append(
                    (
                        "options.hooks",
                        f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    )
                )
        if _lines(self.notify_urls):
            options["notify"] = {"urls": _lines(self.notify_urls), "on": self.notify_on}
        if self.max_age.strip():
            try:
                options["maxAgeHours"] = float(self.max_age.strip())
            except ValueError:
                problems.append(("options.maxAgeHours", "must be a number of hours, e.g. 26"))
        document: dict[str, Any] = {
            "name": self.name.strip(),
            "enabled": self.enabled,
            "sources": [
                {
                    "path": s.path.strip(),
                    "includePatterns": _lines(s.include),
                    "excludePatterns": _lines(s.exclude),
                }
                for s in self.sources
                if not s.blank
            ],
            "destination": self.destination_document(),
            "schedule": {"cronExpression": self.cron.strip(), "timezone": self.timezone.strip()},
            "options": options,
        }
        try:
            parse_config(document, strict=True)
        except ConfigError as exc:
            problems.extend(exc.problems)
        return document, problems


def parse_destination(document: dict[str, Any]) -> S3Destination | LocalDestination:
    """Given a destination document, return the validated destination. Raise ConfigError."""
    try:
        return TypeAdapter(Destination).validate_python(document)
    except ValidationError as exc:
        problems = [(_destination_path(p), m) for p, m in validation_problems(exc)]
        summary = "; ".join(f"{label_for(field_for(p))}: {m}" for p, m in problems)
        raise ConfigError(f"invalid destination: {summary}", problems) from exc


def _destination_path(path: str) -> str:
    # Validated alone, a destination's errors start with its union tag ("s3.bucket").
    for tag in ("s3.", "local."):
        path = path.removeprefix(tag)
    return "destination" if path in ("(document)", "s3", "local") else f"destination.{path}"


def errors_by_field(problems: Problems) -> dict[str, list[str]]:
    """Given (document path, message) problems, return messages by form field name.

    Problems that belong to no field are listed under "" (shown at the top of the form).
    """
    out: dict[str, list[str]] = {}
    for path, message in problems:
        out.setdefault(field_for(path), []).append(message)
    return out


def replacement_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Given a stored document and a whole new one, return the PATCH that turns one into the other.

    ``services.configs.update`` deep-merges a patch, so a field the form left out (a cleared
    retention, the bucket of a destination switched to local) must be sent as ``None``.
    """
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        previous = old.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            patch[key] = replacement_patch(previous, value)
        else:
            patch[key] = value
    return patch
