"""Gitignore-style include/exclude patterns, relative to a source directory."""

from __future__ import annotations

import re
from dataclasses import dataclass

from backapp.domain.gitignore import GitIgnore, compile_rule


def check_patterns(patterns: list[str]) -> list[str]:
    """Given patterns, return them with blank ones dropped. Raise ValueError for a pattern
    that can never match (an unclosed '[' or a trailing backslash), naming it."""
    cleaned = [p for p in patterns if p.strip()]
    for pattern in cleaned:
        rule = compile_rule(pattern)
        if rule is not None and rule.regex.pattern.endswith(_NEVER_MATCHES):
            raise ValueError(f"invalid pattern {pattern!r}: it can never match")
    return cleaned


_NEVER_MATCHES = "(?!)"


@dataclass(frozen=True)
class PatternFilter:
    """Decides which paths (relative to a source, '/'-separated) are backed up, with git's
    semantics (see domain/gitignore.py).

    An excluded folder is not descended into, so nothing below it can come back. With
    include patterns, a path is kept when the patterns match it or a folder above it (as
    git decides "ignored"); folders are kept when they match or lead to a kept file.
    """

    include: GitIgnore | None
    exclude: GitIgnore | None

    @classmethod
    def from_patterns(cls, include: list[str], exclude: list[str]) -> PatternFilter:
        """Given include and exclude pattern lists, return the filter."""
        return cls(
            include=GitIgnore(include) if include else None,
            exclude=GitIgnore(exclude) if exclude else None,
        )

    def excluded(self, rel: str, is_dir: bool) -> bool:
        """Given a relative path whose folders are not excluded, return whether the exclude
        patterns remove it."""
        if self.exclude is None:
            return False
        return self.exclude.match(rel, is_dir) is True

    def included(self, rel: str, is_dir: bool, *, inside_included: bool = False) -> bool:
        """Given a relative path (and whether a folder above it is included already),
        return whether the include patterns select it."""
        if self.include is None or inside_included:
            return True
        return self.include.match(rel, is_dir) is True


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
