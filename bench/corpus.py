"""The benchmark corpus: build it with the shared generator, copy, mutate, compare."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from measure import BenchError, run_quiet, shell

_CHUNK = 1024 * 1024


def shared_dir() -> Path:
    """Return the shared folder (``$BACKAPP_SHARED`` or ``../shared`` of the project)."""
    default = Path(__file__).resolve().parents[2] / "shared"
    return Path(os.environ.get("BACKAPP_SHARED", default))


def ensure_corpus(work: Path, size: str, seed: int = 42) -> Path:
    """Given a work folder and a size ("1G"), return a finished corpus, building it if needed.

    A marker file next to the tree (not inside it, so it is not backed up) says the
    generator finished; a tree without it is rebuilt.
    """
    root = work / f"corpus-{size}-s{seed}"
    marker = work / f"corpus-{size}-s{seed}.done"
    if marker.exists() and root.is_dir():
        return root
    marker.unlink(missing_ok=True)
    script = shared_dir() / "bench" / "make_corpus.py"
    args = [sys.executable, str(script), str(root), "--size", size, "--seed", str(seed)]
    run_quiet([*args, "--force"] if root.exists() else args, timeout=900)
    marker.write_text(f"{size} seed={seed}\n", encoding="utf-8")
    return root


def copy_tree(src: Path, dst: Path) -> None:
    """Given a tree, copy it to dst keeping modes, mtimes, symlinks and hard links."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    run_quiet(["cp", "-a", str(src), str(dst)], timeout=900)


def mutate(root: Path, day: int) -> str:
    """Given a corpus, apply one day of changes with the shared mutator; return its summary."""
    script = shared_dir() / "bench" / "mutate_corpus.py"
    out = run_quiet([sys.executable, str(script), str(root), "--day", str(day)], timeout=300)
    return " ".join(out.split())


def warm_cache(root: Path) -> None:
    """Given a tree, read all of it once so every timed run sees a warm page cache."""
    run_quiet(shell(f"tar -cf - -C {root.parent} {root.name} | cat > /dev/null"), timeout=900)


def tool_version(cmd: list[str]) -> str:
    """Given a version command, return its first output line, or why it failed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (exit {proc.returncode})"


def restored_root(target: Path, source: Path) -> Path:
    """Given a restore target and the backed-up source, return where the source landed."""
    for candidate in (target / str(source).lstrip("/"), target / source.name, target):
        if candidate.is_dir():
            return candidate
    raise BenchError(f"restored tree for {source} not found under {target}")


@dataclass
class TreeDiff:
    """Differences between an original tree and its restored copy."""

    entries: int
    kinds: Counter[str]
    samples: list[str]

    @property
    def ok(self) -> bool:
        """Return whether the trees are identical."""
        return not self.kinds

    def summary(self) -> str:
        """Return a one-line pass/fail summary."""
        if self.ok:
            return f"PASS ({self.entries:,} entries identical)"
        kinds = ", ".join(f"{k}: {n}" for k, n in self.kinds.most_common())
        return f"FAIL ({kinds}; e.g. {'; '.join(self.samples[:3])})"


def compare_trees(original: Path, restored: Path) -> TreeDiff:
    """Given two trees, compare types, bytes, permission bits, mtimes, symlinks, hard links."""
    left, right = _index(original), _index(restored)
    kinds: Counter[str] = Counter()
    samples: list[str] = []

    def note(kind: str, rel: str) -> None:
        kinds[kind] += 1
        if len(samples) < 5:
            samples.append(f"{kind} {rel}")

    for rel in sorted(left.keys() - right.keys()):
        note("missing", rel)
    for rel in sorted(right.keys() - left.keys()):
        note("extra", rel)
    for rel in sorted(left.keys() & right.keys()):
        a, b = left[rel], right[rel]
        if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
            note("type", rel)
            continue
        if stat.S_ISLNK(a.st_mode):
            if os.readlink(original / rel) != os.readlink(restored / rel):
                note("symlink-target", rel)
            continue
        if stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode):
            note("mode", rel)
        if int(a.st_mtime) != int(b.st_mtime):
            note("dir-mtime" if stat.S_ISDIR(a.st_mode) else "mtime", rel)
        if stat.S_ISREG(a.st_mode) and not _same_bytes(original / rel, restored / rel, a, b):
            note("content", rel)
    if _link_groups(left) != _link_groups(right):
        note("hardlinks", "(groups differ)")
    return TreeDiff(entries=len(left), kinds=kinds, samples=samples)


def _index(root: Path) -> dict[str, os.stat_result]:
    out: dict[str, os.stat_result] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = os.lstat(full)
    return out


def _link_groups(index: dict[str, os.stat_result]) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for rel, st in index.items():
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            groups.setdefault(st.st_ino, set()).add(rel)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def _same_bytes(a: Path, b: Path, sa: os.stat_result, sb: os.stat_result) -> bool:
    if sa.st_size != sb.st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True
