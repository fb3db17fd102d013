"""The restore form: what to restore (everything or picked paths) and where, kept as typed.

Picked paths are manifest paths (``home/me/docs``); the engine selects entries with
gitignore-style patterns, so each path becomes an anchored pattern with its special
characters escaped: a file named ``a*b`` restores that file, not every ``a…b``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from backapp.domain.patterns import exact_path_pattern
from backapp.domain.restore import IN_PLACE_EXISTING, ExistingPolicy, existing_policy
from backapp.errors import ConfigError

Problems = list[tuple[str, str]]

WHERE = ("new", "folder", "original")
# The engine's problem fields (services.restores.plan_restore) and the form's own.
FIELDS = ("what", "where", "target", "existing")
LABELS = {
    "what": "What to restore",
    "where": "Where to restore",
    "target": "Folder",
    "existing": "Files already there",
}


def clean_paths(values: list[str]) -> list[str]:
    """Given picked paths, return them without slashes at the ends, blanks or repeats."""
    seen: dict[str, None] = {}
    for value in values:
        path = value.strip("/")
        if path and "\x00" not in path:
            seen.setdefault(path, None)
    return list(seen)


def _text(form: Mapping[str, Any], name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


@dataclass
class RestoreForm:
    """Everything the restore form shows, as typed."""

    paths: list[str] = field(default_factory=list)
    what: str = "all"
    where: str = "new"
    target: str = ""
    existing: str = ""

    @classmethod
    def for_paths(cls, paths: list[str]) -> RestoreForm:
        """Given picked paths (maybe none), return the form as first shown."""
        cleaned = clean_paths(paths)
        return cls(paths=cleaned, what="selected" if cleaned else "all")

    @classmethod
    def from_form(cls, form: FormData) -> RestoreForm:
        """Given the posted fields, return the form exactly as typed."""
        paths = clean_paths([p for p in form.getlist("path") if isinstance(p, str)])
        return cls(
            paths=paths,
            what=_text(form, "what", "selected" if paths else "all"),
            where=_text(form, "where", "new"),
            target=_text(form, "target"),
            existing=_text(form, "existing"),
        )

    @property
    def include(self) -> list[str]:
        """Return the patterns of the paths to restore (none: everything)."""
        return [exact_path_pattern(p) for p in self.paths] if self.what == "selected" else []

    def plan_arguments(self) -> tuple[dict[str, Any], Problems]:
        """Return the keyword arguments of ``plan_restore`` and the form's own problems."""
        problems: Problems = []
        if self.what not in ("all", "selected"):
            problems.append(("what", "choose everything or the picked files and folders"))
        elif self.what == "selected" and not self.paths:
            problems.append(
                ("what", "nothing was picked: browse the backup to pick, or restore everything")
            )
        if self.where not in WHERE:
            problems.append(("where", "choose a new folder, this folder or the original location"))
        target = self.target.strip()
        if self.where == "folder":
            if not target:
                problems.append(("target", "type the absolute path of the folder to restore into"))
            elif "\x00" in target:
                problems.append(("target", "must not contain NUL characters"))
        existing: ExistingPolicy | None = None
        try:
            existing = existing_policy(self.existing) if self.existing else None
        except ConfigError:
            problems.append(("existing", "choose one of the choices shown"))
        else:
            if self.where == "original" and existing not in IN_PLACE_EXISTING:
                problems.append(
                    (
                        "existing",
                        "restoring to the original location needs a choice: overwrite, "
                        "skip existing files or keep both",
                    )
                )
        arguments: dict[str, Any] = {
            "target": target if self.where == "folder" else None,
            "in_place": self.where == "original",
            "include": self.include,
            # A new folder is empty: what to do with files already there does not arise.
            "existing": None if self.where == "new" else existing,
        }
        return arguments, problems


def errors_by_field(problems: Problems) -> dict[str, list[str]]:
    """Given (field, message) problems, return messages by form field ('' for the rest)."""
    out: dict[str, list[str]] = {}
    for name, message in problems:
        out.setdefault(name if name in FIELDS else "", []).append(message)
    return out
