"""Scenarios about growth: corpus ×1 vs ×4, and a tree of a million empty files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import corpus
from measure import tree_bytes
from scenarios import Scenarios
from tools import free_gib

MIN_FREE_GIB = 20.0
_LEAF_FILES = 100
_FANOUT = 100


def scaling_rows(sc: Scenarios) -> None:
    """Given the scenarios, measure BackApp full zstd+enc on the corpus ×1 and ×4."""
    r, s = sc.r, sc.s
    big_ready = (s.work / f"corpus-{s.scale_size}-s{s.seed}.done").exists()
    free = free_gib(s.work)
    if not big_ready and free < MIN_FREE_GIB:
        note = f"skipped: {free:.1f} GiB free, {MIN_FREE_GIB:g} GiB needed for the ×4 corpus"
        r.facts["scaling_note"] = note
        r.skip("scale_x1", f"Scaling ×1 ({s.size})", note)
        return
    big = corpus.ensure_corpus(s.work, s.scale_size, s.seed)
    corpus.warm_cache(sc.corpus)
    corpus.warm_cache(big)
    r.facts["scale_corpus_bytes"] = tree_bytes(big)
    sc.full_backup_rows("scale_x1", "scale_x4")
    for key, label, source in (
        ("scale_x1", f"Scaling ×1: BackApp full zstd-3+enc, {s.size} corpus", sc.corpus),
        ("scale_x4", f"Scaling ×4: BackApp full zstd-3+enc, {s.scale_size} corpus", big),
    ):
        dest_dir = sc.folder(f"backapp-{key}")
        dest = {"type": "local", "path": str(dest_dir)}
        cfg = sc.backapp.config(f"bench-{key}", source, dest, algorithm="zstd", level=3)
        sc.backup_row(
            key,
            label,
            lambda cfg=cfg: sc.backapp.backup(cfg),
            lambda d=dest_dir: _size(d),
            repeatable=True,
            fresh=dest_dir,
        )
        shutil.rmtree(dest_dir, ignore_errors=True)
    small, large = r.get("scale_x1"), r.get("scale_x4")
    if small is not None and large is not None and small.rss_kib:
        r.facts["scaling_rss_growth"] = large.rss_kib / small.rss_kib - 1
        r.facts["scaling_wall_ratio"] = large.wall / small.wall if small.wall else None


def million_rows(sc: Scenarios, count: int) -> None:
    """Given the scenarios and a file count, back up that many empty files (BackApp, restic)."""
    root = ensure_many_files(sc.s.work, count)
    corpus.warm_cache(root)
    label = f"{count:,} empty files"
    dest_dir = sc.folder("backapp-million")
    dest = {"type": "local", "path": str(dest_dir)}
    cfg = sc.backapp.config("bench-million", root, dest, algorithm="zstd", level=3)
    restic = sc.restic(str(sc.folder("restic-million")))
    restic.init()
    restic_repo = Path(restic.repo)
    sc.backup_row(
        "million_restic",
        f"restic full, {label}",
        lambda: restic.backup(root),
        lambda: _size(restic_repo),
    )
    sc.full_backup_rows("million_ba")
    sc.backup_row(
        "million_ba",
        f"BackApp full zstd-3+enc, {label}",
        lambda: sc.backapp.backup(cfg),
        lambda: _size(dest_dir),
        ref="million_restic",
    )
    shutil.rmtree(dest_dir, ignore_errors=True)
    shutil.rmtree(restic_repo, ignore_errors=True)


def ensure_many_files(work: Path, count: int) -> Path:
    """Given a work folder and a count, return a tree of that many empty files (made once).

    Layout: d000/s000/f000 … — 100 files per leaf folder, 100 leaves per top folder.
    """
    root = work / f"many-{count}"
    marker = work / f"many-{count}.done"
    if marker.exists() and root.is_dir():
        return root
    if root.exists():
        shutil.rmtree(root)
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC
    made = leaf = 0
    while made < count:
        folder = root / f"d{leaf // _FANOUT:04d}" / f"s{leaf % _FANOUT:03d}"
        folder.mkdir(parents=True)
        for i in range(min(_LEAF_FILES, count - made)):
            os.close(os.open(folder / f"f{i:03d}", flags, 0o644))
        made += _LEAF_FILES
        leaf += 1
    marker.write_text(f"{count}\n", encoding="utf-8")
    return root


def _size(path: Path) -> int:
    return tree_bytes(path) if path.exists() else 0
