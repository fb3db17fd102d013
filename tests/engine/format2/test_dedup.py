"""Format 2's deduplication and independence (issue 13, items 1 and 2): unchanged data
is not uploaded again, a rewrite or an insertion inside a big file stores only the
blocks around it, two configs under one key share nothing, and forgetting any backup of
a chain never damages another."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from backapp.engine.format.blockindex import index_names, read_index
from backapp.engine.format.crypto import MasterKey
from backapp.engine.prune import run_prune
from backapp.services.retention import forget_backup
from tests.engine.format2.world import World, randbytes

MiB = 1024 * 1024


@pytest.fixture(params=[True, False], ids=["encrypted", "plain"])
def key(request: pytest.FixtureRequest, master_key: MasterKey) -> MasterKey | None:
    return master_key if request.param else None


def big_world(tmp_path: Path, key: MasterKey | None, size: int, **options: Any) -> World:
    world = World.make(tmp_path, key, **options)
    (world.src / "big.bin").write_bytes(randbytes(size, seed=7))
    return world


def test_a_second_full_backup_of_unchanged_data_uploads_almost_nothing(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = big_world(tmp_path, key, 8 * MiB)
    first = world.backup()
    assert first.bytes_transferred > 8 * MiB
    second = world.backup()
    assert second.info.type == "full" and second.info.stats.total_bytes >= 8 * MiB
    assert second.bytes_transferred < 64 * 1024, second.bytes_transferred
    assert second.info.stats.stored_bytes < 64 * 1024
    world.restore_exactly(second.backup_id)


def test_an_incremental_after_a_1_mib_rewrite_in_a_40_mib_file_stores_a_few_mib(
    tmp_path: Path, master_key: MasterKey
) -> None:
    world = big_world(tmp_path, master_key, 40 * MiB, type="incremental")
    world.backup()
    big = world.src / "big.bin"
    with open(big, "r+b") as f:
        f.seek(17 * MiB + 12345)
        f.write(os.urandom(MiB))
    after = world.backup()
    assert after.info.type == "incremental"
    assert after.info.stats.changed_files == 1
    assert after.info.stats.stored_bytes <= 6 * MiB, after.info.stats.stored_bytes
    world.restore_exactly(after.backup_id)


def test_an_insertion_at_the_start_of_a_big_file_stores_one_or_two_blocks(
    tmp_path: Path, key: MasterKey | None
) -> None:
    world = big_world(tmp_path, key, 16 * MiB)
    world.backup()
    big = world.src / "big.bin"
    big.write_bytes(b"a new first line\n" * 7 + big.read_bytes())
    after = world.backup()
    # Blocks average 1 MiB (at most 4 MiB): two of them, and the manifest and index.
    assert after.info.stats.stored_bytes <= 5 * MiB, after.info.stats.stored_bytes
    assert after.info.stats.stored_bytes < after.info.stats.total_bytes / 3
    world.restore_exactly(after.backup_id)


def stored_blocks(world: World, slug: str) -> tuple[set[str], set[str]]:
    """Return the block ids a config folder's index objects list, and their packs."""
    repo = world.repo(slug)
    rows = [
        row
        for name in index_names(world.storage, slug)
        for row in read_index(world.storage, repo.base, repo.keys, name)
    ]
    return {block_id for block_id, _ in rows}, {loc.pack for _, loc in rows}


def test_two_configs_with_the_same_data_under_the_same_key_share_no_blocks(
    tmp_path: Path, master_key: MasterKey
) -> None:
    world = big_world(tmp_path, master_key, 2 * MiB)
    a = world.backup(slug="config-a")
    b = world.backup(slug="config-b")
    # The second config stores everything again: nothing is shared across configs.
    assert b.info.stats.stored_bytes >= 2 * MiB
    ids_a, packs_a = stored_blocks(world, "config-a")
    ids_b, packs_b = stored_blocks(world, "config-b")
    assert ids_a and ids_b and not ids_a & ids_b, "a block id is the same in two configs"
    assert not packs_a & packs_b
    files_a = {p.name for p in (world.dest / "config-a").rglob("*") if p.is_file()}
    files_b = {p.name for p in (world.dest / "config-b").rglob("*") if p.is_file()}
    assert not files_a & files_b - {"backup.json"}
    # Each stands alone: the other config's folder gone, it restores exactly.
    forget_backup(world.repo("config-a"), a.backup_id)
    run_prune(world.repo("config-a"), master=master_key)
    world.restore_exactly(b.backup_id, slug="config-b")
    world.verify_passes(b.backup_id, slug="config-b")


def chain_of_four(world: World) -> list[str]:
    """Back up a changing tree four times (a full, then incrementals); return the ids."""
    (world.src / "log.txt").write_bytes(randbytes(600_000, seed=1))
    ids = []
    for step in range(4):
        if step:
            with open(world.src / "log.txt", "ab") as f:  # a growing log
                f.write(randbytes(300_000, seed=10 + step))
            (world.src / f"day-{step}.txt").write_text(f"day {step}\n" * 100)
            (world.src / "blob.bin").write_bytes(randbytes(300_000, seed=20 + step))
        result = world.backup()
        assert result.info.type == ("incremental" if step else "full")
        ids.append(result.backup_id)
    return ids


@pytest.mark.parametrize("forgotten", range(4))
def test_forgetting_any_backup_of_a_chain_of_four_damages_no_other(
    tmp_path: Path, master_key: MasterKey, forgotten: int
) -> None:
    world = World.make(tmp_path, master_key, type="incremental")
    ids = chain_of_four(world)
    world.repo().delete(ids[forgotten])  # what forgetting it does to storage
    pruned = run_prune(world.repo(), master=master_key)
    assert pruned.blocks_removed > 0  # the forgotten backup's own blocks went
    assert world.repo().ids() == [i for n, i in enumerate(ids) if n != forgotten]
    for n, backup_id in enumerate(ids):
        if n != forgotten:
            world.restore_exactly(backup_id)
            world.verify_passes(backup_id)


def test_forget_lets_any_backup_of_a_format_2_chain_go(
    tmp_path: Path, master_key: MasterKey
) -> None:
    world = World.make(tmp_path, master_key, type="incremental")
    ids = chain_of_four(world)
    forget_backup(world.repo(), ids[1])  # what `backapp forget --backup` does
    run_prune(world.repo(), master=master_key)
    for backup_id in (ids[0], ids[2], ids[3]):
        world.restore_exactly(backup_id)
