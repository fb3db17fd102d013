"""A property of format 2 (issue 13, items 2 and 4): after any sequence of backups,
changes to the source, forgetting and pruning, every backup that remains restores
exactly the tree it was taken of, and verifies."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backapp.engine.format.crypto import MasterKey
from backapp.engine.prune import run_prune
from tests.engine.format2.world import World, randbytes

KEY = MasterKey.from_base64("q" * 43 + "=")

Op = tuple[str, int]

ops = st.lists(
    st.tuples(
        st.sampled_from(["backup", "write", "append", "delete", "forget", "prune"]),
        st.integers(0, 1_000),
    ),
    min_size=1,
    max_size=8,
)


def apply(world: World, op: str, n: int) -> None:
    """Apply one operation (``n`` picks the file, the size or the backup)."""
    src = world.src
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if op == "backup":
        world.backup()
    elif op == "write":
        (src / f"f{n % 5}.bin").write_bytes(randbytes(1_000 + n * 300, seed=n))
    elif op == "append" and files:
        with open(files[n % len(files)], "ab") as f:
            f.write(randbytes(n + 1, seed=n + 1))
    elif op == "delete" and files:
        files[n % len(files)].unlink()
    elif op == "forget":
        ids = world.repo().ids()
        if ids:
            gone = ids[n % len(ids)]
            world.repo().delete(gone)
            del world.taken[gone]
    elif op == "prune":
        run_prune(world.repo(), master=world.key)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=ops, encrypted=st.booleans(), incremental=st.booleans())
def test_every_remaining_backup_restores_exactly(
    ops: list[Op], encrypted: bool, incremental: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World.make(
            Path(tmp),
            KEY if encrypted else None,
            type="incremental" if incremental else "full",
        )
        for op, n in [("backup", 0), *ops]:
            apply(world, op, n)
        run_prune(world.repo(), master=world.key)
        remaining = world.repo().ids()
        assert sorted(world.taken) == remaining
        for backup_id in remaining:
            world.restore_exactly(backup_id)
            world.verify_passes(backup_id)
