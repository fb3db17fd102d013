"""Gitignore patterns with git's exact semantics (gitignore(5), git's wildmatch).

A pattern list matches a path the way one ``.gitignore`` at the top of the tree
does: the last pattern that matches the path decides (``!`` patterns un-match);
a pattern ending in ``/`` matches folders only; a pattern with a ``/`` elsewhere
is anchored at the top, one without matches at any depth; ``*``, ``?`` and
``[...]`` never match ``/``; ``**`` matches across folders only as ``**/``,
``/**/`` or a trailing ``/**``. And, as in git, once a folder matches, everything
below it matches too: nothing inside can be un-matched again.

``GitIgnore.match`` gives the verdict for one path alone (for a walk that stops
at matched folders); ``GitIgnore.matches`` adds the folder rule, for any path.
Tests compare both with ``git ls-files`` on generated trees and patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}
_NEVER = "(?!)"


@dataclass(frozen=True)
class Rule:
    """One compiled pattern."""

    pattern: str
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _strip_trailing_spaces(line: str) -> str:
    # Trailing spaces go unless escaped with a backslash ("a\ " keeps one space).
    end = len(line)
    while end > 0 and line[end - 1] == " ":
        backslashes = 0
        i = end - 2
        while i >= 0 and line[i] == "\\":
            backslashes += 1
            i -= 1
        if backslashes % 2:
            break
        end -= 1
    return line[:end]


def _bracket(pattern: str, i: int) -> tuple[str, int] | None:
    """Given a pattern and the index just after '[', return (regex class, index after ']'),
    or None if the bracket is never closed."""
    n = len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    parts: list[str] = []
    first = True
    while i < n:
        c = pattern[i]
        if c == "]" and not first:
            body = "".join(parts)
            if negate:
                return f"[^/{body}]", i + 1
            return (f"(?!/)[{body}]" if body else _NEVER), i + 1  # never '/
        first = False
        if c == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end != -1:
                name = pattern[i + 2 : end]
                if name not in _CLASSES:
                    return _NEVER, _bracket_end(pattern, end + 2)
                parts.append(_CLASSES[name])
                i = end + 2
                continue
        if c == "\\" and i + 1 < n:
            i += 1
            c = pattern[i]
        low = c
        # A range "a-z" (the '-' is literal at the edges).
        if i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            skip = 3
            if high == "\\" and i + 3 < n:
                high = pattern[i + 3]
                skip = 4
            if high < low:
                i += skip
                continue  # an empty range matches nothing
            parts.append(f"{re.escape(low)}-{re.escape(high)}")
            i += skip
            continue
        parts.append(re.escape(low))
        i += 1
    return None


def _bracket_end(pattern: str, i: int) -> int:
    end = pattern.find("]", i)
    return len(pattern) if end == -1 else end + 1


def _translate(body: str) -> str:
    """Given a pattern (without '!', trailing '/' or leading '/'), return a regex for it."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == "*":
            j = i
            while j < n and body[j] == "*":
                j += 1
            at_start = i == 0 or body[i - 1] == "/"
            at_end = j == n or body[j] == "/"
            if j - i >= 2 and at_start and at_end:
                if j == n:
                    out.append(".*")  # "x/**": everything inside
                else:
                    out.append("(?:[^/]*/)*")  # "**/": any number of folders
                    j += 1
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            found = _bracket(body, i + 1)
            if found is None:
                return _NEVER  # an unclosed bracket: git's wildmatch matches nothing
            regex, i = found
            out.append(regex)
        elif c == "\\":
            if i + 1 < n:
                out.append(re.escape(body[i + 1]))
                i += 2
            else:
                return _NEVER  # a trailing backslash is an invalid pattern
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def compile_rule(line: str) -> Rule | None:
    """Given one line of patterns, return its Rule (None for a blank line or a comment)."""
    text = line.rstrip("\n").rstrip("\r")
    if not text or text.startswith("#"):
        return None
    text = _strip_trailing_spaces(text)
    negate = text.startswith("!")
    if negate:
        text = text[1:]
    dir_only = text.endswith("/") and not text.endswith("\\/")
    if dir_only:
        text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    text = text.removeprefix("/")
    if not text:
        return None
    regex = _translate(text)
    prefix = "" if anchored else "(?:.*/)?"
    return Rule(line, re.compile(f"{prefix}{regex}", re.DOTALL), negate, dir_only)


class GitIgnore:
    """A list of gitignore patterns, relative to the top of a tree."""

    def __init__(self, lines: list[str]) -> None:
        self.rules = [r for r in (compile_rule(line) for line in lines) if r is not None]
        self._folders: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, path: str, is_dir: bool) -> bool | None:
        """Given a path relative to the top ('a/b', no leading or trailing '/'), return the
        verdict of the last pattern matching it: True (matched), False (un-matched by a
        '!' pattern) or None (no pattern matches). Folders above it are not considered."""
        for rule in reversed(self.rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.fullmatch(path):
                return not rule.negate
        return None

    def matches(self, path: str, is_dir: bool) -> bool:
        """Given a path, return whether the patterns match it, as git decides whether it is
        ignored: a matched folder above it matches it too."""
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if self._folder_matches("/".join(parts[:depth])):
                return True
        return self.match(path, is_dir) is True

    def _folder_matches(self, folder: str) -> bool:
        known = self._folders.get(folder)
        if known is None:
            if len(self._folders) > 100_000:
                self._folders.clear()
            known = self._folders[folder] = self.match(folder, True) is True
        return known
