"""How every BackApp process logs: text for people or one JSON object per line
(``BACKAPP_LOG_FORMAT``), at ``BACKAPP_LOG_LEVEL``, with secrets masked.

The CLI configures this once, before a command runs, for ``serve``, ``web``, ``scheduler``
and every other command alike. Only BackApp's own loggers follow the level: other
libraries log warnings and errors only (botocore's debug output would show request
signatures).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backapp.logcontext import ContextFilter
from backapp.settings import SECRET_VARIABLES, LogSettings

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words
# Attributes every LogRecord has: anything else on a record is an extra, logged as a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Given the environment (default: this process's), return the secret values it holds:
    those of SECRET_VARIABLES and their ``_FILE``s, each notification URL, the database
    password. Longest first, so a secret containing another is masked whole."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name in SECRET_VARIABLES:
        values = [env.get(name, "")]
        path = env.get(f"{name}_FILE")
        if path:
            # Settings reports an unreadable secret file; then there is nothing to mask.
            with contextlib.suppress(OSError, UnicodeDecodeError):
                values.append(Path(path).read_text(encoding="utf-8"))
        for value in values:
            found.add(value.strip())
            if name == "BACKAPP_NOTIFY_URLS":
                found.update(value.replace(",", " ").split())
    try:
        password = urlsplit(env.get("DATABASE_URL", "")).password
    except ValueError:
        password = None
    if password:
        found.add(password)
    return sorted((v for v in found if len(v) >= _MIN_SECRET), key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    """Given a text and secret values, return the text with each secret replaced by ***."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's extras (run
    id, config, ...) and the exception if any, with secrets masked."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage(), self.secrets),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = self._field(value)
        if record.exc_info:
            doc["exception"] = mask(self.formatException(record.exc_info), self.secrets)
        elif record.exc_text:
            doc["exception"] = mask(record.exc_text, self.secrets)
        return json.dumps(doc, ensure_ascii=False, default=str)

    def _field(self, value: Any) -> Any:
        if isinstance(value, bool | int | float) or value is None:
            return value
        return mask(value if isinstance(value, str) else str(value), self.secrets)


class TextFormatter(logging.Formatter):
    """The classic one-line format, with the context's run and config, secrets masked."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(_TEXT_FORMAT)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        if extras:
            line = f"{line} [{' '.join(extras)}]"
        return mask(line, self.secrets)


def configure(log: LogSettings, *, verbose: bool = False) -> None:
    """Given the log settings and -v, set up the root handler (stderr) and BackApp's level:
    BACKAPP_LOG_LEVEL if set, else INFO with -v, else WARNING."""
    secrets = secret_values()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(secrets) if log.log_format == "json" else TextFormatter(secrets)
    )
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    level = log.log_level or ("INFO" if verbose else "WARNING")
    logging.getLogger("backapp").setLevel(level)
    _configured["explicit"] = log.log_level is not None or verbose


_configured: dict[str, bool] = {"explicit": False}


def prefer_level(level: int) -> None:
    """Given a process's own default level (the scheduler logs every decision: INFO), use
    it unless BACKAPP_LOG_LEVEL or -v chose one."""
    if not _configured["explicit"]:
        logging.getLogger("backapp").setLevel(level)
