"""Format 2 against someone who can write to the storage (issue 13, item 3): objects
moved, copied, replayed, renamed or edited — marker, manifest, packs, pack tables, index
objects — are detected by restore and by verify, each naming the object; nothing but
ids, times and sizes is readable without the key; an unknown format is refused."""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from backapp.engine.format.blockindex import index_names
from backapp.engine.format.crypto import MasterKey
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.errors import UnsupportedFormatError
from tests.engine.format2.world import (
    World,
    flip_byte,
    restore_sees,
    verify_sees,
)
from tests.helpers.hostile import file_entry, object_path, pack_of, rewrite_marker


@pytest.fixture(params=[True, False], ids=["encrypted", "plain"])
def key(request: pytest.FixtureRequest, master_key: MasterKey) -> MasterKey | None:
    return master_key if request.param else None


@pytest.fixture
def world(tmp_path: Path, key: MasterKey | None) -> World:
    return World.make(tmp_path, key)


def both_see(world: World, backup_id: str, *names: str, slug: str | None = None) -> None:
    """Assert restore and verify both notice something wrong with a backup, and that each
    names every one of ``names`` (the object in question)."""
    for how, seen in (
        ("restore", restore_sees(world, backup_id, slug)),
        ("verify", verify_sees(world, backup_id, slug)),
    ):
        assert seen.noticed, f"{how} did not notice"
        for name in names:
            assert name in seen.text, f"{how} does not name {name}: {seen.text}"


# -- the commit marker -------------------------------------------------------------


def test_a_marker_copied_over_another_backups_is_detected(world: World) -> None:
    first = world.backup().backup_id
    (world.src / "docs" / "new.txt").write_text("later\n")
    second = world.backup().backup_id
    # Replay: the older backup's marker takes the place of the newer one's.
    shutil.copy(
        object_path(world.repo(), first, "backup.json"),
        object_path(world.repo(), second, "backup.json"),
    )
    both_see(world, second, f"backup {second}: backup.json")
    world.restore_exactly(first)  # the original stays intact


def test_a_marker_moved_into_a_new_backup_folder_is_detected(world: World) -> None:
    first = world.backup().backup_id
    moved = first[:-6] + "abcdef"  # another backup id of the same shape
    src = object_path(world.repo(), first, "backup.json")
    dst = object_path(world.repo(), moved, "backup.json")
    dst.parent.mkdir()
    shutil.move(src, dst)
    world.taken[moved] = world.taken[first]
    both_see(world, moved, f"backup {moved}: backup.json")


def test_a_marker_copied_into_another_configs_folder_is_detected(world: World) -> None:
    """Two configs, same key, same destination: one's marker in the other's folder."""
    ours = world.backup(slug="config-a").backup_id
    theirs = world.backup(slug="config-b").backup_id
    target = object_path(world.repo("config-b"), theirs, "backup.json")
    shutil.copy(object_path(world.repo("config-a"), ours, "backup.json"), target)
    both_see(world, theirs, f"backup {theirs}: backup.json", slug="config-b")
    # And as a new backup of its own in the other folder.
    planted = object_path(world.repo("config-b"), ours, "backup.json")
    planted.parent.mkdir()
    shutil.copy(object_path(world.repo("config-a"), ours, "backup.json"), planted)
    both_see(world, ours, f"backup {ours}: backup.json", slug="config-b")
    world.restore_exactly(ours, slug="config-a")


def test_an_edit_of_the_markers_readable_part_is_detected(world: World) -> None:
    backup_id = world.backup().backup_id
    path = object_path(world.repo(), backup_id, "backup.json")
    doc = json.loads(path.read_text())
    doc["completedAt"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(doc))
    both_see(world, backup_id, f"backup {backup_id}: backup.json", "completedAt")


def test_an_edit_of_the_markers_sealed_part_is_detected(world: World) -> None:
    backup_id = world.backup().backup_id
    path = object_path(world.repo(), backup_id, "backup.json")
    doc = json.loads(path.read_text())
    if world.key is not None:
        sealed = bytearray(base64.b64decode(doc["sealed"]))
        sealed[len(sealed) // 2] ^= 0x01
        doc["sealed"] = base64.b64encode(bytes(sealed)).decode()
    else:  # the description, without a matching check
        doc["info"]["stats"]["files"] += 1
    path.write_text(json.dumps(doc))
    both_see(world, backup_id, f"backup {backup_id}: backup.json")


def test_an_unknown_format_version_is_refused_with_a_message(world: World) -> None:
    backup_id = world.backup().backup_id
    path = object_path(world.repo(), backup_id, "backup.json")
    doc = json.loads(path.read_text())
    doc["formatVersion"] = 3
    path.write_text(json.dumps(doc))
    target = world.tmp / "target"
    with pytest.raises(UnsupportedFormatError, match=f"backup {backup_id} has storage format 3"):
        run_restore(world.repo(), backup_id, target, master=world.key)
    assert not target.exists() or not any(target.iterdir())
    result = run_verify(world.repo(), backup_id, master=world.key, full=True)
    assert not result.ok
    assert "has storage format 3" in result.summary(), result.summary()


def test_a_plain_marker_rewritten_with_its_check_still_cannot_change_config(
    tmp_path: Path,
) -> None:
    """Even a plain marker rewritten consistently (as anyone can without a key) cannot
    claim another config folder's backup for this one."""
    world = World.make(tmp_path, None)
    backup_id = world.backup().backup_id
    rewrite_marker(world.repo(), backup_id, lambda info: {**info, "configSlug": "elsewhere"})
    both_see(world, backup_id, f"backup {backup_id}")


# -- packs, blocks and their tables ------------------------------------------------


def test_a_byte_edited_in_a_data_block_is_detected(world: World) -> None:
    backup_id = world.backup().backup_id
    entry = file_entry(world.repo(), backup_id, "blob.bin")
    block_id = entry["blocks"][0][0]
    pack, offset, length = pack_of(world.repo(), block_id)
    flip_byte(pack, offset + length // 2)
    both_see(world, backup_id, pack.name, "blob.bin")


def test_two_blocks_swapped_inside_a_pack_are_detected(world: World) -> None:
    backup_id = world.backup().backup_id
    a = file_entry(world.repo(), backup_id, "twin-a.bin")["blocks"][0][0]
    b = file_entry(world.repo(), backup_id, "twin-b.bin")["blocks"][0][0]
    pack_a, off_a, len_a = pack_of(world.repo(), a)
    pack_b, off_b, len_b = pack_of(world.repo(), b)
    assert (pack_a, len_a) == (pack_b, len_b), "the twins' blocks should be alike"
    data = bytearray(pack_a.read_bytes())
    block_a, block_b = data[off_a : off_a + len_a], data[off_b : off_b + len_b]
    data[off_a : off_a + len_a], data[off_b : off_b + len_b] = block_b, block_a
    pack_a.write_bytes(bytes(data))
    both_see(world, backup_id, pack_a.name, "twin-a.bin", "twin-b.bin")


def test_a_byte_edited_in_a_pack_table_is_reported_by_verify(world: World) -> None:
    backup_id = world.backup().backup_id
    block_id = file_entry(world.repo(), backup_id, "blob.bin")["blocks"][0][0]
    pack, _, _ = pack_of(world.repo(), block_id)
    raw = pack.read_bytes()
    (table_len,) = struct.unpack(">I", raw[-4:])
    flip_byte(pack, len(raw) - 4 - table_len // 2)
    seen = verify_sees(world, backup_id)
    assert seen.noticed and pack.name in seen.text, seen.text


def test_a_byte_edited_in_a_pack_table_leaves_the_data_restorable(world: World) -> None:
    """The table only repeats what the index says: the backup's data is intact and
    restores exactly."""
    backup_id = world.backup().backup_id
    block_id = file_entry(world.repo(), backup_id, "blob.bin")["blocks"][0][0]
    pack, _, _ = pack_of(world.repo(), block_id)
    raw = pack.read_bytes()
    (table_len,) = struct.unpack(">I", raw[-4:])
    flip_byte(pack, len(raw) - 4 - table_len // 2)
    world.restore_exactly(backup_id)


def _index_from_another_config(world: World) -> tuple[str, str]:
    """Two configs, same key, same destination, same data: the other config's packs and
    index put in place of this one's."""
    world.backup(slug="config-a")
    theirs = world.backup(slug="config-b").backup_id
    world.slug = "config-b"
    a, b = world.dest / "config-a", world.dest / "config-b"
    for sub in ("packs", "index"):
        shutil.rmtree(b / sub)
        shutil.copytree(a / sub, b / sub)
    (name,) = index_names(world.storage, "config-b")
    return theirs, name


def _index_renamed(world: World) -> tuple[str, str]:
    backup_id = world.backup().backup_id
    (name,) = index_names(world.storage, world.slug)
    renamed = "0" * 31 + "1"
    index_dir = world.dest / world.slug / "index"
    (index_dir / name).rename(index_dir / renamed)
    return backup_id, renamed


def _index_edited(world: World) -> tuple[str, str]:
    backup_id = world.backup().backup_id
    (name,) = index_names(world.storage, world.slug)
    path = world.dest / world.slug / "index" / name
    flip_byte(path, path.stat().st_size // 2)
    return backup_id, name


INDEX_ATTACKS: dict[str, Callable[[World], tuple[str, str]]] = {
    "pack and index from another config": _index_from_another_config,
    "index renamed": _index_renamed,
    "byte edited in index": _index_edited,
}


@pytest.mark.parametrize("attack", INDEX_ATTACKS)
def test_an_index_moved_renamed_or_edited_is_detected(world: World, attack: str) -> None:
    """Restore and verify both fail, and say an index may be damaged."""
    backup_id, _ = INDEX_ATTACKS[attack](world)
    for seen in (restore_sees(world, backup_id), verify_sees(world, backup_id)):
        assert seen.noticed
        assert "index" in seen.text, seen.text


@pytest.mark.parametrize("attack", INDEX_ATTACKS)
def test_restore_and_verify_name_the_index_they_cannot_open(world: World, attack: str) -> None:
    backup_id, name = INDEX_ATTACKS[attack](world)
    both_see(world, backup_id, f"index {name}")


def test_a_pack_copied_from_another_config_alongside_is_never_used(world: World) -> None:
    """The other config's pack and index added beside this one's change nothing here:
    the backup restores exactly; verify names the foreign index it cannot open."""
    world.backup(slug="config-a")
    theirs = world.backup(slug="config-b").backup_id
    a, b = world.dest / "config-a", world.dest / "config-b"
    foreign = index_names(world.storage, "config-a")[0]
    shutil.copy(a / "index" / foreign, b / "index" / foreign)
    for pack in (a / "packs").rglob("*"):
        if pack.is_file():
            (b / "packs" / pack.parent.name).mkdir(exist_ok=True)
            shutil.copy(pack, b / "packs" / pack.parent.name / pack.name)
    world.restore_exactly(theirs, slug="config-b")
    seen = verify_sees(world, theirs, slug="config-b")
    assert f"index {foreign}" in seen.text, seen.text


def test_a_byte_edited_in_the_manifest_is_detected(world: World) -> None:
    backup_id = world.backup().backup_id
    info = world.repo().load(backup_id)
    assert info.manifest_blocks
    pack, offset, length = pack_of(world.repo(), info.manifest_blocks[0][0])
    flip_byte(pack, offset + length // 2)
    both_see(world, backup_id, f"manifest of backup {backup_id}", pack.name)


# -- what storage shows without the key --------------------------------------------


def test_without_the_key_storage_reveals_no_paths_names_or_config(
    tmp_path: Path, master_key: MasterKey
) -> None:
    world = World.make(tmp_path, master_key)
    world.backup()
    (world.src / "docs" / "later.txt").write_text("more\n")
    world.backup()
    secrets = [
        str(world.src).encode(),
        world.src.name.encode() + b"/docs",
        b"quarterly-plans-7731",
        b"notes.md",
        b"twin-a.bin",
        b"Payroll Archive Zebra",
        b"the plans, in plain words",
    ]
    stored = world.stored_files()
    assert stored
    for path in stored:
        raw = path.read_bytes()
        for secret in secrets:
            assert secret not in raw, f"{path.relative_to(world.dest)} shows {secret!r}"
        assert SECRET_IN_PATH not in str(path)
    for marker in world.dest.rglob("backup.json"):
        doc = json.loads(marker.read_text())
        assert set(doc) == {
            "formatVersion",
            "backupId",
            "createdAt",
            "completedAt",
            "encrypted",
            "storedBytes",
            "keyCheck",  # the same for every key's markers: tells a wrong key from damage
            "sealed",
        }


SECRET_IN_PATH = "quarterly-plans"
