"""Prune in format 2 (issue 13, item 4): forget + prune frees space and every kept
backup restores exactly; a prune started while a backup runs waits for it, and both
come out whole; prune deletes nothing when it cannot tell what a backup references; a
pack no index lists (a run killed before its index) goes only after the grace period."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backapp.engine.backup import BackupResult
from backapp.engine.format.blockindex import index_key, index_names
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.format.packs import PackWriter, pack_key
from backapp.engine.prune import run_prune
from backapp.errors import PruneRefusedError
from backapp.storage.wrappers import ThrottledStorage, TokenBucket
from tests.engine.format2.world import World, flip_byte, randbytes
from tests.helpers.hostile import pack_of

MiB = 1024 * 1024


@pytest.fixture(params=[True, False], ids=["encrypted", "plain"])
def key(request: pytest.FixtureRequest, master_key: MasterKey) -> MasterKey | None:
    return master_key if request.param else None


def three_backups(world: World) -> list[str]:
    """Back up three times, a different 1 MiB file each time; return the ids."""
    ids = []
    for n in range(3):
        (world.src / "blob.bin").write_bytes(randbytes(MiB, seed=100 + n))
        ids.append(world.backup().backup_id)
    return ids


def listing(world: World) -> dict[str, int]:
    """Return every stored file and its size."""
    return {str(p.relative_to(world.dest)): p.stat().st_size for p in world.stored_files()}


def test_forget_and_prune_free_space_and_every_kept_backup_restores(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = World.make(tmp_path, key)
    ids = three_backups(world)
    world.repo().delete(ids[1])
    before = listing(world)
    dry = run_prune(world.repo(), master=key, dry_run=True)
    assert dry.bytes_freed >= MiB and listing(world) == before  # a dry run deletes nothing
    result = run_prune(world.repo(), master=key)
    assert result.backups == 2
    assert result.bytes_freed >= MiB
    assert world.stored_bytes() <= sum(before.values()) - MiB
    for backup_id in (ids[0], ids[2]):
        world.restore_exactly(backup_id)
        world.verify_passes(backup_id)
    # Once pruned, prune again finds nothing to free.
    again = run_prune(world.repo(), master=key)
    assert again.bytes_freed == 0 and again.blocks_removed == 0


def test_a_prune_while_a_backup_runs_waits_and_both_come_out_whole(
    tmp_path: Path, master_key: MasterKey
) -> None:
    world = World.make(tmp_path, master_key, type="incremental")
    ids = three_backups(world)
    world.repo().delete(ids[1])
    (world.src / "new.bin").write_bytes(randbytes(3 * MiB, seed=9))
    slow = ThrottledStorage(world.storage, TokenBucket(1.5 * MiB), None)
    done: dict[str, float] = {}
    made: list[BackupResult] = []
    failed: list[BaseException] = []

    def backup() -> None:
        try:
            made.append(world.backup(storage=slow))
        except BaseException as exc:  # reported by the test below
            failed.append(exc)
        done["backup"] = time.monotonic()

    thread = threading.Thread(target=backup)
    thread.start()
    # Once the backup writes a new pack it holds the lock: prune starts beside it.
    packs = world.dest / world.slug / "packs"
    known = {p.name for p in packs.rglob("*")}
    deadline = time.monotonic() + 10
    while not {p.name for p in packs.rglob("*")} - known and time.monotonic() < deadline:
        time.sleep(0.01)
    assert thread.is_alive(), "the backup ended before prune could start beside it"
    result = run_prune(world.repo(), master=master_key, lock_wait=60)
    done["prune"] = time.monotonic()
    thread.join(30)
    assert not failed, failed
    assert done["prune"] >= done["backup"], "prune did not wait for the running backup"
    assert result.backups == 3  # it saw the new backup, and kept its blocks
    assert result.bytes_freed >= MiB  # and removed the forgotten one's
    for backup_id in (ids[0], ids[2], made[0].backup_id):
        world.restore_exactly(backup_id)
        world.verify_passes(backup_id)


def test_a_backup_starting_leaves_a_lock_being_written_beside_it_alone(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = World.make(tmp_path, key)
    world.backup()
    # Another process is writing its lock (a local write is a temp file, then a rename).
    other = world.storage.open_writer(world.repo().base + "/locks/20990101T000000-abc.json")
    other.write(b"{}")
    world.backup()  # starts meanwhile, cleans up what earlier runs left
    other.commit()


def test_prune_deletes_nothing_when_a_manifest_cannot_be_read(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = World.make(tmp_path, key)
    ids = three_backups(world)
    world.repo().delete(ids[0])
    info = world.repo().load(ids[1])
    assert info.manifest_blocks
    pack, offset, length = pack_of(world.repo(), info.manifest_blocks[0][0])
    flip_byte(pack, offset + length // 2)
    before = listing(world)
    with pytest.raises(PruneRefusedError, match=f"manifest of backup {ids[1]}"):
        run_prune(world.repo(), master=key)
    assert listing(world) == before
    world.restore_exactly(ids[2])


def test_prune_deletes_nothing_when_a_marker_cannot_be_read(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = World.make(tmp_path, key)
    ids = three_backups(world)
    world.repo().delete(ids[0])
    (world.dest / world.slug / ids[1] / "backup.json").write_text("{")
    before = listing(world)
    with pytest.raises(PruneRefusedError, match=f"backup {ids[1]}"):
        run_prune(world.repo(), master=key)
    assert listing(world) == before


def test_prune_deletes_nothing_without_the_key_of_an_encrypted_backup(
    tmp_path: Path, master_key: MasterKey
) -> None:
    world = World.make(tmp_path, master_key)
    ids = three_backups(world)
    world.repo().delete(ids[0])
    before = listing(world)
    with pytest.raises(PruneRefusedError, match="BACKUP_ENCRYPTION_KEY"):
        run_prune(world.repo(key=False))
    assert listing(world) == before
    for backup_id in ids[1:]:
        world.restore_exactly(backup_id)


def orphan_pack(repo: Repository) -> str:
    """Write a pack no index lists (a run killed before its index); return its key."""
    names: list[str] = []
    writer = PackWriter(repo.storage, repo.base, repo.keys, lambda name, _: names.append(name))
    block = randbytes(200_000, seed=5)
    writer.add(repo.keys.block_id(block), block, len(block), "none")
    writer.flush()
    return pack_key(repo.base, names[0])


def test_an_unlisted_pack_goes_only_after_the_grace_period(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = World.make(tmp_path, key)
    kept = world.backup().backup_id
    orphan = world.dest / orphan_pack(world.repo())
    now = datetime.now(UTC)
    young = run_prune(world.repo(), master=key, now=now, grace=timedelta(hours=1))
    assert young.packs_unlisted_removed == 0 and orphan.exists()
    old = run_prune(world.repo(), master=key, now=now + timedelta(hours=2))
    assert old.packs_unlisted_removed == 1 and not orphan.exists()
    world.restore_exactly(kept)
    world.verify_passes(kept)


def test_the_packs_of_a_run_killed_before_its_index_go_after_the_grace_period(
    tmp_path: Path, key: MasterKey | None
) -> None:
    """A run that died after uploading its packs but before its index (and so before its
    marker): its packs are unlisted; prune leaves them while a run could still be writing
    them, removes them after the grace period, and the backup before it stays whole."""
    world = World.make(tmp_path, key)
    kept = world.backup().backup_id
    before = set(index_names(world.storage, world.slug))
    (world.src / "blob.bin").write_bytes(randbytes(MiB, seed=77))
    killed = world.backup().backup_id
    world.storage.delete(world.repo().key(killed, "backup.json"))
    for name in set(index_names(world.storage, world.slug)) - before:
        world.storage.delete(index_key(world.repo().base, name))
    packs_before = listing(world)
    now = datetime.now(UTC)
    young = run_prune(world.repo(), master=key, now=now, grace=timedelta(minutes=30))
    assert young.packs_unlisted_removed == 0
    assert {k for k in listing(world) if "/packs/" in k} == {
        k for k in packs_before if "/packs/" in k
    }
    old = run_prune(
        world.repo(), master=key, now=now + timedelta(minutes=31), grace=timedelta(minutes=30)
    )
    assert old.packs_unlisted_removed >= 1
    assert old.bytes_freed >= MiB
    world.restore_exactly(kept)
    world.verify_passes(kept)
