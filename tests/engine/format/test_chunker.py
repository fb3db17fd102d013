"""Content-defined cut points: a change moves no boundary beyond the next one."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from backapp.engine.format.chunker import (
    MAX_SIZE,
    MIN_SIZE,
    FileReader,
    cut,
    cut_bytes,
    new_chunker,
)


def _data(seed: int, size: int) -> bytes:
    return hashlib.shake_128(seed.to_bytes(8, "big")).digest(size)


def test_block_sizes_stay_within_bounds_and_average_about_1_mib() -> None:
    blocks = list(cut_bytes(new_chunker(), _data(1, 48 * 1024 * 1024)))
    assert b"".join(blocks) == _data(1, 48 * 1024 * 1024)
    assert all(MIN_SIZE <= len(b) <= MAX_SIZE for b in blocks[:-1])
    average = 48 * 1024 * 1024 / len(blocks)
    assert 0.7 * 1024 * 1024 < average < 1.6 * 1024 * 1024, average


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    at=st.floats(0.05, 0.95),
    inserted=st.integers(1, 200_000),
    removed=st.integers(0, 200_000),
)
def test_an_edit_changes_only_the_blocks_around_it(
    seed: int, at: float, inserted: int, removed: int
) -> None:
    original = _data(seed, 12 * 1024 * 1024)
    pos = int(len(original) * at)
    edited = original[:pos] + _data(seed + 1, inserted) + original[pos + removed :]
    before = {hashlib.sha256(b).digest() for b in cut_bytes(new_chunker(), original)}
    after = [hashlib.sha256(b).digest() for b in cut_bytes(new_chunker(), edited)]
    new = [b for b in after if b not in before]
    # The edit lands in one or two blocks (plus the one after, whose start moved, when the
    # edit spans a boundary); every other block is found again.
    changed_bytes = inserted + removed
    assert len(new) <= 3 + changed_bytes // MIN_SIZE, (len(new), len(after))


def test_file_reader_caps_at_the_stat_size_and_fills_holes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = _data(7, 3 * 1024 * 1024 + 123)
    path.write_bytes(data)
    seen: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = FileReader(fd, 2 * 1024 * 1024, lambda v: seen.append(len(v)))
        got = b"".join(cut(new_chunker(), reader))
        assert got == data[: 2 * 1024 * 1024] and sum(seen) == len(got) and not reader.short
        # A hole from 1 MiB to 2 MiB (given as zeros, not read), data after it.
        spans = [(True, 0, 1 << 20), (False, 1 << 20, 2 << 20), (True, 2 << 20, len(data))]
        reader = FileReader(fd, len(data), lambda v: None, spans)
        got = b"".join(cut(new_chunker(), reader))
        assert got == data[: 1 << 20] + bytes(1 << 20) + data[2 << 20 :]
        # The file is shorter than promised: the reader says so.
        reader = FileReader(fd, len(data) + 10, lambda v: None)
        assert len(b"".join(cut(new_chunker(), reader))) == len(data) and reader.short
    finally:
        os.close(fd)


def test_an_unchanged_file_gives_the_same_blocks_wherever_it_lies() -> None:
    rng = random.Random(5)
    data = bytes(rng.getrandbits(8) for _ in range(600_000))
    first = list(cut_bytes(new_chunker(), data))
    assert list(cut_bytes(new_chunker(), bytearray(data))) == first
