"""Block codecs: any block round-trips, and a hostile block cannot blow up in memory."""

from __future__ import annotations

import resource
import zlib

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from backapp.engine.compress import Codec
from backapp.errors import ArchiveError

CODECS = [Codec("gzip", 6), Codec("zstd", 3), Codec("none", None)]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.algorithm)
@given(block=st.binary(max_size=70_000))
def test_every_block_round_trips(codec: Codec, block: bytes) -> None:
    assert codec.decompress(codec.compress(block), len(block)) == block


def _bombs() -> dict[str, tuple[Codec, bytes]]:
    # Made in chunks, so that making them does not itself use the memory measured below.
    size, chunk = 256 * 1024 * 1024, bytes(1024 * 1024)
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    gzip_bomb = b"".join(gz.compress(chunk) for _ in range(size // len(chunk))) + gz.flush()
    bombs = {"gzip": (Codec("gzip", 6), gzip_bomb)}
    for name, known in (("zstd", True), ("zstd without a size", False)):
        z = zstandard.ZstdCompressor(level=3, write_content_size=known).compressobj(
            size=size if known else -1
        )
        frame = b"".join(z.compress(chunk) for _ in range(size // len(chunk))) + z.flush()
        bombs[name] = (Codec("zstd", 3), frame)
    return bombs


BOMBS = _bombs()


@pytest.mark.parametrize("name", list(BOMBS))
def test_a_decompression_bomb_is_damage_and_stays_small_in_memory(name: str) -> None:
    codec, bomb = BOMBS[name]
    assert len(bomb) < 300_000  # 256 MiB in a few hundred KiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArchiveError, match="damaged"):
        codec.decompress(bomb, 1024 * 1024)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024, f"decompressing grew memory by {grown_kib} KiB"
