"""Our tar headers, read back by Python's tarfile and GNU tar: every field survives."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backapp.engine.format.tarstream import BLOCK, TarSink, tar_header

_chars = st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",))
_part = st.text(_chars, min_size=1, max_size=40).filter(lambda p: p not in (".", ".."))
paths = st.lists(_part, min_size=1, max_size=8).map("/".join)
mtimes = st.integers(-(10**18), 2**40 * 10**9)
ids = st.one_of(st.integers(0, 2**21 - 1), st.integers(2**21, 2**32 - 1))


def _stream(entries: list[tuple[str, str, dict[str, int], bytes, str]]) -> bytes:
    out: list[bytearray] = []
    sink = TarSink(BLOCK * 4, lambda block: out.append(bytearray(block)))
    for path, kind, meta, data, target in entries:
        sink.write(tar_header(path, kind, size=len(data), target=target, **meta))
        sink.write(data)
        sink.pad()
    sink.finish()
    return b"".join(out)


@settings(max_examples=200, deadline=None)
@given(
    path=paths,
    kind=st.sampled_from(["file", "dir", "symlink", "hardlink"]),
    mode=st.integers(0, 0o7777),
    uid=ids,
    gid=ids,
    mtime=mtimes,
    data=st.binary(max_size=1500),
    target=paths,
)
def test_tarfile_reads_back_every_field(
    path: str, kind: str, mode: int, uid: int, gid: int, mtime: int, data: bytes, target: str
) -> None:
    data = data if kind == "file" else b""
    target = target if kind in ("symlink", "hardlink") else ""
    meta = {"mode": mode, "uid": uid, "gid": gid, "mtime_ns": mtime}
    raw = _stream([(path, kind, meta, data, target), ("after", "file", meta, b"x", "")])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        first, second = tar.getmembers()
        assert first.name == path
        assert {
            "file": first.isreg(),
            "dir": first.isdir(),
            "symlink": first.issym(),
            "hardlink": first.islnk(),
        }[kind]
        assert (first.mode, first.uid, first.gid, first.size) == (mode, uid, gid, len(data))
        assert first.linkname == target
        assert abs(first.mtime - mtime / 1e9) <= 1e-6 * max(1.0, abs(mtime / 1e9))
        if kind == "file":
            extracted = tar.extractfile(first)
            assert extracted is not None and extracted.read() == data
        assert second.name == "after"


def test_names_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9-latin1.txt")  # a surrogate-escaped byte
    meta = {"mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 1_700_000_000_123_456_789}
    raw = _stream([(name, "file", meta, b"bytes", "")])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", errors="surrogateescape") as tar:
        assert tar.getnames() == [name]


def test_gnu_tar_restores_long_names_links_and_nanosecond_mtimes(tmp_path: Path) -> None:
    if shutil.which("tar") is None:
        pytest.fail("GNU tar is needed")
    long_dir = "d" * 150 + "/ünï"
    meta = {
        "mode": 0o640,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "mtime_ns": 1_600_000_000_987_654_321,
    }
    raw = _stream(
        [
            (long_dir, "dir", {**meta, "mode": 0o755}, b"", ""),
            (f"{long_dir}/{'f' * 120}.txt", "file", meta, b"content", ""),
            (f"{long_dir}/link", "symlink", {**meta, "mode": 0o777}, b"", "l" * 130),
            (f"{long_dir}/hard", "hardlink", meta, b"", f"{long_dir}/{'f' * 120}.txt"),
        ]
    )
    archive = tmp_path / "a.tar"
    archive.write_bytes(raw)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "xf", str(archive), "-C", str(out)], check=True)
    file = out / long_dir / f"{'f' * 120}.txt"
    assert file.read_bytes() == b"content"
    assert file.stat().st_mode & 0o7777 == 0o640
    assert file.stat().st_mtime_ns == 1_600_000_000_987_654_321
    assert os.readlink(out / long_dir / "link") == "l" * 130
    assert (out / long_dir / "hard").stat().st_ino == file.stat().st_ino


def test_extended_attributes_are_read_back_by_gnu_tar_and_tarfile(tmp_path: Path) -> None:
    if shutil.which("tar") is None:
        pytest.fail("GNU tar is needed")
    meta = {"mode": 0o644, "uid": os.getuid(), "gid": os.getgid(), "mtime_ns": 10**18}
    attrs = {"user.origin": b"camera", "user.binary": bytes([0, 255, 10, 61, 32])}
    out: list[bytearray] = []
    sink = TarSink(BLOCK * 4, lambda block: out.append(bytearray(block)))
    sink.write(tar_header("f.txt", "file", size=2, xattrs=attrs, **meta))
    sink.write(b"hi")
    sink.pad()
    sink.finish()
    raw = b"".join(out)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", errors="surrogateescape") as tar:
        member = tar.getmembers()[0]
        assert member.name == "f.txt" and member.size == 2
        assert member.pax_headers["SCHILY.xattr.user.origin"] == "camera"
    (tmp_path / "a.tar").write_bytes(raw)
    dest = tmp_path / "out"
    dest.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xf", str(tmp_path / "a.tar"), "-C", str(dest)],
        check=True,
    )
    restored = dest / "f.txt"
    assert restored.read_bytes() == b"hi"
    assert {n: os.getxattr(restored, n) for n in os.listxattr(restored)} == attrs
