"""Archiving entries into format 2: the tar stream as content-defined blocks.

The tar stream of a format-2 backup is, in manifest order, each entry's header block
(the zero padding the previous file's data needs, then the entry's PAX/ustar
headers), a file's data blocks (its bytes cut by FastCDC), and a last block (the
padding of the last file and the end-of-archive marker). Concatenated, the blocks'
plaintexts are a POSIX tar archive of the whole backup — full or incremental: an
unchanged file's data blocks are the parent's, referenced and not read again.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from backapp.engine.backup.archiver import (
    EntryArchiver,
    _header,
    _meta_entry,
    _unchanged,
    unchanged_entry,
)
from backapp.engine.backup.scan import ScanEntry, os_reason
from backapp.engine.blockstore import BlockRef, BlockWriter
from backapp.engine.format.chunker import MIN_SIZE, FileReader, new_chunker
from backapp.engine.format.manifest import Entry
from backapp.engine.format.tarstream import _EOF_MARKER, BLOCK
from backapp.engine.fsmeta import data_extents, holes_of


class BlockSink:
    """The tar stream of one backup, cut into blocks and stored by a BlockWriter."""

    def __init__(self, writer: BlockWriter) -> None:
        self.writer = writer
        self.chunker = new_chunker()
        self.offset = 0  # bytes of tar stream so far
        self._pad = 0  # zeros the last file's data needs before the next header
        self._header: BlockRef | None = None

    def write(self, data: bytes) -> None:
        """Given an entry's tar headers, store them (after the padding due) as its header
        block."""
        plain = bytes(self._pad) + data
        self._pad = 0
        self._header = self.writer.put(plain)
        self.offset += len(plain)

    def take_header(self) -> BlockRef | None:
        """Return the header block just written (once)."""
        header, self._header = self._header, None
        return header

    def data(self, reader: FileReader, blocks: list[BlockRef], digest: Any, done: Any) -> None:
        """Given a reader of a file's bytes, store them as blocks, appending each block's
        reference to ``blocks``, hashing its bytes into the file's ``digest`` and counting
        them with ``done(n)`` as it is stored (so a read error keeps what was read,
        hashed). Raise OSError."""
        if reader.left <= MIN_SIZE:  # one block whatever its content: no chunker needed
            buf = bytearray(reader.left)
            view = memoryview(buf)
            got = 0
            while (n := reader.readinto(view[got:])) > 0:
                got += n
            if got:
                data = bytes(view[:got])
                digest.update(data)  # the whole file: its hash is its one block's too
                blocks.append(self.writer.put(data, digest=digest.copy().digest()))
                self.offset += got
                done(got)
            return
        for chunk in self.chunker.cut_stream(reader):
            data = bytes(chunk.data)
            digest.update(data)
            blocks.append(self.writer.put(data))
            self.offset += chunk.length
            done(chunk.length)

    def all_stored(self, blocks: list[BlockRef]) -> bool:
        """Given an unchanged file's blocks, return whether all are stored."""
        return all(self.writer.known(block_id) for block_id, _ in blocks)

    def reuse(self, blocks: list[BlockRef]) -> None:
        """Given an unchanged file's blocks (all stored), make them the file's data here."""
        self.writer.stats.reused_blocks += len(blocks)
        size = sum(n for _, n in blocks)
        self.writer.stats.reused_bytes += size
        self.offset += size

    def end_data(self, size: int) -> None:
        """Given the size of the file data just stored, note the padding it needs."""
        self._pad = -size % BLOCK

    def finish(self) -> BlockRef:
        """Store the last block (padding and end-of-archive marker); return it."""
        plain = bytes(self._pad) + _EOF_MARKER
        self._pad = 0
        self.offset += len(plain)
        return self.writer.put(plain)


class BlockArchiver(EntryArchiver):
    """EntryArchiver for format 2: files are stored as blocks (or reference the parent's
    blocks when unchanged); every entry gets its header block."""

    def archive(self, sink: Any, item: ScanEntry) -> Entry | None:
        """Given a scanned entry, store it; return its manifest entry (None: skipped)."""
        entry = super().archive(sink, item)
        if entry is not None:
            entry.header = sink.take_header()
        return entry

    def _archive_file(self, sink: Any, item: ScanEntry) -> Entry | None:
        st = item.st
        self.progress.current = item.path
        link_key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and link_key in self.hardlinks:
            return self._hardlink(sink, item, link_key)
        previous = self._lookup_parent(item.path)
        if (
            previous is not None
            and _unchanged(previous, st)
            and previous.blocks is not None
            and sink.all_stored(previous.blocks)  # else (pruned, index lost): read again
        ):
            entry = unchanged_entry(item.path, st, previous)
            entry.blocks = list(previous.blocks)
            sink.write(_header(entry, size=entry.size))
            sink.reuse(entry.blocks)
            sink.end_data(entry.size)
            self.stats.files += 1
            self.stats.unchanged_files += 1
            self.stats.total_bytes += entry.size
            if st.st_nlink > 1:
                self.hardlinks[link_key] = (item.path, True)
            self._done_file(entry.size)
            return entry
        stored = self._store_blocks(sink, item)
        if stored is None:
            return None
        entry, known = stored
        if previous is not None:
            self.stats.changed_files += 1
        elif known:
            self.stats.renamed_files += 1  # renamed or copied: its content was stored
        else:
            self.stats.new_files += 1
        if st.st_nlink > 1:
            self.hardlinks[link_key] = (item.path, True)
        return entry

    def _count(self, n: int) -> None:
        """Count bytes of a file just stored (big files show progress too)."""
        self.progress.bytes_done += n
        self.report(self.progress)

    def _store_blocks(self, sink: BlockSink, item: ScanEntry) -> tuple[Entry, bool] | None:
        """Given a file to read, store its data and header blocks; return its entry and
        whether its content was stored already (all its data blocks known)."""
        fd = self._open(item)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.skips.skip(item.path, "changed type during backup")
                return None
            entry = _meta_entry(item.path, "file", st)
            entry.xattrs = self._xattrs(item, fd)
            digest = hashlib.sha256()
            extents = data_extents(fd, st.st_size) if st.st_blocks * 512 < st.st_size else None
            entry.sparse = extents is not None
            spans = list(holes_of(extents, st.st_size)) if extents is not None else None
            reader = FileReader(fd, st.st_size, None, spans)
            blocks: list[BlockRef] = []
            new_before = sink.writer.stats.new_blocks
            try:
                sink.data(reader, blocks, digest, self._count)
            except OSError as exc:
                self.skips.warn(item.path, f"read error, stored partially: {os_reason(exc)}")
                entry.partial = True
            data_new = sink.writer.stats.new_blocks - new_before
            got = sum(n for _, n in blocks)
            if got < st.st_size and not entry.partial:
                self.skips.warn(item.path, "file shrank while being read, stored as read")
                entry.partial = True
            after = os.fstat(fd)
            if not entry.partial and (
                after.st_size != st.st_size or after.st_mtime_ns != st.st_mtime_ns
            ):
                self.skips.warn(item.path, "file changed while being read, stored as read")
                entry.partial = True
            # The header block is made after the data: it states what was read.
            sink.write(_header(entry, size=got))
            sink.end_data(got)
            entry.size = got
            entry.blocks = blocks
            entry.sha256 = digest.hexdigest()
            self.stats.files += 1
            self.stats.total_bytes += got
            self._done_file(got, counted=True)
            return entry, got > 0 and data_new == 0
        finally:
            os.close(fd)
