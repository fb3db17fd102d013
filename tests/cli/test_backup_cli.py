"""The CLI from a config file, as a user runs it: backup, list, restore, decrypt, exit codes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from backapp.domain.config import parse_config
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.storage.local import LocalStorage
from tests.cli.conftest import CliRunner, write_config
from tests.helpers.trees import restored_root, snapshot, without_specials


def _tree(src: Path) -> Path:
    (src / "docs" / "sub").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "docs" / "a.txt").write_text("alpha\n")
    (src / "docs" / "sub" / "b.bin").write_bytes(os.urandom(2_500_000))
    (src / "ünïcode.txt").write_text("☃")
    os.symlink("docs/a.txt", src / "link")
    os.mkfifo(src / "fifo")
    return src


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return _tree(tmp_path / "src")


def test_backup_list_and_restore_a_local_destination(
    cli: CliRunner, tmp_path: Path, source: Path, encryption_key: str
) -> None:
    cfg = write_config(
        tmp_path / "cfg.json",
        [source],
        {"type": "local", "path": str(tmp_path / "dest")},
        encryption=True,
    )
    env = {"BACKUP_ENCRYPTION_KEY": encryption_key}
    run = cli("backup", "run", "--config-file", str(cfg), "--json", env=env)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "completed"
    assert doc["filesProcessed"] == 4
    assert doc["filesSkipped"] == 1  # the FIFO
    assert doc["totalBytes"] == 2_500_000 + 6 + 3
    assert doc["bytesTransferred"] > 0
    for field in ("backupId", "durationSeconds"):
        assert field in doc

    listed = cli("backups", "list", "-c", str(cfg), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    backups = json.loads(listed.stdout)["backups"]
    assert [b["backupId"] for b in backups] == [doc["backupId"]]
    assert backups[0]["encrypted"] is True

    restored = cli(
        "restore",
        "-c",
        str(cfg),
        "--backup",
        doc["backupId"],
        "--target",
        str(tmp_path / "out"),
        env=env,
    )
    assert restored.returncode == 0, restored.stderr
    assert "Restored backup" in restored.stdout
    assert snapshot(restored_root(tmp_path / "out", source)) == without_specials(snapshot(source))


def test_text_output_summarises_the_backup_and_its_skips(
    cli: CliRunner, tmp_path: Path, source: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    run = cli("backup", "run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr
    assert "completed" in run.stdout
    assert "fifo skipped" in run.stdout
    listed = cli("backups", "list", "-c", str(cfg))
    assert listed.returncode == 0
    assert "full" in listed.stdout


def test_progress_bar_is_drawn_on_a_terminal(cli: CliRunner, tmp_path: Path, source: Path) -> None:
    if shutil.which("script") is None:
        pytest.fail("util-linux 'script' is needed to give the CLI a terminal")
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    import shlex
    import sys

    command = shlex.join([sys.executable, "-m", "backapp", "backup", "run", "-c", str(cfg)])
    run = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    assert run.returncode == 0, run.stdout
    assert "files" in run.stdout and "Backing up CLI Test" in run.stdout


def test_invalid_config_exits_2_naming_the_field(cli: CliRunner, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.json",
        [Path("relative/path")],
        {"type": "local", "path": "/tmp/x"},
        compressionLevel=12,
    )
    run = cli("backup", "run", "-c", str(cfg))
    assert run.returncode == 2
    assert "sources[0].path" in run.stderr
    assert "options.compressionLevel" in run.stderr
    assert "Traceback" not in run.stderr
    as_json = cli("backup", "run", "-c", str(cfg), "--json")
    assert as_json.returncode == 2
    fields = {p["field"] for p in json.loads(as_json.stdout)["problems"]}
    assert fields == {"sources[0].path", "options.compressionLevel"}


def test_config_file_that_is_not_json_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"name": "x",\n  "enabled": tru }')
    run = cli("backup", "run", "-c", str(cfg))
    assert run.returncode == 2
    assert "not valid JSON" in run.stderr and "line 2" in run.stderr
    missing = cli("backup", "run", "-c", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "cannot read config file" in missing.stderr


@pytest.mark.parametrize(
    ("key", "message"),
    [(None, "BACKUP_ENCRYPTION_KEY is not set"), ("c2hvcnQ=", "decodes to 5 bytes")],
)
def test_missing_or_short_key_exits_2_before_uploading(
    cli: CliRunner, tmp_path: Path, source: Path, key: str | None, message: str
) -> None:
    dest = tmp_path / "dest"
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(dest)}, encryption=True
    )
    run = cli("backup", "run", "-c", str(cfg), env={"BACKUP_ENCRYPTION_KEY": key} if key else {})
    assert run.returncode == 2
    assert message in run.stderr
    assert not dest.exists() or not any(dest.rglob("*"))


def test_restore_refuses_a_non_empty_target_without_overwrite(
    cli: CliRunner, tmp_path: Path, source: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    assert cli("backup", "run", "-c", str(cfg)).returncode == 0
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused = cli("restore", "-c", str(cfg), "--target", str(target))
    assert refused.returncode == 2
    assert "not empty" in refused.stderr
    allowed = cli("restore", "-c", str(cfg), "--target", str(target), "--overwrite")
    assert allowed.returncode == 0, allowed.stderr
    assert (target / "keep.txt").read_text() == "mine"
    assert (restored_root(target, source) / "docs" / "a.txt").read_text() == "alpha\n"


def test_restore_with_include_patterns(cli: CliRunner, tmp_path: Path, source: Path) -> None:
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    assert cli("backup", "run", "-c", str(cfg)).returncode == 0
    run = cli(
        "restore",
        "-c",
        str(cfg),
        "--target",
        str(tmp_path / "t"),
        "--include",
        str(source / "docs" / "sub"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    root = restored_root(tmp_path / "t", source)
    assert sorted(p.name for p in root.rglob("*")) == ["b.bin", "docs", "sub"]


def test_unknown_backup_id_and_wrong_key_exit_2(
    cli: CliRunner, tmp_path: Path, source: Path, encryption_key: str
) -> None:
    cfg = write_config(
        tmp_path / "c.json",
        [source],
        {"type": "local", "path": str(tmp_path / "d")},
        encryption=True,
    )
    assert (
        cli(
            "backup", "run", "-c", str(cfg), env={"BACKUP_ENCRYPTION_KEY": encryption_key}
        ).returncode
        == 0
    )
    unknown = cli(
        "restore",
        "-c",
        str(cfg),
        "-b",
        "19990101T000000Z-abcdef",
        "-t",
        str(tmp_path / "t1"),
        env={"BACKUP_ENCRYPTION_KEY": encryption_key},
    )
    assert unknown.returncode == 2
    assert "not found" in unknown.stderr
    other_key = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="
    wrong = cli(
        "restore",
        "-c",
        str(cfg),
        "-t",
        str(tmp_path / "t2"),
        env={"BACKUP_ENCRYPTION_KEY": other_key},
    )
    assert wrong.returncode == 2
    assert "different key" in wrong.stderr
    no_key = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "t3"))
    assert no_key.returncode == 2
    assert "BACKUP_ENCRYPTION_KEY" in no_key.stderr


def test_decrypt_turns_an_encrypted_archive_back_into_tar_gz(
    cli: CliRunner, tmp_path: Path, source: Path, encryption_key: str
) -> None:
    cfg = write_config(
        tmp_path / "c.json",
        [source],
        {"type": "local", "path": str(tmp_path / "d")},
        encryption=True,
    )
    env = {"BACKUP_ENCRYPTION_KEY": encryption_key}
    # decrypt is for the objects of format 1 (written by earlier releases): make one.
    backup_id = run_backup(
        parse_config(json.loads(cfg.read_text())),
        LocalStorage(tmp_path / "d"),
        slug="cli-test",
        key=MasterKey.from_base64(encryption_key),
        format_version=1,
    ).backup_id
    enc = next((tmp_path / "d").rglob(f"{backup_id}/data.tar.gz.enc"))
    plain = tmp_path / "data.tar.gz"
    run = cli("decrypt", str(enc), str(plain), env=env)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "xzf", str(plain), "-C", str(out)], check=True)
    assert snapshot(restored_root(out, source)) == without_specials(snapshot(source))

    raw = bytearray(enc.read_bytes())
    raw[len(raw) // 2] ^= 1
    tampered = tmp_path / "tampered.enc"
    tampered.write_bytes(bytes(raw))
    bad = cli("decrypt", str(tampered), str(tmp_path / "bad.tar.gz"), env=env)
    assert bad.returncode == 1
    assert "failed authentication" in bad.stderr
    assert not (tmp_path / "bad.tar.gz").exists()
    exists = cli("decrypt", str(enc), str(plain), env=env)
    assert exists.returncode == 2
    # A link planted where decrypt writes its temp file is replaced, never written through.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / ".again.tar.gz.partial").symlink_to(victim)
    again = cli("decrypt", str(enc), str(tmp_path / "again.tar.gz"), env=env)
    assert again.returncode == 0, again.stderr
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "again.tar.gz").read_bytes() == plain.read_bytes()


def test_unreadable_file_is_skipped_and_reported(
    cli: CliRunner, tmp_path: Path, source: Path
) -> None:
    """Run the CLI where root cannot read a file (a user namespace), as on a real server."""
    if shutil.which("unshare") is None:
        pytest.fail("util-linux 'unshare' is needed")
    secret = source / "docs" / "secret.key"
    secret.write_text("top secret")
    prefix = []
    if os.geteuid() == 0:
        # Inside a user namespace root keeps its powers only over files of mapped owners.
        os.chown(secret, 12345, 12345)
        prefix = ["unshare", "--user", "--map-root-user"]
    os.chmod(secret, 0)
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    run = cli("backup", "run", "-c", str(cfg), "--json", prefix=prefix)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["filesSkipped"] == 2
    assert {"path": str(secret).lstrip("/"), "reason": "permission denied"} in doc["skipped"]


def test_restore_in_place_needs_a_policy_and_brings_back_what_was_lost(
    cli: CliRunner, tmp_path: Path, source: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    assert cli("backup", "run", "-c", str(cfg)).returncode == 0
    neither = cli("restore", "-c", str(cfg))
    assert neither.returncode == 2 and "--target" in neither.stderr
    no_policy = cli("restore", "-c", str(cfg), "--in-place")
    assert no_policy.returncode == 2 and "--existing" in no_policy.stderr
    (source / "docs" / "a.txt").write_text("edited since\n")
    (source / "ünïcode.txt").unlink()
    run = cli(
        "restore",
        "-c",
        str(cfg),
        "--in-place",
        "--existing",
        "skip",
        "--path",
        str(source / "ünïcode.txt"),
        "--path",
        str(source / "docs"),
    )
    assert run.returncode == 0, run.stderr
    assert (source / "ünïcode.txt").read_text() == "☃"
    assert (source / "docs" / "a.txt").read_text() == "edited since\n"  # skipped: kept


def test_include_patterns_keep_their_anchor_and_relative_paths_get_a_hint(
    cli: CliRunner, tmp_path: Path, source: Path
) -> None:
    (source / "empty" / "docs").mkdir()
    (source / "empty" / "docs" / "deep.txt").write_text("deep\n")
    cfg = write_config(
        tmp_path / "c.json", [source], {"type": "local", "path": str(tmp_path / "d")}
    )
    assert cli("backup", "run", "-c", str(cfg)).returncode == 0
    anchored = cli(
        "restore", "-c", str(cfg), "-t", str(tmp_path / "t1"), "--include", f"{source}/docs/"
    )
    assert anchored.returncode == 0, anchored.stderr
    root = restored_root(tmp_path / "t1", source)
    assert (root / "docs" / "a.txt").exists() and not (root / "empty").exists()
    anywhere = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "t2"), "--include", "docs/")
    assert anywhere.returncode == 0, anywhere.stderr
    root = restored_root(tmp_path / "t2", source)
    assert (root / "docs" / "a.txt").exists() and (root / "empty" / "docs" / "deep.txt").exists()
    relative = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "t3"), "--path", "docs")
    assert relative.returncode == 2
    assert "from the root" in relative.stderr and "Traceback" not in relative.stderr


def test_listing_marks_a_damaged_backup_and_verify_exits_1_for_damage_2_for_a_wrong_key(
    cli: CliRunner, tmp_path: Path, source: Path, encryption_key: str
) -> None:
    dest = tmp_path / "d"
    cfg = write_config(
        tmp_path / "c.json",
        [source],
        {"type": "local", "path": str(dest)},
        encryption=True,
        type="incremental",
    )
    env = {"BACKUP_ENCRYPTION_KEY": encryption_key}
    first = json.loads(cli("backup", "run", "-c", str(cfg), "--json", env=env).stdout)
    second = json.loads(cli("backup", "run", "-c", str(cfg), "--json", env=env).stdout)
    (dest / "cli-test" / second["backupId"] / "backup.json").write_text("{")
    listed = cli("backups", "list", "-c", str(cfg), env=env)
    assert listed.returncode == 0, listed.stderr
    assert first["backupId"] in listed.stdout and "DAMAGED" in listed.stdout
    as_json = json.loads(cli("backups", "list", "-c", str(cfg), "--json", env=env).stdout)
    assert [b.get("damaged", False) for b in as_json["backups"]] == [False, True]
    damaged = cli("verify", "-c", str(cfg), "-b", second["backupId"], env=env)
    assert damaged.returncode == 1 and "backup.json is damaged" in damaged.stdout
    marker = dest / "cli-test" / first["backupId"] / "backup.json"
    doc = json.loads(marker.read_text())
    sealed = bytearray(base64.b64decode(doc["sealed"]))
    sealed[20] ^= 1  # inside its sealed description: damage, not a wrong key
    marker.write_text(json.dumps({**doc, "sealed": base64.b64encode(sealed).decode()}))
    header = cli("verify", "-c", str(cfg), "-b", first["backupId"], env=env)
    assert header.returncode == 1 and "failed authentication" in header.stdout
    other = {"BACKUP_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}
    third = json.loads(cli("backup", "run", "-c", str(cfg), "--json", env=env).stdout)
    assert "damaged" in third["parentNote"]  # built on nothing damaged
    wrong = cli("verify", "-c", str(cfg), "-b", third["backupId"], env=other)
    assert wrong.returncode == 2 and "different key" in wrong.stderr
