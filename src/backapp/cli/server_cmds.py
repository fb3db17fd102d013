"""Commands that run BackApp's processes and manage its database and users."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from backapp.cli import logs
from backapp.cli.output import err_console, fail, out_console
from backapp.errors import BackappError, UsageError

if TYPE_CHECKING:
    from backapp.services.context import AppContext

logger = logging.getLogger(__name__)

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)


def _context() -> AppContext:
    from backapp.app import build_context

    return build_context()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (also done on every start)."""
    try:
        ctx = _context()
        ctx.db.upgrade()
    except BackappError as exc:
        fail(exc)
    out_console.print(f"Database {ctx.db.description} is up to date.")


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="Username.")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="admin (everything), operator (run, restore, read backed-up files) or "
            "viewer (runs, alerts, statistics).",
        ),
    ] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user (the password comes from --password-stdin or a prompt)."""
    from backapp.services import users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        ctx = _context()
        ctx.db.upgrade()
        with ctx.db.session() as session:
            users.create_user(session, name, password, role)
    except BackappError as exc:
        fail(exc)
    out_console.print(f"User {name!r} created ({role}).")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="Whose token it is.")],
    name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "",
) -> None:
    """Create an API token and print it (it is shown only this once)."""
    from backapp.services import users

    try:
        ctx = _context()
        ctx.db.upgrade()
        with ctx.db.session() as session:
            token, _ = users.create_token(session, user, name)
    except BackappError as exc:
        fail(exc)
    print(token)


def _prepare(ctx: AppContext, *, first_admin: bool) -> None:
    from backapp.services import users

    ctx.db.upgrade()
    if not first_admin:
        return
    secret = ctx.settings.admin_password
    with ctx.db.session() as session:
        generated = users.ensure_admin(session, secret.get_secret_value() if secret else None)
    if generated:
        err_console.print(
            "[bold]Created user 'admin' with password:[/] "
            f"[bold yellow]{generated}[/]  (shown once; set BACKAPP_ADMIN_PASSWORD to choose it)"
        )


def _serve(host: str, port: int, *, with_scheduler: bool) -> None:
    import signal

    import uvicorn

    from backapp.app import create_app
    from backapp.scheduler.main import SchedulerService

    try:
        ctx = _context()
        _prepare(ctx, first_admin=True)
    except BackappError as exc:
        fail(exc)
    app = create_app(ctx)
    service = SchedulerService(ctx) if with_scheduler else None
    stop = threading.Event()
    if service is not None:
        thread = threading.Thread(
            target=service.run, args=(stop,), name="backapp-scheduler", daemon=True
        )
        thread.start()
        # uvicorn re-raises the SIGTERM it stopped on once it is done: handled here, the
        # stop goes on below (the scheduler drains and removes its heartbeat row).
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    out_console.print(f"BackApp listening on http://{host}:{port}  (database {ctx.db.description})")
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            log_config=None,  # uvicorn's records go to BackApp's handler (text or JSON)
            access_log=False,
            timeout_graceful_shutdown=5,  # open progress streams must not hold up a stop
        )
    finally:
        stop.set()
        if service is not None:
            # Let the scheduler drain (grace, then cancel) and remove its heartbeat row.
            thread.join(timeout=ctx.settings.shutdown_grace + 75)
            service.shutdown()


HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port to listen on.")]


def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 3000) -> None:
    """Run everything in one process: web UI, API, scheduler and worker (the default)."""
    _serve(host, port, with_scheduler=True)


def web(host: HostOpt = "127.0.0.1", port: PortOpt = 3000) -> None:
    """Run the web UI and API only (production, next to `backapp scheduler` processes)."""
    _serve(host, port, with_scheduler=False)


def scheduler() -> None:
    """Run the scheduler and worker: fires cron schedules, claims and executes runs."""
    import signal

    from backapp.scheduler.main import SchedulerService

    try:
        ctx = _context()
        _prepare(ctx, first_admin=False)
    except BackappError as exc:
        fail(exc)
    logs.prefer_level(logging.INFO)  # log every scheduling decision
    service = SchedulerService(ctx)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logger.warning("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.run(stop)
    service.shutdown()


__all__ = ["UsageError", "db_app", "scheduler", "serve", "token_app", "user_app", "web"]
