"""What a legitimate tree holds beyond bytes and modes comes back too: extended attributes
and ACLs, sparse files (sparse), hard links to symlinks, the folders above a partial
restore, paths as long as Linux allows; and what cannot come back exactly is said."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.hostile import read_manifest, rewrite_manifest
from tests.helpers.trees import restored_root, snapshot

MIB = 1024 * 1024


def _backup(tmp_path: Path, src: Path, **options: object) -> Repository:
    config = make_config([src], tmp_path / "dest", **options)
    storage = LocalStorage(tmp_path / "dest")
    run_backup(config, storage, slug=slugify(config.name), block_size=64 * 1024)
    return Repository(storage, "", slugify(config.name))


def _xattrs(path: Path, follow: bool = True) -> dict[str, bytes]:
    return {
        n: os.getxattr(path, n, follow_symlinks=follow)
        for n in os.listxattr(path, follow_symlinks=follow)
    }


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """Given (tag, permissions, id) triples, return a system.posix_acl_* value."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


_UNDEFINED = 0xFFFFFFFF
ACCESS_ACL = _acl(
    (0x01, 6, _UNDEFINED),
    (0x02, 4, 1000),
    (0x04, 4, _UNDEFINED),
    (0x10, 4, _UNDEFINED),
    (0x20, 0, _UNDEFINED),
)
DEFAULT_ACL = _acl(
    (0x01, 7, _UNDEFINED),
    (0x04, 5, _UNDEFINED),
    (0x08, 5, 1000),
    (0x10, 5, _UNDEFINED),
    (0x20, 0, _UNDEFINED),
)
# A file capability (cap_net_bind_service, effective): what `setcap` stores.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def test_extended_attributes_acls_and_capabilities_are_restored(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    plain, tool = src / "dir" / "notes.txt", src / "tool"
    plain.write_text("notes\n")
    tool.write_bytes(b"\x7fELF fake")
    os.chmod(tool, 0o755)
    os.setxattr(plain, "user.origin", b"camera \x00\xff binary")
    os.setxattr(plain, "system.posix_acl_access", ACCESS_ACL)
    os.setxattr(src / "dir", "user.kind", b"album")
    os.setxattr(src / "dir", "system.posix_acl_default", DEFAULT_ACL)
    os.setxattr(tool, "security.capability", CAPABILITY)
    before = {p: _xattrs(p) for p in (plain, tool, src / "dir")}
    repo = _backup(tmp_path, src)
    target = tmp_path / "target"
    restored = run_restore(repo, "latest", target, restore_owner=True)
    assert restored.ok and not restored.warnings, (restored.errors, restored.warnings)
    root = restored_root(target, src)
    for path, attrs in before.items():
        assert _xattrs(root / path.relative_to(src)) == attrs
    assert snapshot(root) == snapshot(src)


def test_attributes_a_filesystem_refuses_are_counted_not_fatal(tmp_path: Path) -> None:
    # Linux refuses user.* attributes on symlinks: as a filesystem without xattrs would.
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    (src / "link").symlink_to("f")
    repo = _backup(tmp_path, src)
    link_path = str(src / "link").lstrip("/")

    def give_the_link_an_attribute(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        for entry in entries:
            if entry["path"] == link_path:
                entry["xattrs"] = {"user.note": "aGk="}
        return entries

    rewrite_manifest(repo, repo.ids()[0], give_the_link_an_attribute)
    restored = run_restore(repo, "latest", tmp_path / "target")
    assert restored.ok
    assert ("", "1 extended attribute(s) could not be set") in restored.warnings
    assert any(p == link_path and "user.note" in m for p, m in restored.warnings)
    assert os.readlink(restored_root(tmp_path / "target", src) / "link") == "f"


def test_sparse_files_are_restored_sparse_and_exact(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    image = src / "disk.img"
    with open(image, "wb") as f:
        f.truncate(256 * MIB)  # one big hole
        f.seek(64 * MIB)
        f.write(os.urandom(MIB))
        f.seek(200 * MIB + 123)
        f.write(b"middle")
    (src / "zeros.bin").write_bytes(bytes(2 * MIB))  # written zeros: not sparse, stays so
    repo = _backup(tmp_path, src)
    _, entries, _ = read_manifest(repo, repo.ids()[0])
    sparse = {e["path"].rsplit("/", 1)[-1]: e.get("sparse", False) for e in entries}
    assert sparse == {"src": False, "disk.img": True, "zeros.bin": False} | {
        k: v for k, v in sparse.items() if k not in ("disk.img", "zeros.bin")
    }
    target = tmp_path / "target"
    assert run_restore(repo, "latest", target).ok
    root = restored_root(target, src)
    restored = root / "disk.img"
    assert restored.stat().st_size == 256 * MIB
    assert restored.stat().st_blocks * 512 < 4 * MIB  # holes stayed holes
    assert restored.read_bytes() == image.read_bytes()
    assert (root / "zeros.bin").stat().st_blocks * 512 >= 2 * MIB
    assert run_verify(repo, "latest", full=True).ok


def test_a_file_ending_in_a_hole_keeps_its_length(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "tail-hole", "wb") as f:
        f.write(b"head")
        f.truncate(10 * MIB)
    repo = _backup(tmp_path, src)
    assert run_restore(repo, "latest", tmp_path / "t").ok
    out = restored_root(tmp_path / "t", src) / "tail-hole"
    assert out.stat().st_size == 10 * MIB
    assert out.read_bytes() == (src / "tail-hole").read_bytes()


def test_a_hard_link_to_a_symlink_stays_one_inode(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to("somewhere/else")
    os.link(src / "link", src / "same-link", follow_symlinks=False)
    repo = _backup(tmp_path, src)
    assert run_restore(repo, "latest", tmp_path / "t").ok
    root = restored_root(tmp_path / "t", src)
    a, b = os.lstat(root / "link"), os.lstat(root / "same-link")
    assert stat.S_ISLNK(a.st_mode) and (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    assert os.readlink(root / "same-link") == "somewhere/else"


def test_a_partial_restore_gives_the_folders_above_their_backed_up_metadata(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    deep = src / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "wanted.txt").write_text("me\n")
    (src / "a" / "other.txt").write_text("not me\n")
    os.chmod(src / "a", 0o750)
    os.chmod(deep, 0o711)
    os.utime(deep, ns=(1_500_000_000 * 10**9, 1_500_000_000 * 10**9))
    os.utime(src / "a", ns=(1_400_000_000 * 10**9, 1_400_000_000 * 10**9))
    repo = _backup(tmp_path, src)
    wanted = "/" + str(deep / "wanted.txt").lstrip("/")
    restored = run_restore(repo, "latest", tmp_path / "t", include=[wanted])
    assert restored.ok
    root = restored_root(tmp_path / "t", src)
    assert sorted(p.name for p in root.rglob("*")) == ["a", "b", "wanted.txt"]
    for rel in ("a", "a/b"):
        got, want = (root / rel).stat(), (src / rel).stat()
        assert (stat.S_IMODE(got.st_mode), got.st_mtime_ns) == (
            stat.S_IMODE(want.st_mode),
            want.st_mtime_ns,
        )


def test_a_file_that_changed_while_backed_up_is_named_at_restore(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "db.log").write_text("was being written\n")
    repo = _backup(tmp_path, src)
    torn = str(src / "db.log").lstrip("/")

    def mark_torn(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        for entry in entries:
            if entry["path"] == torn:
                entry["partial"] = True
        return entries

    rewrite_manifest(repo, repo.ids()[0], mark_torn)
    restored = run_restore(repo, "latest", tmp_path / "t")
    assert restored.ok  # what was read is restored exactly...
    assert [p for p, _ in restored.warnings] == [torn]  # ...and said to be torn
    assert "changed while it was backed up" in restored.warnings[0][1]


def _mkdirs_deep(base: Path, total: int) -> Path:
    """Make folders below base until the path is ``total`` bytes long (past what path-based
    calls of a restore target would take); return the deepest."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    length = len(str(base))
    parts = []
    try:
        while length + 201 <= total:
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            parts.append(name)
            length += 201
        name = "f" * (total - length - 1)
        leaf = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"deep\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return base.joinpath(*parts, name)


def test_a_path_as_long_as_linux_allows_restores_under_a_target(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    leaf = _mkdirs_deep(src, 4095)
    assert len(str(leaf)) == 4095
    repo = _backup(tmp_path, src)
    target = tmp_path / "target-with-a-longer-name"
    restored = run_restore(repo, "latest", target)
    assert restored.ok, restored.errors
    fd = os.open(restored_root(target, src), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in leaf.relative_to(src).parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf_fd = os.open(leaf.name, os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf_fd, 100) == b"deep\n"
        os.close(leaf_fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("policy", ["skip", "keep-both"])
def test_a_new_hard_link_never_links_to_a_kept_local_file(tmp_path: Path, policy: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("backed up\n")
    os.link(src / "a", src / "b")
    repo = _backup(tmp_path, src)
    target = tmp_path / "t"
    root = restored_root(target, src)
    root.mkdir(parents=True)
    (root / "a").write_text("edited locally\n")
    restored = run_restore(repo, "latest", target, existing=policy)  # type: ignore[arg-type]
    assert restored.ok, restored.errors
    assert (root / "a").read_text() == "edited locally\n"  # kept
    assert (root / "b").read_text() == "backed up\n"  # the backup's content, not the local
    assert os.stat(root / "b").st_ino != os.stat(root / "a").st_ino
    if policy == "keep-both":
        copy = root / f"a.restored-{repo.ids()[0]}"
        assert copy.read_text() == "backed up\n"
        assert os.stat(copy).st_ino == os.stat(root / "b").st_ino  # linked as backed up
