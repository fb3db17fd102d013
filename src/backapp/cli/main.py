"""The ``backapp`` command: composition root of the CLI."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from backapp import __version__
from backapp.cli import doctor_cmd, engine_cmds, forget_cmd, logs, server_cmds
from backapp.cli.output import EXIT_BAD_INPUT

app = typer.Typer(
    name="backapp",
    help="BackApp: back up directories to S3, S3-compatible stores or a local folder.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(engine_cmds.backup_app, name="backup")
app.add_typer(engine_cmds.backups_app, name="backups")
app.command("restore")(engine_cmds.restore)
app.command("verify")(engine_cmds.verify)
app.command("decrypt")(engine_cmds.decrypt)
app.command("forget")(forget_cmd.forget)
app.command("prune")(forget_cmd.prune)
app.command("doctor")(doctor_cmd.doctor)
app.command("serve")(server_cmds.serve)
app.command("web")(server_cmds.web)
app.command("scheduler")(server_cmds.scheduler)
app.add_typer(server_cmds.db_app, name="db")
app.add_typer(server_cmds.user_app, name="user")
app.add_typer(server_cmds.token_app, name="token")


def _version(value: bool) -> None:
    if value:
        print(f"backapp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    from pydantic import ValidationError

    from backapp.settings import LogSettings

    try:
        log = LogSettings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        print(f"error: {problem['loc'][0]}: {problem['msg']}", file=sys.stderr)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    logs.configure(log, verbose=verbose)


def main() -> None:
    """Run the CLI: an unexpected error ends in one line and exit 1, not a traceback
    (``-v`` logs the traceback too)."""
    from backapp.memory import keep_memory_flat

    keep_memory_flat()
    try:
        app()
    except Exception as exc:  # the top of the CLI: report, never a traceback
        logging.getLogger("backapp").debug("unexpected error", exc_info=True)
        print(f"error: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
