"""Gitignore-style include/exclude patterns, relative to a source directory."""

from __future__ import annotations

import re
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


_GLOB = frozenset("\\*?[]!#")


def exact_path_pattern(path: str) -> str:
    """Given an archive path, return the gitignore pattern selecting exactly it (and below).

    Special characters are escaped, so a file named ``a*b`` selects that file only.
    """
    escaped = "".join("\\" + c if c in _GLOB else c for c in path.strip("/"))
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "  # gitignore drops unescaped trailing spaces
    return "/" + escaped


def pattern_path(pattern: str) -> str:
    """Given a pattern made by exact_path_pattern, return the path it selects ('/home/me')."""
    return "/" + re.sub(r"\\(.)", r"\1", pattern.lstrip("/"))
