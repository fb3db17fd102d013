"""docs/FORMAT.md is a promise: its standalone recipes must really restore (format 2: an
encrypted incremental backup; the tar stream through standard tar; format 1: decrypt and
restore as before)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey, encrypt_stream
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.trees import restored_root, snapshot

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"


def _recipe() -> str:
    text = DOC.read_text()
    section = text.split("#### Format 1: decrypt without BackApp", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "FORMAT.md lost its standalone decrypt recipe"
    return match.group(1)


def test_standalone_decrypt_recipe_in_format_doc_decrypts_an_object(tmp_path: Path) -> None:
    key_text = base64.b64encode(os.urandom(32)).decode()
    plain = os.urandom(3 * 1024 * 1024 + 123)
    enc = tmp_path / "data.tar.gz.enc"
    enc.write_bytes(b"".join(encrypt_stream([plain], MasterKey.from_base64(key_text))))
    script = tmp_path / "decrypt.py"
    script.write_text(_recipe())
    run = subprocess.run(
        [sys.executable, str(script), str(enc)],
        capture_output=True,
        env={**os.environ, "BACKUP_ENCRYPTION_KEY": key_text},
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout == plain


def test_standalone_recipe_rejects_a_tampered_object(tmp_path: Path) -> None:
    key_text = base64.b64encode(os.urandom(32)).decode()
    raw = bytearray(b"".join(encrypt_stream([b"x" * 5000], MasterKey.from_base64(key_text))))
    raw[100] ^= 1
    enc = tmp_path / "bad.enc"
    enc.write_bytes(bytes(raw))
    script = tmp_path / "decrypt.py"
    script.write_text(_recipe())
    run = subprocess.run(
        [sys.executable, str(script), str(enc)],
        capture_output=True,
        env={**os.environ, "BACKUP_ENCRYPTION_KEY": key_text},
        check=False,
    )
    assert run.returncode != 0
    assert b"InvalidTag" in run.stderr


def _restore_recipe() -> str:
    section = DOC.read_text().split("### Format 1: restore without BackApp", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "FORMAT.md lost its standalone restore recipe"
    return match.group(1)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_standalone_restore_recipe_restores_an_incremental_backup_exactly(
    tmp_path: Path, compression: str
) -> None:
    src = tmp_path / "src"
    (src / "photos" / "2026").mkdir(parents=True)
    (src / "docs").mkdir()
    big = os.urandom(300_000)
    (src / "photos" / "2026" / "a.jpg").write_bytes(big)
    (src / "docs" / "notes.txt").write_text("v1\n")
    (src / "docs" / "gone.txt").write_text("deleted later\n")
    os.symlink("notes.txt", src / "docs" / "link")
    os.link(src / "docs" / "notes.txt", src / "docs" / "hard")
    os.chmod(src / "docs", 0o750)
    options = {
        "compression": compression != "none",
        "compressionAlgorithm": compression if compression != "none" else "gzip",
        "type": "incremental",
    }
    config = make_config([src], tmp_path / "dest", **options)
    storage = LocalStorage(tmp_path / "dest")
    run_backup(config, storage, slug=slugify(config.name), format_version=1)
    # A day of changes: a folder moved, a big file copied and renamed, one edited, one gone.
    (src / "photos" / "2026").rename(src / "photos" / "archive-2026")
    (src / "copy.jpg").write_bytes(big)
    (src / "docs" / "notes.txt").write_text("v2, edited\n")
    (src / "docs" / "gone.txt").unlink()
    incr = run_backup(config, storage, slug=slugify(config.name), format_version=1)
    assert incr.info.type == "incremental" and incr.info.stats.renamed_files >= 1
    script = tmp_path / "restore.py"
    script.write_text(_restore_recipe())
    target = tmp_path / "target"
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "dest" / slugify(config.name)),
            incr.backup_id,
            str(target),
        ],
        capture_output=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert snapshot(restored_root(target, src)) == snapshot(src)


# -- format 2 ---------------------------------------------------------------------------


def _section_code(heading: str) -> str:
    section = DOC.read_text().split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"FORMAT.md lost its recipe under {heading!r}"
    return match.group(1)


def _two_days(tmp_path: Path, **options: object) -> tuple[Path, str, Path]:
    """Back up a tree, change it as a day does, back it up again (incremental); return
    the config folder, the incremental's id and the source."""
    src = tmp_path / "src"
    (src / "photos" / "2026").mkdir(parents=True)
    (src / "docs").mkdir()
    big = os.urandom(700_000)
    (src / "photos" / "2026" / "a.jpg").write_bytes(big)
    (src / "docs" / "notes.txt").write_text("v1\n")
    (src / "docs" / "gone.txt").write_text("deleted later\n")
    (src / "empty").write_bytes(b"")
    os.symlink("notes.txt", src / "docs" / "link")
    os.link(src / "docs" / "notes.txt", src / "docs" / "hard")
    os.chmod(src / "docs", 0o750)
    config = make_config([src], tmp_path / "dest", type="incremental", **options)
    storage = LocalStorage(tmp_path / "dest")
    key = os.environ.get("TEST_KEY")
    master = MasterKey.from_base64(key) if key else None
    run_backup(config, storage, slug=slugify(config.name), key=master)
    (src / "photos" / "2026").rename(src / "photos" / "archive-2026")
    (src / "copy.jpg").write_bytes(big)
    with open(src / "photos" / "archive-2026" / "a.jpg", "r+b") as f:
        f.seek(300_000)
        f.write(b"edited in the middle")
    (src / "docs" / "notes.txt").write_text("v2, edited\n")
    (src / "docs" / "gone.txt").unlink()
    incr = run_backup(config, storage, slug=slugify(config.name), key=master)
    assert incr.info.type == "incremental" and incr.info.format_version == 2
    return tmp_path / "dest" / slugify(config.name), incr.backup_id, src


@pytest.mark.parametrize("encrypted", [True, False])
def test_format2_restore_recipe_restores_an_incremental_backup_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypted: bool
) -> None:
    key_text = base64.b64encode(os.urandom(32)).decode()
    if encrypted:
        monkeypatch.setenv("TEST_KEY", key_text)
    folder, backup_id, src = _two_days(tmp_path, encryption=encrypted)
    script = tmp_path / "restore.py"
    script.write_text(_section_code("## Restore without BackApp"))
    env = {k: v for k, v in os.environ.items() if k != "BACKUP_ENCRYPTION_KEY"}
    if encrypted:
        env["BACKUP_ENCRYPTION_KEY"] = key_text
    target = tmp_path / "target"
    run = subprocess.run(
        [sys.executable, str(script), str(folder), backup_id, str(target)],
        capture_output=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert snapshot(restored_root(target, src)) == snapshot(src)
    if encrypted:  # a wrong key fails loudly, never a wrong file
        env["BACKUP_ENCRYPTION_KEY"] = base64.b64encode(os.urandom(32)).decode()
        bad = subprocess.run(
            [sys.executable, str(script), str(folder), backup_id, str(tmp_path / "t2")],
            capture_output=True,
            env=env,
            check=False,
        )
        assert bad.returncode != 0 and b"InvalidTag" in bad.stderr


@pytest.mark.parametrize(
    ("compression", "tar_args"),
    [("gzip", ["xzf", "-"]), ("zstd", ["--zstd", "-xf", "-"]), ("none", ["xf", "-"])],
)
def test_format2_blocks_piped_into_tar_restore_the_backup(
    tmp_path: Path, compression: str, tar_args: list[str]
) -> None:
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.fail("zstd is not installed (make install installs it)")
    options = {
        "compression": compression != "none",
        "compressionAlgorithm": compression if compression != "none" else "gzip",
    }
    folder, backup_id, src = _two_days(tmp_path, **options)
    script = tmp_path / "blocks.py"
    script.write_text(_section_code("## The tar stream with standard tools"))
    out = tmp_path / "tar-out"
    out.mkdir()
    blocks = subprocess.Popen(
        [sys.executable, str(script), str(folder), backup_id], stdout=subprocess.PIPE
    )
    tar = subprocess.run(["tar", *tar_args, "-C", str(out)], stdin=blocks.stdout, check=False)
    assert blocks.wait() == 0 and tar.returncode == 0
    assert snapshot(restored_root(out, src)) == snapshot(src)
