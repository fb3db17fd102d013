"""Terminal output for the CLI: progress bars, sizes, errors and exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from backapp.engine.progress import Progress as EngineProgress
from backapp.errors import (
    BackappError,
    BackupNotFoundError,
    BackupRequiredError,
    ConfigError,
    EncryptionKeyError,
    TargetNotEmptyError,
    UsageError,
    WrongKeyError,
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_BAD_INPUT = (
    UsageError,
    ConfigError,
    EncryptionKeyError,
    WrongKeyError,
    BackupNotFoundError,
    BackupRequiredError,
    TargetNotEmptyError,
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def exit_code_for(exc: BackappError) -> int:
    """Given a BackappError, return the exit code: 2 for bad input, 1 for a failure."""
    return EXIT_BAD_INPUT if isinstance(exc, _BAD_INPUT) else EXIT_FAILED


def fail(exc: BackappError, *, as_json: bool = False) -> NoReturn:
    """Given an error, print it (plainly or as JSON) and exit with its code."""
    code = exit_code_for(exc)
    if as_json:
        doc: dict[str, Any] = {"status": "failed", "error": exc.message}
        if isinstance(exc, ConfigError) and exc.problems:
            doc["problems"] = [{"field": f, "message": m} for f, m in exc.problems]
        print(json.dumps(doc))
    else:
        err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            for field, message in exc.problems:
                err_console.print(f"  {field}: {message}", soft_wrap=True)
    raise typer.Exit(code)


def human_bytes(n: float) -> str:
    """Given a byte count, return it in binary units (e.g. '1.5 MiB')."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Callable[[EngineProgress], None] | None]:
    """Given whether to show it, yield a progress callback drawing a bar on stderr."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[files]}"),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    task: TaskID = bar.add_task(label, total=None, files="")

    def update(p: EngineProgress) -> None:
        files = f"{p.files_done:,}/{p.files_total:,}{'+' if p.counting else ''} files"
        bar.update(
            task,
            completed=p.bytes_done,
            total=p.bytes_total or None,
            files=files,
            description=f"{label}: {p.phase}",
        )

    with bar:
        yield update
