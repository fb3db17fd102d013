"""One reading of a backup, shared by restore, verify and single-file download.

Opening a Snapshot reads ``backup.json`` (its format version checked), downloads
the manifest once (decrypted, kept locally) and checks its header against
``backup.json``. Every pass over its entries checks each one as restore needs it
(a safe path, numbers in range, a data location; see manifest.Entry.from_json)
and against the others (manifest.EntryRules); an entry that fails is left out and
noted in ``problems``, once. So whatever verify accepts, restore accepts, and
what restore refuses, verify reports.

Inconsistencies that do not stop a restore (``backup.json`` recording other
sizes or block size than the manifest, which is what restore uses) go to
``warnings``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from backapp.engine.backup.parent import spool_manifest
from backapp.engine.blockstore import BlockFetcher, load_index, spool_blocks
from backapp.engine.format.blockindex import BlockIndex
from backapp.engine.format.crypto import HEADER_SIZE, MasterKey, key_matches
from backapp.engine.format.layout import BackupInfo, Repository
from backapp.engine.format.manifest import Entry, EntryRules, ManifestReader, Trailer
from backapp.engine.restore.blockreader import BlockArchiveReader
from backapp.engine.restore.reader import ArchiveReader
from backapp.errors import (
    EncryptionKeyError,
    IntegrityError,
    ObjectNotFoundError,
    WrongKeyError,
)

Problem = tuple[str, str]


class Snapshot:
    """A backup opened for reading: its info, its local manifest, what is wrong with it."""

    def __init__(
        self,
        repo: Repository,
        backup_id: str,
        master: MasterKey | None,
        info: BackupInfo | None = None,
    ) -> None:
        """Given a repository, a backup id, the key (and the backup's info, if loaded
        already), open the backup.

        Raise BackupNotFoundError, IntegrityError (damaged or unknown marker or manifest),
        EncryptionKeyError (encrypted and no key), WrongKeyError, StorageError.
        """
        repo = repo.with_key(master)
        self.repo = repo
        self.master = master
        self.backup_id = backup_id
        self.info = info or repo.load(backup_id)
        self.name = f"manifest of backup {backup_id}"
        self.version = self.info.format_version
        manifest = self.info.manifest.name if self.info.manifest else "backup.json"
        self.manifest_key = repo.key(backup_id, manifest)
        if self.info.encrypted and master is None:
            raise EncryptionKeyError(
                f"backup {backup_id} is encrypted: set BACKUP_ENCRYPTION_KEY to the key it "
                "was made with"
            )
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.index: BlockIndex | None = None
        self.index_problems: list[tuple[str, str]] = []
        if self.version >= 2:
            self.index, self.index_problems = load_index(repo)
        try:
            self._spool = self._download()
        except BaseException:
            self.close()
            raise
        try:
            self.header = ManifestReader(self._spool, self.name).header
            self._check_header()
        except BaseException:
            self._spool.close()
            raise
        self._trailers: dict[str, Trailer] = {}
        self._sources: dict[str, BackupInfo] = {backup_id: self.info}
        self._complete = False
        self._targets: dict[str, Entry] | None = None
        self._links: dict[str, list[str]] = {}

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the local copy of the manifest (and of the block index)."""
        if hasattr(self, "_spool"):
            self._spool.close()
        if self.index is not None:
            self.index.close()
            self.index = None

    # -- opening -----------------------------------------------------------------

    def _download(self) -> IO[bytes]:
        if self.version >= 2:
            assert self.info.manifest_blocks is not None and self.index is not None
            fetcher = self.fetcher()
            return spool_blocks(fetcher, self.info.manifest_blocks, self.name)
        assert self.info.manifest is not None
        try:
            return spool_manifest(self.repo, self.info, self.master)
        except WrongKeyError:
            # A wrong key fails on every object; a damaged manifest header only on this one.
            if self._data_key_matches():
                raise IntegrityError(
                    f"{self.name}: its encryption header is damaged (the key fits the "
                    "backup's data object)"
                ) from None
            raise
        except IntegrityError as exc:
            head = self.repo.storage.head(self.manifest_key)
            if head is not None and head.size < self.info.manifest.size:
                raise IntegrityError(
                    f"{self.name} is truncated: it has {head.size} bytes, backup.json "
                    f"records {self.info.manifest.size} ({exc})"
                ) from None
            raise

    def _data_key_matches(self) -> bool:
        assert self.master is not None and self.info.data is not None
        key = self.repo.key(self.backup_id, self.info.data.name)
        try:
            header = b"".join(self.repo.storage.get(key, 0, HEADER_SIZE))
        except ObjectNotFoundError:
            return False
        return key_matches(self.master, header) is True

    def _check_header(self) -> None:
        if self.version >= 2:
            for field, want in (("backupId", self.backup_id), ("configSlug", self.repo.slug)):
                if self.header.get(field) != want:
                    raise IntegrityError(
                        f"{self.name} names {field} {self.header.get(field)!r}, not {want!r} "
                        "(it belongs to another backup)"
                    )
            return
        block_size = self.header.get("blockSize")
        if block_size != self.info.compression.block_size:
            self.warnings.append(
                (
                    self.repo.key(self.backup_id, "backup.json"),
                    f"records blockSize {self.info.compression.block_size}, the manifest "
                    f"{block_size}: the manifest's is used",
                )
            )
        algorithm = self.header.get("compression")
        if algorithm is not None and algorithm != self.info.compression.algorithm:
            raise IntegrityError(
                f"backup {self.backup_id}: backup.json records compression "
                f"{self.info.compression.algorithm!r}, its manifest {algorithm!r}"
            )

    def fetcher(self) -> BlockFetcher:
        """Format 2: return a reader of this backup's blocks."""
        assert self.index is not None
        keys = self.repo.keys_for(self.info)
        return BlockFetcher(self.repo, self.index, keys, index_problems=self.index_problems)

    # -- entries -----------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Yield every entry restore would write, in manifest order (read from the local
        copy: any number of passes). Refused entries are noted in ``problems`` by the first
        pass that reads to the end. Raise IntegrityError if the manifest is damaged (not
        one entry: the whole)."""
        problems: list[Problem] = []
        self._spool.seek(0)
        reader = ManifestReader(self._spool, self.name, problems)
        rules = EntryRules(self.backup_id, self.info.requires, version=reader.version)
        if reader.version != min(self.version, 2):
            raise IntegrityError(
                f"{self.name} is of manifest version {reader.version}, its backup of "
                f"storage format {self.version}"
            )
        for entry in reader:
            problem = rules.problem(entry)
            if problem is not None:
                problems.append((entry.path, problem))
                continue
            yield entry
        if self._complete:
            return
        self._complete = True
        trailer = reader.read_trailer()
        self._trailers[self.backup_id] = trailer
        self._links = rules.links
        self.problems.extend(problems)
        if trailer.entries != reader.lines:
            self.problems.append(
                (
                    self.manifest_key,
                    f"lists {reader.lines} entries, its end record says {trailer.entries}",
                )
            )

    @property
    def trailer(self) -> Trailer:
        """Return this backup's block table (reading the manifest once if not yet done)."""
        if self.backup_id not in self._trailers:
            for _ in self.entries():
                pass
        return self._trailers[self.backup_id]

    @property
    def link_target_paths(self) -> frozenset[str]:
        """After the first pass, return the paths that hard links name."""
        return frozenset(self._links)

    def link_targets(self, known: dict[str, Entry] | None = None) -> dict[str, Entry]:
        """After the first pass, return the entries hard links name (files or symlinks);
        a hard link naming anything else is noted in ``problems``. Given the entries the
        caller kept from the first pass (``known``), one more pass over the manifest is
        made only for targets it lacks."""
        if not self._complete:
            for _ in self.entries():
                pass
        if self._targets is not None:
            return self._targets
        found = {
            path: entry
            for path, entry in (known or {}).items()
            if path in self._links and entry.type in ("file", "symlink")
        }
        self._targets = found
        if len(found) < len(self._links):
            for entry in self.entries():
                if entry.path in self._links and entry.type in ("file", "symlink"):
                    found[entry.path] = entry
        for target, links in self._links.items():
            if target not in found:
                for link in links:
                    self.problems.append(
                        (link, f"hard link to {target!r}, which is not a file of this backup")
                    )
        return found

    def bad_links(self, found: dict[str, Entry]) -> set[str]:
        """Given what link_targets found, return the paths of hard links it refused."""
        return {link for t, links in self._links.items() if t not in found for link in links}

    # -- data --------------------------------------------------------------------

    def source(self, backup_id: str | None) -> BackupInfo:
        """Given the backup an entry's data is in (None: this one), return its info.
        Raise BackupNotFoundError, IntegrityError."""
        wanted = backup_id or self.backup_id
        info = self._sources.get(wanted)
        if info is None:
            info = self._sources[wanted] = self.repo.load(wanted)
            if info.encrypted and self.master is None:
                raise EncryptionKeyError(f"backup {wanted} is encrypted: no key to read it")
        return info

    def archive(self, backup_id: str | None) -> ArchiveReader | BlockArchiveReader:
        """Given the backup holding some entries' data (None: this one), return a reader of
        its archive. Raise BackupNotFoundError, IntegrityError, StorageError."""
        if self.version >= 2:
            assert backup_id is None and self.index is not None
            return BlockArchiveReader(self.info, self.fetcher())
        info = self.source(backup_id)
        trailer = self.trailer if info is self.info else self._trailers.get(info.backup_id)
        if trailer is None:
            with spool_manifest(self.repo, info, self.master) as spool:
                reader = ManifestReader(spool, f"manifest of backup {info.backup_id}")
                trailer = self._trailers[info.backup_id] = reader.skip_to_trailer()
        return ArchiveReader(self.repo, info, trailer, self.master)
