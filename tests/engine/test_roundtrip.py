"""Backup then restore reproduces a tree exactly: bytes, modes, mtimes, links, empty dirs."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.trees import restored_root, snapshot, without_specials

# -- generated trees ---------------------------------------------------------

_name_chars = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
names = st.text(_name_chars, min_size=1, max_size=24).filter(
    lambda n: n not in (".", "..") and len(n.encode()) <= 255
)
long_names = st.integers(200, 255).map(lambda n: "L" * n)
mtimes = st.integers(0, 4_000_000_000 * 10**9)


@dataclass
class FileNode:
    data: bytes
    mode: int
    mtime: int


@dataclass
class LinkNode:
    target: str


@dataclass
class DirNode:
    children: dict[str, object]
    mode: int
    mtime: int


file_nodes = st.builds(
    FileNode,
    data=st.one_of(st.binary(max_size=3000), st.binary(min_size=5000, max_size=20000)),
    mode=st.sampled_from([0o644, 0o600, 0o755, 0o400, 0o4755, 0o640]),
    mtime=mtimes,
)
link_nodes = st.builds(
    LinkNode, target=st.sampled_from(["a", "../x", "/etc/hostname", "dangling/nowhere", "sub/f"])
)
trees = st.recursive(
    st.one_of(file_nodes, link_nodes),
    lambda children: st.builds(
        DirNode,
        children=st.dictionaries(st.one_of(names, long_names), children, max_size=5),
        mode=st.sampled_from([0o755, 0o700, 0o750, 0o1777]),
        mtime=mtimes,
    ),
    max_leaves=12,
)
roots = st.dictionaries(names, trees, min_size=1, max_size=6)


def build(root: Path, children: dict[str, object]) -> None:
    """Given a folder and nodes, create them, setting mtimes deepest first."""
    for name, node in children.items():
        path = root / name
        if isinstance(node, FileNode):
            path.write_bytes(node.data)
            os.chmod(path, node.mode)
            os.utime(path, ns=(node.mtime, node.mtime))
        elif isinstance(node, LinkNode):
            os.symlink(node.target, path)
            os.utime(path, ns=(10**18, 10**18), follow_symlinks=False)
        elif isinstance(node, DirNode):
            path.mkdir()
            build(path, node.children)
            os.chmod(path, node.mode)
            os.utime(path, ns=(node.mtime, node.mtime))


options = st.fixed_dictionaries(
    {
        "compression": st.booleans(),
        "compressionAlgorithm": st.sampled_from(["gzip", "zstd"]),
        "compressionLevel": st.integers(1, 9),
        "encryption": st.booleans(),
    }
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tree=roots,
    opts=options,
    block_size=st.sampled_from([4096, 16384, 1024 * 1024]),
    segment_size=st.sampled_from([1000, 4096, 1024 * 1024]),
)
def test_backup_then_restore_reproduces_generated_trees_exactly(
    tree: dict[str, object],
    opts: dict[str, object],
    block_size: int,
    segment_size: int,
    master_key: MasterKey,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        src.mkdir()
        build(src, tree)
        config = make_config([src], base / "dest", **opts)
        storage = LocalStorage(base / "dest")
        result = run_backup(
            config,
            storage,
            slug=slugify(config.name),
            key=master_key,
            block_size=block_size,
            segment_size=segment_size,
        )
        assert result.skips.count == 0
        repo = Repository(storage, "", slugify(config.name))
        restored = run_restore(repo, "latest", base / "restore", master=master_key)
        assert restored.ok, restored.errors
        assert snapshot(restored_root(base / "restore", src)) == snapshot(src)


# -- specific trees ----------------------------------------------------------


def _sample_tree(src: Path) -> None:
    (src / "docs" / "deep" / "deeper").mkdir(parents=True)
    (src / "empty" / "nested-empty").mkdir(parents=True)
    (src / "docs" / "readme.md").write_text("# hello\n")
    (src / "docs" / "deep" / "deeper" / "data.bin").write_bytes(os.urandom(300_000))
    (src / "unicode-ünïcødé-日本語.txt").write_text("snowman ☃\n")
    (src / ("n" * 250)).write_text("long name\n")
    longdir = src / ("d" * 120) / ("e" * 120) / ("f" * 120)
    longdir.mkdir(parents=True)
    (longdir / ("g" * 100)).write_text("long path\n")
    (src / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "script.sh", 0o750)
    (src / "empty.txt").write_bytes(b"")
    os.symlink("docs/readme.md", src / "link-to-readme")
    os.symlink("docs", src / "link-to-dir")
    os.symlink("/nonexistent/target", src / "dangling")
    os.link(src / "docs" / "readme.md", src / "hardlink-to-readme")
    os.utime(src / "docs" / "readme.md", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.utime(src / "empty", ns=(1_500_000_000_000_000_001, 1_500_000_000_000_000_001))


@pytest.mark.parametrize("encryption", [False, True])
def test_restore_reproduces_links_hardlinks_long_names_and_empty_dirs(
    tmp_path: Path, master_key: MasterKey, encryption: bool
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _sample_tree(src)
    config = make_config([src], tmp_path / "dest", encryption=encryption)
    storage = LocalStorage(tmp_path / "dest")
    run_backup(config, storage, slug=slugify(config.name), key=master_key)
    restored = run_restore(
        Repository(storage, "", slugify(config.name)), "latest", tmp_path / "out", master=master_key
    )
    assert restored.ok, restored.errors
    out = restored_root(tmp_path / "out", src)
    assert snapshot(out) == snapshot(src)
    # The hard link is a hard link again, not a copy.
    assert (out / "hardlink-to-readme").stat().st_ino == (out / "docs" / "readme.md").stat().st_ino


def test_several_sources_are_restored_side_by_side(tmp_path: Path) -> None:
    sources = []
    for name in ("alpha", "beta", "alpha-2"):
        src = tmp_path / "data" / name
        (src / "x").mkdir(parents=True)
        (src / "x" / "file.txt").write_text(name)
        sources.append(src)
    config = make_config(sources, tmp_path / "dest")
    storage = LocalStorage(tmp_path / "dest")
    run_backup(config, storage, slug=slugify(config.name))
    restored = run_restore(
        Repository(storage, "", slugify(config.name)), "latest", tmp_path / "out"
    )
    assert restored.ok
    for src in sources:
        assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)


def test_snapshot_helper_sees_differences(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "f").write_text("x")
    before = snapshot(a)
    os.chmod(a / "f", 0o600)
    assert snapshot(a) != before
    os.utime(a / "f", ns=(1, 1))
    assert snapshot(a) != without_specials(before)
