"""Pattern semantics are exactly git's: generated trees and patterns, compared with what
`git ls-files` says is ignored (the patterns as a repository's .git/info/exclude)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backapp.domain.config import Source
from backapp.domain.gitignore import GitIgnore
from backapp.engine.backup.scan import SkipLog, scan

NAMES = ["a", "b", "ab", "ba", "x.py", "y.txt", ".hidden", "a b", "c[1]", "d-1"]
PIECES = [
    "a",
    "b",
    "ab",
    "*",
    "?",
    "**",
    "*.py",
    "a*",
    "*b",
    "[ab]",
    "[!a]*",
    "x.*",
    "[a-c]",
    "\\[1]",
    "c\\[1\\]",
    "[[:alpha:]]",
    "a b",
    "?.py",
    ".*",
]

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join)
trees = st.lists(paths, min_size=1, max_size=14)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=3))
    text = "/".join(parts)
    if draw(st.booleans()) and draw(st.booleans()):
        text = "/" + text
    if draw(st.booleans()) and draw(st.booleans()):
        text += "/"
    if draw(st.integers(0, 3)) == 0:
        text = "!" + text
    return text


pattern_lists = st.lists(patterns(), min_size=1, max_size=5)


def _make_tree(root: Path, files: list[str]) -> set[str]:
    made: set[str] = set()
    for rel in files:
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(rel)
                made.add(rel)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            continue  # a file where a folder was wanted (or the reverse): skip this one
    return {f for f in made if (root / f).is_file()}


def _git_not_ignored(root: Path, patterns: list[str]) -> set[str]:
    env = {
        "HOME": str(root.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "PATH": os.environ["PATH"],
    }
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("\n".join(patterns) + "\n")
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
        env=env,
    ).stdout
    return {p for p in os.fsdecode(out).split("\0") if p}


def _scanned(root: Path, *, include: list[str], exclude: list[str]) -> set[str]:
    source = Source(path=str(root), include_patterns=include, exclude_patterns=exclude)
    base = str(root).strip("/") + "/"
    return {
        e.path[len(base) :]
        for e in scan([source], SkipLog())
        if e.kind != "dir" and e.path.startswith(base) and "/.git/" not in "/" + e.path + "/"
    } - {".git"}


def _check(files: list[str], rules: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        root.mkdir()
        made = _make_tree(root, files)
        kept_by_git = _git_not_ignored(root, rules)
        assert kept_by_git <= made
        ignored_by_git = made - kept_by_git
        # Exclude patterns: the backup keeps what git does not ignore.
        assert _scanned(root, include=[], exclude=[*rules, "/.git/"]) == kept_by_git
        # Include patterns: the backup keeps what git would ignore.
        assert _scanned(root, include=rules, exclude=["/.git/"]) == ignored_by_git
        # Restore selection: the same rule for any path.
        spec = GitIgnore(rules)
        assert {f for f in made if spec.matches(f, False)} == ignored_by_git


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=trees, rules=pattern_lists)
def test_patterns_select_exactly_what_git_ignores(files: list[str], rules: list[str]) -> None:
    _check(files, rules)


@pytest.mark.parametrize(
    ("files", "rules"),
    [
        # git's whitelist idiom: ignore everything, but keep folders and .py files.
        (["a/x.py", "a/b/x.py", "a/y.txt", "y.txt", "x.py"], ["*", "!*/", "!*.py"]),
        (["a/b/c", "b/c", "c"], ["/b"]),  # anchored
        (["a/b/x.py", "x.py"], ["a/**"]),
        (["a/b/a/x", "a/x", "b/a/x"], ["**/a/x"]),
        (["a/b", "ab/b"], ["a/", "!a/b"]),  # nothing comes back from an ignored folder
        (["a b", "ab"], ["a\\ "]),
        (["c[1]", "c1"], ["c\\[1\\]"]),
    ],
)
def test_known_cases_match_git(files: list[str], rules: list[str]) -> None:
    _check(files, rules)
