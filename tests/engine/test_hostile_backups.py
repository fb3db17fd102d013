"""Hand-made hostile backups (as someone who can write to the storage would make them)
and targets holding links: restore never writes outside its target, refuses each bad
entry with a message and restores the rest; verify reports every entry restore refuses.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.errors import ArchiveError, IntegrityError, UnsupportedFormatError, WrongKeyError
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.hostile import (
    Doc,
    first_dir,
    first_file,
    object_path,
    rewrite_manifest,
    rewrite_marker,
)
from tests.helpers.trees import restored_root, snapshot


class World:
    """A source tree, its backup, and an 'outside' folder that nothing may touch."""

    def __init__(self, tmp_path: Path, key: MasterKey | None = None, version: int = 1) -> None:
        self.src = tmp_path / "src"
        (self.src / "docs" / "sub").mkdir(parents=True)
        (self.src / "docs" / "a.txt").write_text("alpha\n")
        (self.src / "docs" / "sub" / "b.txt").write_text("beta\n")
        (self.src / "c.bin").write_bytes(os.urandom(50_000))
        self.outside = tmp_path / "outside"
        (self.outside / "x").mkdir(parents=True)
        os.chmod(self.outside / "x", 0o755)
        (self.outside / "shadow").write_text("root:secret\n")
        os.chmod(self.outside / "shadow", 0o640)
        self.before = snapshot(self.outside)
        self.stat_before = {p: os.lstat(p) for p in self.outside.rglob("*")}
        self.config = make_config([self.src], tmp_path / "dest", encryption=key is not None)
        self.storage = LocalStorage(tmp_path / "dest")
        self.result = run_backup(
            self.config,
            self.storage,
            slug=slugify(self.config.name),
            key=key,
            block_size=16 * 1024,
            format_version=version,
        )
        self.repo = Repository(self.storage, "", slugify(self.config.name))
        self.backup_id = self.result.backup_id
        self.target = tmp_path / "target"
        self.key = key

    def rel(self, path: Path) -> str:
        return str(path).lstrip("/")

    def assert_outside_untouched(self, *, unlinked: bool = False) -> None:
        """Nothing outside changed (with ``unlinked``, but for a hard link that the target
        held to an outside file being replaced: its link count drops, nothing else)."""
        now_snap = snapshot(self.outside)
        if unlinked:
            now_snap = {k: v[:5] for k, v in now_snap.items()}
            assert now_snap == {k: v[:5] for k, v in self.before.items()}
        else:
            assert now_snap == self.before
        for path, st in self.stat_before.items():
            now = os.lstat(path)
            assert (now.st_mode, now.st_uid, now.st_gid, now.st_mtime_ns) == (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_mtime_ns,
            ), path
            assert unlinked or now.st_nlink == st.st_nlink, path


Edit = Callable[[World, list[Doc]], list[Doc]]


def _link_through_own_symlink(w: World, es: list[Doc]) -> list[Doc]:
    d = first_dir(es)
    return [
        *es,
        {**d, "path": "evil", "type": "symlink", "target": str(w.outside)},
        {**d, "path": "evil2", "type": "hardlink", "target": "evil/shadow"},
    ]


def _file_and_link_beneath_own_symlink(w: World, es: list[Doc]) -> list[Doc]:
    d = first_dir(es)
    return [
        *es,
        {**d, "path": "evil", "type": "symlink", "target": str(w.outside)},
        {**first_file(es), "path": "evil/shadow"},
        {**d, "path": "zz", "type": "hardlink", "target": "evil/shadow"},
    ]


def _dir_beneath_own_symlink(w: World, es: list[Doc]) -> list[Doc]:
    d = first_dir(es)
    return [
        *es,
        {**d, "path": "s", "type": "symlink", "target": str(w.outside)},
        {**d, "path": "s/x", "type": "dir", "mode": 0o777, "uid": 4242, "gid": 4242},
        {**d, "path": "s/x/deeper", "type": "dir"},
        {**first_file(es), "path": "s/x/f"},
    ]


_UNSAFE = ["../x", "/abs/x", "a/../../up", "a//b", "a/./b", "", ".", "ok/\ud800", "nul\x00"]


def _unsafe_paths(w: World, es: list[Doc]) -> list[Doc]:
    return [*es, *({**first_file(es), "path": p} for p in _UNSAFE)]


_NUMBERS: list[tuple[str, dict[str, Any]]] = [
    ("huge-mtime", {"mtime": 2**70}),
    ("huge-mode", {"mode": 0o777777}),
    ("negative-mode", {"mode": -1}),
    ("negative-size", {"size": -5}),
    ("huge-uid", {"uid": 2**40}),
    ("negative-offset", {"offset": -1}),
    ("far-offset", {"offset": 2**40}),
    ("bad-digest", {"sha256": "zz"}),
    ("fifo", {"type": "fifo"}),
    ("string-mode", {"mode": "644"}),
    ("true-size", {"size": True}),
    ("dotdot-backup", {"backup": "../../x"}),
    ("unrequired-backup", {"backup": "20200101T000000.000Z-abcdef"}),
    ("bad-blocks", {"blocks": "x"}),
    ("blocks-short-of-size", {"blocks": [["ab" * 32, 1]]}),
    ("bad-block-id", {"blocks": [["../" * 20 + "zzzz", 5]]}),
    ("bad-header-block", {"h": ["x", 5]}),
]


def _bad_numbers(w: World, es: list[Doc]) -> list[Doc]:
    return [*es, *({**first_file(es), "path": f"n/{name}", **over} for name, over in _NUMBERS)]


def _missing_field(w: World, es: list[Doc]) -> list[Doc]:
    broken = {k: v for k, v in first_file(es).items() if k != "mode"}
    return [*es, {**broken, "path": "no-mode"}]


def _link_to_a_folder(w: World, es: list[Doc]) -> list[Doc]:
    d = first_dir(es)
    return [*es, {**d, "path": "zlink", "type": "hardlink", "target": d["path"]}]


CASES: dict[str, tuple[Edit, Callable[[World], set[str]]]] = {
    "hard link through a symlink of the backup": (_link_through_own_symlink, lambda w: {"evil2"}),
    "file and link beneath a symlink of the backup": (
        _file_and_link_beneath_own_symlink,
        lambda w: {"evil/shadow", "zz"},
    ),
    "folder beneath a symlink of the backup": (
        _dir_beneath_own_symlink,
        lambda w: {"s/x", "s/x/deeper", "s/x/f"},
    ),
    "unsafe paths": (_unsafe_paths, lambda w: set(_UNSAFE) - {""} | {"manifest"}),
    "numbers out of range and bad fields": (
        _bad_numbers,
        lambda w: {f"n/{name}" for name, _ in _NUMBERS},
    ),
    "a missing field": (_missing_field, lambda w: {"no-mode"}),
    "a hard link to a folder": (_link_to_a_folder, lambda w: {"zlink"}),
}


def _refused(errors: list[tuple[str, str]]) -> set[str]:
    # Entries without a usable path are named by their place in the manifest.
    return {"manifest" if "entry " in p and p.startswith("manifest of") else p for p, _ in errors}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_restore_refuses_each_hostile_entry_and_restores_the_rest(
    tmp_path: Path, case: str, version: int
) -> None:
    edit, expected = CASES[case]
    w = World(tmp_path, version=version)
    rewrite_manifest(w.repo, w.backup_id, lambda es: edit(w, es))
    restored = run_restore(w.repo, "latest", w.target)
    assert not restored.ok
    assert _refused(restored.errors) == expected(w), restored.errors
    assert all(message for _, message in restored.errors)
    w.assert_outside_untouched()
    assert snapshot(restored_root(w.target, w.src)) == snapshot(w.src)  # the rest, exact
    leftovers = [p for p in w.target.rglob("*") if ".backapp-restoring-" in p.name]
    assert leftovers == []


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("full", [False, True])
def test_verify_reports_every_entry_restore_refuses(
    tmp_path: Path, case: str, full: bool, version: int
) -> None:
    edit, expected = CASES[case]
    w = World(tmp_path, version=version)
    rewrite_manifest(w.repo, w.backup_id, lambda es: edit(w, es))
    result = run_verify(w.repo, "latest", full=full)
    assert not result.ok
    assert expected(w) <= _refused(result.problems), result.problems


@pytest.mark.parametrize("version", [1, 2])
def test_entries_listed_twice_or_out_of_order_are_refused(tmp_path: Path, version: int) -> None:
    w = World(tmp_path, version=version)
    docs_a = w.rel(w.src / "docs" / "a.txt")

    def edit(es: list[Doc]) -> list[Doc]:
        twice = next(e for e in es if e["path"] == docs_a)
        return [*es, {**twice, "mode": 0o777}, {**first_dir(es), "path": "aaa-late"}]

    rewrite_manifest(w.repo, w.backup_id, edit, order=False)
    restored = run_restore(w.repo, "latest", w.target)
    assert {p for p, _ in restored.errors} == {docs_a, "aaa-late"}
    assert all("twice or out of archive order" in m for _, m in restored.errors)
    assert stat.S_IMODE((restored_root(w.target, w.src) / "docs" / "a.txt").stat().st_mode) != 0o777
    assert {p for p, _ in run_verify(w.repo, "latest").problems} >= {docs_a, "aaa-late"}


# -- targets holding links -------------------------------------------------------------


def _plant(w: World, rel: str, kind: str) -> Path:
    """Given a path below the restored source, put a link there pointing outside."""
    where = restored_root(w.target, w.src) / rel
    where.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir-symlink":
        where.symlink_to(w.outside / "x")
    elif kind == "file-symlink":
        where.symlink_to(w.outside / "shadow")
    else:
        os.link(w.outside / "shadow", where)
        w.before = snapshot(w.outside)  # one more link now
        w.stat_before = {p: os.lstat(p) for p in w.outside.rglob("*")}
    return where


@pytest.mark.parametrize("policy", ["overwrite", "skip", "keep-both"])
@pytest.mark.parametrize(
    ("rel", "kind"),
    [
        ("docs", "dir-symlink"),
        ("docs/sub", "dir-symlink"),
        ("docs/a.txt", "file-symlink"),
        ("docs/a.txt", "hardlink"),
    ],
)
def test_a_restore_into_a_target_holding_links_never_writes_through_them(
    tmp_path: Path, policy: Any, rel: str, kind: str
) -> None:
    w = World(tmp_path)
    planted = _plant(w, rel, kind)
    restored = run_restore(w.repo, "latest", w.target, existing=policy)
    w.assert_outside_untouched(unlinked=kind == "hardlink" and policy == "overwrite")
    assert (w.outside / "shadow").read_text() == "root:secret\n"
    root = restored_root(w.target, w.src)
    if policy == "overwrite":
        assert restored.ok, restored.errors
        assert snapshot(root) == snapshot(w.src)  # the links were replaced, not followed
    elif kind == "dir-symlink":
        assert planted.is_symlink()  # kept, and nothing was written beneath it
        refused = {p for p, _ in restored.errors}
        below = {w.rel(w.src / rel / n) for n in os.listdir(w.src / rel)}
        assert refused >= below - {w.rel(w.src / "docs" / "sub")} and refused
        assert all("symlink in the target" in m for _, m in restored.errors)
    else:
        assert restored.ok, restored.errors
        assert planted.is_symlink() or planted.stat().st_nlink == 2  # kept as it was


def test_an_in_place_restore_follows_the_live_systems_links_above_the_source(
    tmp_path: Path,
) -> None:
    # /srv/data backed up; on the day of the restore /srv is a symlink to /mnt/srv (moved
    # disks): restoring to the original location writes through that link, as the user
    # means, but never through links below the source.
    real = tmp_path / "disk" / "srv"
    (real / "data").mkdir(parents=True)
    (real / "data" / "f.txt").write_text("one\n")
    (tmp_path / "live").mkdir()
    link = tmp_path / "live" / "srv"
    link.symlink_to(real)
    config = make_config([link / "data"], tmp_path / "dest")
    storage = LocalStorage(tmp_path / "dest")
    run_backup(config, storage, slug=slugify(config.name))
    (real / "data" / "f.txt").write_text("changed\n")
    repo = Repository(storage, "", slugify(config.name))
    restored = run_restore(repo, "latest", Path("/"), existing="overwrite")
    assert restored.ok, restored.errors
    assert link.is_symlink()
    assert (real / "data" / "f.txt").read_text() == "one\n"


# -- damaged or hostile backup.json --------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (
            lambda d: {**d, "data": {**d["data"], "name": "../../../etc/x"}},
            ArchiveError,
            "data.name",
        ),
        (
            lambda d: {**d, "manifest": {**d["manifest"], "name": "/etc/passwd"}},
            ArchiveError,
            "name",
        ),
        (lambda d: {**d, "formatVersion": 3}, UnsupportedFormatError, "format 3"),
        (lambda d: {**d, "backupId": "20200101T000000.000Z-000000"}, ArchiveError, "describes"),
        (lambda d: {**d, "requires": ["../x"]}, ArchiveError, "requires"),
        (lambda d: [d], ArchiveError, "not an object"),
    ],
)
def test_a_damaged_or_hostile_backup_json_is_a_clear_error(
    tmp_path: Path, edit: Callable[[Doc], Any], error: type[Exception], message: str
) -> None:
    w = World(tmp_path)
    rewrite_marker(w.repo, w.backup_id, edit)
    with pytest.raises(error, match=message):
        run_restore(w.repo, "latest", w.target)
    result = run_verify(w.repo, "latest")
    assert not result.ok
    assert message in result.problems[0][1]


# -- encryption headers, sizes and block sizes -----------------------------------------------


def test_a_damaged_manifest_header_is_damage_not_a_wrong_key(
    tmp_path: Path, master_key: MasterKey
) -> None:
    w = World(tmp_path, master_key)
    manifest = object_path(w.repo, w.backup_id, "manifest.json.gz.enc")
    raw = bytearray(manifest.read_bytes())
    raw[20] ^= 0x01  # inside the salt
    manifest.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="header is damaged") as caught:
        run_restore(w.repo, "latest", w.target, master=master_key)
    assert not isinstance(caught.value, WrongKeyError)
    result = run_verify(w.repo, "latest", master=master_key)
    assert not result.ok and "header is damaged" in result.problems[0][1]
    other = MasterKey(os.urandom(32))
    with pytest.raises(WrongKeyError):
        run_verify(w.repo, "latest", master=other)


def test_a_damaged_data_header_names_every_file_not_a_wrong_key(
    tmp_path: Path, master_key: MasterKey
) -> None:
    w = World(tmp_path, master_key)
    data = object_path(w.repo, w.backup_id, w.result.info.data.name)
    raw = bytearray(data.read_bytes())
    raw[50] ^= 0x01  # inside the key check
    data.write_bytes(bytes(raw))
    restored = run_restore(w.repo, "latest", w.target, master=master_key)
    assert {p for p, _ in restored.errors} == {
        w.rel(w.src / "c.bin"),
        w.rel(w.src / "docs" / "a.txt"),
        w.rel(w.src / "docs" / "sub" / "b.txt"),
    }
    assert all("header is damaged" in m for _, m in restored.errors)
    result = run_verify(w.repo, "latest", master=master_key)
    assert not result.ok
    assert {p for p, _ in restored.errors} <= {p for p, _ in result.problems}


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: {**d, "compression": {**d["compression"], "blockSize": 4096}},
        lambda d: {**d, "data": {**d["data"], "size": 7}, "manifest": {**d["manifest"], "size": 9}},
    ],
    ids=["blockSize", "sizes"],
)
def test_edited_block_size_or_sizes_in_backup_json_are_noted_and_restore_exactly(
    tmp_path: Path, master_key: MasterKey, edit: Callable[[Doc], Doc]
) -> None:
    w = World(tmp_path, master_key)
    rewrite_marker(w.repo, w.backup_id, edit)
    result = run_verify(w.repo, "latest", master=master_key, full=True)
    assert result.ok, result.problems  # restore goes by the manifest: nothing is lost
    assert result.warnings
    restored = run_restore(w.repo, "latest", w.target, master=master_key)
    assert restored.ok, restored.errors
    assert snapshot(restored_root(w.target, w.src)) == snapshot(w.src)


def test_a_manifest_line_or_backup_json_too_large_to_be_real_is_damage(tmp_path: Path) -> None:
    w = World(tmp_path)
    manifest = object_path(w.repo, w.backup_id, "manifest.json.gz")
    head = gzip.decompress(manifest.read_bytes()).split(b"\n", 1)[0]
    endless = head + b"\n" + b'{"path": "' + b"a" * (20 * 1024 * 1024)  # no end of line
    manifest.write_bytes(gzip.compress(endless))
    with pytest.raises(IntegrityError, match="longer than"):
        run_restore(w.repo, "latest", w.target)
    assert "longer than" in " ".join(m for _, m in run_verify(w.repo, "latest").problems)
    marker = object_path(w.repo, w.backup_id, "backup.json")
    marker.write_bytes(b" " * (2 * 1024 * 1024))
    with pytest.raises(IntegrityError, match="too large"):
        run_restore(w.repo, "latest", w.target)
