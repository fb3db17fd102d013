"""Gitignore-style include/exclude patterns, relative to a source directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pathspec


def check_patterns(patterns: list[str]) -> list[str]:
    """Given patterns, return them (blank ones dropped) if all compile; raise ValueError."""
    cleaned = [p for p in patterns if p.strip()]
    for pattern in cleaned:
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid pattern {pattern!r}: {exc}") from exc
    return cleaned


@dataclass(frozen=True)
class PatternFilter:
    """Decides which paths (relative to a source, '/'-separated) are backed up.

    Exclude patterns win; an excluded directory is not descended into. With include
    patterns, a file is kept only if it matches one; directories are kept when they
    match or lead to a kept file.
    """

    include: pathspec.PathSpec[Any] | None
    exclude: pathspec.PathSpec[Any] | None

    @classmethod
    def from_patterns(cls, include: list[str], exclude: list[str]) -> PatternFilter:
        """Given include and exclude pattern lists, return the filter."""
        return cls(
            include=pathspec.GitIgnoreSpec.from_lines(include) if include else None,
            exclude=pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None,
        )

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """Given a relative path, return whether an exclude pattern removes it."""
        if self.exclude is None:
            return False
        return bool(self.exclude.match_file(rel + "/" if is_dir else rel))

    def included(self, rel: str, is_dir: bool) -> bool:
        """Given a relative path, return whether the include patterns select it."""
        if self.include is None:
            return True
        return bool(self.include.match_file(rel + "/" if is_dir else rel))
