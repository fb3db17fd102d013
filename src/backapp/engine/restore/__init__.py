"""Reading a backup back: one reading of a backup (``snapshot``), its file data
(``blockreader``; ``reader`` for format 1), the plan of what goes where (``plan``), the
descriptor-relative writer that never leaves its target (``target``) and ``run_restore``
(``run``)."""

from backapp.engine.restore.run import RestoreResult, run_restore

__all__ = ["RestoreResult", "run_restore"]
