"""What a restore is asked to do, and its rules: the one definition the engine, the
services, the worker, the API, the pages and the CLI all use.

A restore goes into a target folder (by default a new one, chosen by the worker that
writes it) or to the original locations (``in_place``). Files already there are refused
(the default: a non-empty target is an error), overwritten, skipped or kept beside the
restored copy; restoring in place needs one of the last three, said explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from backapp.errors import ConfigError

ExistingPolicy = Literal["refuse", "overwrite", "skip", "keep-both"]
EXISTING: tuple[ExistingPolicy, ...] = get_args(ExistingPolicy)
DEFAULT_EXISTING: ExistingPolicy = "refuse"
# Restoring to the original locations always meets files: what to do must be said.
IN_PLACE_EXISTING: tuple[ExistingPolicy, ...] = tuple(p for p in EXISTING if p != "refuse")
IN_PLACE_RULE = "restoring to the original location needs overwrite, skip or keep-both"

Problems = list[tuple[str, str]]


def existing_policy(value: object) -> ExistingPolicy:
    """Given a policy name, return it. Raise ConfigError (field ``existing``)."""
    for policy in EXISTING:
        if value == policy:
            return policy
    raise ConfigError(
        f"invalid restore: existing: must be one of {', '.join(EXISTING)}",
        [("existing", f"must be one of {', '.join(EXISTING)}")],
    )


def restore_problems(
    *, target: str | None, in_place: bool, existing: ExistingPolicy | None
) -> Problems:
    """Given where a restore goes and its policy (None: not said), return what is wrong
    with them as (field, message) pairs: the restore rules, checked by everyone."""
    problems: Problems = []
    if in_place and target:
        problems.append(("target", "give a target folder or inPlace, not both"))
    if in_place and existing not in IN_PLACE_EXISTING:
        problems.append(("existing", IN_PLACE_RULE))
    if target is not None and not target.startswith("/"):
        problems.append(("target", "must be an absolute path"))
    return problems


@dataclass(frozen=True)
class RestoreRequest:
    """A checked restore, as queued for the worker (and stored with its run).

    ``target`` None means a new folder, which the worker that writes it resolves under
    its own data directory (in a split setup the web process's folders are not the
    worker's); ``in_place`` restores to the original locations.
    """

    backup_id: str
    target: str | None = None
    in_place: bool = False
    include: tuple[str, ...] = field(default_factory=tuple)
    existing: ExistingPolicy = DEFAULT_EXISTING

    @classmethod
    def checked(
        cls,
        *,
        backup_id: str,
        target: str | None = None,
        in_place: bool = False,
        include: list[str] | tuple[str, ...] = (),
        existing: ExistingPolicy | None = None,
    ) -> RestoreRequest:
        """Given what a caller asked for, return the request. Raise ConfigError with every
        problem's field."""
        problems = restore_problems(target=target, in_place=in_place, existing=existing)
        if problems:
            raise ConfigError(
                "invalid restore: " + "; ".join(f"{f}: {m}" for f, m in problems), problems
            )
        return cls(backup_id, target, in_place, tuple(include), existing or DEFAULT_EXISTING)

    def to_json(self) -> dict[str, Any]:
        """Return the request as stored with its run (camelCase)."""
        return {
            "backupId": self.backup_id,
            "target": self.target,
            "inPlace": self.in_place,
            "include": list(self.include),
            "existing": self.existing,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RestoreRequest:
        """Given a stored request (``to_json``'s), return it. Raise ConfigError."""
        try:
            include = doc.get("include") or []
            if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
                raise TypeError("include")
            return cls.checked(
                backup_id=str(doc["backupId"]),
                target=doc.get("target"),
                in_place=bool(doc.get("inPlace", False)),
                include=include,
                existing=existing_policy(doc.get("existing", DEFAULT_EXISTING)),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"stored restore request is damaged ({exc})") from exc


@dataclass(frozen=True)
class VerifyRequest:
    """A verification, as queued for the worker (and stored with its run)."""

    backup_id: str
    full: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the request as stored with its run (camelCase)."""
        return {"backupId": self.backup_id, "full": self.full}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> VerifyRequest:
        """Given a stored request, return it. Raise ConfigError."""
        try:
            return cls(str(doc["backupId"]), bool(doc.get("full", False)))
        except KeyError as exc:
            raise ConfigError(f"stored verify request is damaged ({exc})") from exc
