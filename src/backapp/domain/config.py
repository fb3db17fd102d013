"""The backup configuration schema of the specification, as pydantic models.

JSON is camelCase exactly as the specification writes it. Extensions:
``destination.type`` ("s3" or "local"; a local destination has ``path``),
``options.compressionAlgorithm``, ``options.fullEvery``, ``options.verifySchedule``,
``options.downloadBandwidth`` (KB/s for restores and verifications; ``bandwidth``
limits backup uploads only), ``options.retention`` (restic's keep-N rules;
``retentionDays`` is its ``keepWithinDays``), ``options.hooks`` (docs/HOOKS.md),
``options.notify`` (who to tell, on which events) and ``options.maxAgeHours`` (a "missed"
alert when no backup completed for that long).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from backapp.domain.schedule import check_cron, check_timezone
from backapp.errors import ConfigError

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# Limits of a config (422 naming the field and the limit): far beyond real use, small
# enough that no document can exhaust a server.
MAX_SOURCES = 100
MAX_PATTERNS = 1000  # per list of patterns
MAX_TEXT = 4096  # characters of any text field (a path, a pattern, an endpoint)
MAX_CONFIG_BYTES = 256 * 1024  # of the whole document, as JSON


def check_text(value: str) -> str:
    """Given a text field's value, return it if it can be stored and shown: no NUL (no path,
    key or PostgreSQL string holds one), valid Unicode (no lone surrogate), at most
    MAX_TEXT characters. Raise ValueError."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if len(value) > MAX_TEXT:
        raise ValueError(f"must be at most {MAX_TEXT} characters (it has {len(value)})")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "must be valid Unicode text (it holds a lone surrogate: a name that is not "
                "UTF-8 cannot be configured; give a folder above it)"
            ) from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # Every text field, alone or in a list, is checked the same way.
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, list):
            if len(value) > MAX_PATTERNS:
                raise ValueError(f"must have at most {MAX_PATTERNS} items (it has {len(value)})")
            for item in value:
                if isinstance(item, str):
                    check_text(item)
        return value

    def to_json_dict(self) -> dict[str, Any]:
        """Return the camelCase JSON document of this model."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _check_absolute(value: str) -> str:
    if not value or not value.startswith("/"):
        raise ValueError(f"must be an absolute path (starting with '/'), got {value!r}")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def normalise_source_path(value: str) -> str:
    """Given an absolute source path, return it without empty or '.' segments and without a
    trailing '/' ('/srv//data/./' -> '/srv/data'). Raise ValueError for '..' segments: what
    they lead to depends on symlinks, which a path alone cannot tell."""
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"must not contain '..' segments (give the folder itself), got {value!r}")
    return "/" + "/".join(parts)


def _check_prefix(value: str) -> str:
    value = value.strip("/")
    if any(part in ("..", ".") for part in value.split("/")):
        raise ValueError("must not contain '.' or '..' segments")
    if "//" in value:
        raise ValueError("must not contain empty segments ('//')")
    return value


class Source(_Model):
    """A directory to back up, with gitignore-style patterns relative to it."""

    path: str
    exclude_patterns: list[str] = Field(default_factory=list)
    include_patterns: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return normalise_source_path(_check_absolute(value))

    @field_validator("exclude_patterns", "include_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        from backapp.domain.patterns import check_patterns

        return check_patterns(value)


class S3Destination(_Model):
    """An AWS S3 bucket or any S3-compatible store."""

    type: Literal["s3"] = "s3"
    bucket: str
    region: str
    prefix: str = ""
    endpoint: str | None = None
    # How requests name the bucket (botocore's ``addressing_style``); None: path for a
    # custom endpoint, auto (virtual host where possible) for AWS.
    addressing_style: Literal["auto", "path", "virtual"] | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        return check_bucket_name(value)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a region name such as 'us-east-1' (no spaces)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_prefix(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://s3.example.com")
        return value.rstrip("/")


class LocalDestination(_Model):
    """A folder on this machine (or a mounted share)."""

    type: Literal["local"]
    path: str
    prefix: str = ""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_absolute(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_prefix(value)


def _destination_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "s3"))  # an unknown type is reported as such
    return str(getattr(value, "type", "s3"))


Destination = Annotated[
    Annotated[S3Destination, Tag("s3")] | Annotated[LocalDestination, Tag("local")],
    Discriminator(_destination_tag),
]


class ScheduleSpec(_Model):
    """When to run: a cron expression (5 fields, or 6 with leading seconds) in a timezone."""

    cron_expression: str
    timezone: str = "UTC"

    @field_validator("cron_expression")
    @classmethod
    def _cron(cls, value: str) -> str:
        return str(_wrap(check_cron, value))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        _wrap(check_timezone, value)
        return value


class RetentionPolicy(_Model):
    """Which backups retention keeps, as restic's ``forget --keep-*`` counts them: a backup
    is kept if any rule keeps it. Periods are counted in the schedule's timezone."""

    keep_last: int | None = Field(None, ge=1, description="the N newest backups")
    keep_hourly: int | None = Field(None, ge=1, description="the newest of each of N hours")
    keep_daily: int | None = Field(None, ge=1, description="the newest of each of N days")
    keep_weekly: int | None = Field(None, ge=1, description="the newest of each of N ISO weeks")
    keep_monthly: int | None = Field(None, ge=1, description="the newest of each of N months")
    keep_yearly: int | None = Field(None, ge=1, description="the newest of each of N years")
    keep_within_days: int | None = Field(
        None, ge=1, description="every backup completed within N days of now"
    )

    @property
    def empty(self) -> bool:
        """Whether no rule is set (retention then keeps everything)."""
        return all(v is None for v in self.model_dump().values())

    def describe(self) -> str:
        """Return the rules in words, e.g. "last 3, daily 7, within 30 days" ("none")."""
        words = []
        for key, value in self.model_dump().items():
            rule = key.removeprefix("keep_")  # the name reasons use too ("daily #2")
            if value is not None:
                words.append(f"within {value} days" if rule == "within_days" else f"{rule} {value}")
        return ", ".join(words) or "none"


MAX_HOOKS = 10  # commands of each hook phase
MAX_HOOK_ARGS = 256  # arguments of one command
HOOK_PHASES = ("before", "after", "onError")
_ARGV_EXAMPLE = '["pg_dump", "-f", "/srv/db.sql", "app"]'


def _check_argv(value: list[str]) -> list[str]:
    if not value:
        raise ValueError(f"must name a program and its arguments, e.g. {_ARGV_EXAMPLE}")
    if len(value) > MAX_HOOK_ARGS:
        raise ValueError(f"must have at most {MAX_HOOK_ARGS} items (it has {len(value)})")
    for item in value:
        check_text(item)
    if not value[0].strip():
        raise ValueError("the program (the first item) must not be blank")
    return value


Argv = Annotated[list[str], AfterValidator(_check_argv)]


class HookCommand(_Model):
    """A hook command in its long form: ``{"argv": [...], "optional": true}``."""

    argv: Argv = Field(description="the program and its arguments, run without a shell")
    optional: bool = Field(False, description="a failure is a warning, not a failed run")
    timeout_seconds: int | None = Field(
        None, ge=1, le=86400, description="this command's limit (default: the hooks' limit)"
    )


def _command_tag(value: Any) -> str | None:
    if isinstance(value, list):
        return "argv-list"
    if isinstance(value, dict | HookCommand):
        return "argv-object"
    return None


# A command is an argv list (its short form) or a HookCommand. The tags never appear in
# error paths (``error_path`` drops them): a user wrote a list or an object, not a tag.
Command = Annotated[
    Annotated[Argv, Tag("argv-list")] | Annotated[HookCommand, Tag("argv-object")],
    Discriminator(
        _command_tag,
        custom_error_type="hook_command",
        custom_error_message=(
            f"must be an argv list such as {_ARGV_EXAMPLE} (no shell: use "
            '["sh", "-c", "..."] for one) or an object {"argv": [...], "optional": true}'
        ),
    ),
]


class Hooks(_Model):
    """Commands run around a backup (``options.hooks``), each without a shell. A failing
    ``before`` command fails the run unless it is optional; ``after`` runs after a completed
    backup, ``onError`` after one that failed or was cancelled."""

    before: list[Command] = Field(default_factory=list, max_length=MAX_HOOKS)
    after: list[Command] = Field(default_factory=list, max_length=MAX_HOOKS)
    on_error: list[Command] = Field(default_factory=list, max_length=MAX_HOOKS)
    timeout_seconds: int = Field(
        3600, ge=1, le=86400, description="each command is killed after this many seconds"
    )

    def commands(self, phase: str) -> list[HookCommand]:
        """Given a phase (before, after, onError), return its commands in their long form."""
        listed = {"before": self.before, "after": self.after, "onError": self.on_error}[phase]
        return [c if isinstance(c, HookCommand) else HookCommand(argv=c) for c in listed]

    @property
    def empty(self) -> bool:
        """Whether no command is configured."""
        return not (self.before or self.after or self.on_error)


NotifyEvent = Literal["failure", "success", "recovered", "missed"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("failure", "success", "recovered", "missed")
DEFAULT_NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("failure", "recovered", "missed")
MAX_NOTIFY_URLS = 20


class NotifySpec(_Model):
    """Who to tell about a config: Apprise URLs (secrets: stored apart, shown masked) and
    the events they are told about."""

    urls: list[str] = Field(default_factory=list, max_length=MAX_NOTIFY_URLS)
    on: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_EVENTS))

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        return [u.strip() for u in value if u.strip()]

    @field_validator("on")
    @classmethod
    def _on(cls, value: list[NotifyEvent]) -> list[NotifyEvent]:
        return [e for e in NOTIFY_EVENTS if e in value]  # one each, in a fixed order


class Options(_Model):
    """How to back up. ``retentionDays`` (the specification's) means
    ``retention.keepWithinDays``; giving both with different numbers is refused."""

    type: Literal["full", "incremental"] = "full"
    compression: bool = True
    compression_level: int = Field(6, ge=1, le=9)
    compression_algorithm: Literal["gzip", "zstd"] = "gzip"
    encryption: bool = False
    retention_days: int | None = Field(None, ge=1)
    bandwidth: int | None = Field(None, ge=1, description="upload limit in KB/s (1 KB = 1024 B)")
    download_bandwidth: int | None = Field(
        None, ge=1, description="download limit in KB/s for restore and verify (extension)"
    )
    full_every: int = Field(7, ge=1, description="every Nth backup of a chain is full")
    verify_schedule: str | None = None
    retention: RetentionPolicy | None = Field(
        None, description="keep-N retention (extension); retentionDays is keepWithinDays"
    )
    hooks: Hooks | None = Field(
        None, description="commands run before and after each backup (extension; admins only)"
    )
    notify: NotifySpec | None = Field(None, description="who to tell, on which events (extension)")
    max_age_hours: float | None = Field(
        None,
        gt=0,
        le=24 * 366,
        description='a "missed" alert when no backup completed for this long (extension)',
    )

    @field_validator("verify_schedule")
    @classmethod
    def _verify(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else str(_wrap(check_cron, value))

    @model_validator(mode="after")
    def _one_within(self) -> Options:
        within = self.retention.keep_within_days if self.retention else None
        if None not in (within, self.retention_days) and within != self.retention_days:
            raise ValueError(
                f"retentionDays ({self.retention_days}) and retention.keepWithinDays "
                f"({within}) disagree: they are the same rule, give one (or the same number)"
            )
        return self

    @property
    def retention_policy(self) -> RetentionPolicy | None:
        """The retention rules in force (``retentionDays`` as keepWithinDays), or None if
        there are none (everything is kept)."""
        policy = self.retention or RetentionPolicy()
        if self.retention_days is not None:
            policy = policy.model_copy(update={"keep_within_days": self.retention_days})
        return None if policy.empty else policy


class BackupConfig(_Model):
    """A complete backup configuration."""

    name: str = Field(min_length=1, max_length=200)
    enabled: bool
    sources: list[Source] = Field(min_length=1, max_length=MAX_SOURCES)
    destination: Destination
    schedule: ScheduleSpec
    options: Options

    @model_validator(mode="before")
    @classmethod
    def _size(cls, data: Any) -> Any:
        if isinstance(data, dict):
            try:
                size = len(json.dumps(data, default=str))
            except (TypeError, ValueError, RecursionError):
                return data  # the fields say what is wrong
            if size > MAX_CONFIG_BYTES:
                raise ValueError(
                    f"the configuration is {size} bytes; at most {MAX_CONFIG_BYTES} are allowed"
                )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        if any(ord(c) < 32 for c in value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("sources")
    @classmethod
    def _distinct(cls, value: list[Source]) -> list[Source]:
        seen: set[str] = set()
        for src in value:
            if src.path in seen:
                raise ValueError(f"source {src.path!r} is listed twice")
            seen.add(src.path)
        return value


def _wrap(check: Any, value: str) -> Any:
    try:
        return check(value)
    except ConfigError as exc:
        raise ValueError(exc.message) from exc


def check_bucket_name(value: str) -> str:
    """Given a bucket name, return it if S3's naming rules allow it; raise ValueError."""
    if not 3 <= len(value) <= 63:
        raise ValueError("bucket names must be 3 to 63 characters long")
    if not _BUCKET_RE.match(value):
        raise ValueError(
            "bucket names use only lowercase letters, digits, '.' and '-', "
            "and begin and end with a letter or digit"
        )
    if ".." in value or ".-" in value or "-." in value:
        raise ValueError("bucket names must not contain '..', '.-' or '-.'")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise ValueError("bucket names must not look like an IP address")
    if value.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or value.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    ):
        raise ValueError("bucket name uses a prefix or suffix that S3 reserves")
    return value


def slugify(name: str) -> str:
    """Given a config name, return a storage-safe folder name (lowercase, dashes): the folder
    a new config gets. A config's folder is fixed when it is created (a rename keeps it):
    read it from the config's identity, never from its current name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:80].strip("-") or "backup"


def check_slug(value: Any) -> str:
    """Given a config's stored folder name, return it if it is one BackApp makes. Raise
    ConfigError (field ``slug``)."""
    if not isinstance(value, str) or not value or slugify(value) != value:
        raise ConfigError(
            f"invalid configuration: slug: {value!r} is not a folder name BackApp makes "
            "(lowercase letters, digits and single dashes)",
            [("slug", "not a folder name BackApp makes")],
        )
    return value


def error_path(loc: tuple[int | str, ...]) -> str:
    """Given a pydantic error location, return the JSON field path, e.g. ``sources[0].path``."""
    out = ""
    for part in loc:
        if part in ("s3", "local") and out == "destination":
            continue  # discriminated-union tag, not a field
        if part in ("argv-list", "argv-object"):
            continue  # a hook command's tag (no field has a dash in its name)
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Given a pydantic ValidationError, return (field path, message) pairs."""
    problems = []
    for err in exc.errors(include_url=False):
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"unknown type {ctx.get('tag')!r}: use one of {ctx.get('expected_tags')}"
        problems.append((error_path(tuple(err["loc"])), msg))
    return problems


# Fields the API adds to a stored config (read-only); a config file exported from the API
# carries them. Of these, ``slug`` (the config's folder) and ``id`` are its identity.
SERVER_FIELDS = (
    "id",
    "slug",
    "version",
    "createdAt",
    "updatedAt",
    "nextRunAt",
    "nextVerifyAt",
    "lastRun",
)


@dataclass(frozen=True)
class ConfigFile:
    """A config read from a JSON file: its document, and the identity the server gave it
    if the file was exported from the API (``slug`` and ``config_id``, else None)."""

    document: BackupConfig
    slug: str | None = None
    config_id: str | None = None


def parse_config(document: Any, *, strict: bool = False) -> BackupConfig:
    """Given a decoded JSON document, return the BackupConfig. Raise ConfigError.

    Unless ``strict``, the fields the API adds to a stored config (``id``, …) are ignored,
    so a config exported from the API works as a config file.
    """
    if isinstance(document, dict) and not strict:
        document = {k: v for k, v in document.items() if k not in SERVER_FIELDS}
    try:
        return BackupConfig.model_validate(document)
    except ValidationError as exc:
        problems = validation_problems(exc)
        lines = "; ".join(f"{path}: {msg}" for path, msg in problems)
        raise ConfigError(f"invalid configuration: {lines}", problems) from exc


def load_config_file(path: Path) -> ConfigFile:
    """Given a JSON config file, return its document and identity (if it has one). Raise
    ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            [("(document)", exc.msg)],
        ) from exc
    parsed = parse_config(document)
    assert isinstance(document, dict)  # parse_config refuses anything else
    slug = check_slug(document["slug"]) if document.get("slug") is not None else None
    config_id = document.get("id")
    return ConfigFile(parsed, slug, config_id if isinstance(config_id, str) else None)
