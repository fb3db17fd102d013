"""Making a backup: scan the sources (``scan``), compare with the parent (``parent``), turn
entries into blocks (``blockarchiver``; ``archiver`` writes format 1, for tests of what
older releases wrote) and run it all (``run``: ``run_backup``, ``blockbackup``)."""

from backapp.engine.backup.run import BackupResult, run_backup

__all__ = ["BackupResult", "run_backup"]
