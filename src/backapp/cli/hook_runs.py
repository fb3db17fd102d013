"""The hooks of a `backapp backup run`: the config's hooks run as the worker runs them, and
what they did is printed (to stderr: stdout stays the summary, or the --json object)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backapp.cli.chosen import Chosen
from backapp.cli.output import err_console
from backapp.engine.progress import CancelToken
from backapp.settings import Settings

if TYPE_CHECKING:  # services.hooks reaches the database layer: imported only for hooks
    from backapp.services.hooks import RunHooks

OUTPUT_LINES = 10  # lines of a failed command's output printed (the run log keeps 4 KiB)


def hooks_for(settings: Settings, chosen: Chosen, cancel: CancelToken) -> RunHooks | None:
    """Given the settings and the chosen config, return its hooks for a CLI run (None if it
    has none). There is no run row: BACKAPP_RUN_ID is empty, BACKAPP_TRIGGER is "cli"."""
    hooks = chosen.document.options.hooks
    if hooks is None:
        return None
    from backapp.services.hooks import RunHooks, run_variables

    variables = run_variables(
        config_id=chosen.identity.id or "",
        config_name=chosen.document.name,
        slug=chosen.identity.slug,
        run_id="",
        trigger="cli",
    )
    return RunHooks.of(settings, hooks, variables, cancel=cancel)


def print_hooks(hooks: RunHooks | None) -> None:
    """Given a CLI run's hooks, print what each command did and the warnings."""
    if hooks is None:
        return
    for result in hooks.results:
        how = "ok" if result.ok else result.error
        err_console.print(
            f"{result.name}: {how} ({result.duration_seconds:.1f}s): {result.command}",
            markup=False,
        )
        if not result.ok and (result.optional or result.phase != "before"):
            # (a required before command's output is in the error that ends the run)
            said = (result.stderr or result.stdout).rstrip().splitlines()[-OUTPUT_LINES:]
            for line in said:
                err_console.print(f"  | {line}", markup=False)
    for warning in hooks.warnings:
        err_console.print(f"warning: {warning}", markup=False, style="yellow")
