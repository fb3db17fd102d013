"""What a run is: its kinds and statuses, the one list every layer uses."""

from __future__ import annotations

from typing import Literal, get_args

RunKind = Literal["backup", "restore", "verify"]
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled", "skipped"]

RUN_KINDS: tuple[RunKind, ...] = get_args(RunKind)
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
# A config has at most one active run of a kind; a terminal run never changes again.
ACTIVE: tuple[RunStatus, ...] = ("queued", "running")
TERMINAL: tuple[RunStatus, ...] = tuple(s for s in RUN_STATUSES if s not in ACTIVE)
