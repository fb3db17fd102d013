"""The commands that drive the engine from a config file: backup, backups, restore, decrypt."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from backapp.cli.chosen import (
    ConfigFile,
    ConfigRef,
    JsonFlag,
    choose_config,
    interrupted,
    master_key,
    open_config_storage,
    repository_for,
)
from backapp.cli.hook_runs import hooks_for, print_hooks
from backapp.cli.output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    fail,
    human_bytes,
    out_console,
    progress_bar,
)
from backapp.cli.signals import interruptible
from backapp.domain.patterns import exact_path_pattern
from backapp.domain.restore import DEFAULT_EXISTING, ExistingPolicy, restore_problems
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import decrypt_stream
from backapp.engine.format.layout import Repository, new_backup_id
from backapp.engine.restore import run_restore
from backapp.engine.streams import file_chunks
from backapp.engine.verify import run_verify
from backapp.errors import (
    BackappError,
    CancelledError,
    EncryptionKeyError,
    IntegrityError,
    UsageError,
)
from backapp.settings import Settings

backup_app = typer.Typer(help="Run backups from a config file.", no_args_is_help=True)
backups_app = typer.Typer(help="List the backups stored for a config.", no_args_is_help=True)


def _settings() -> Settings:
    return Settings()


@backup_app.command("run")
def backup_run(
    config_file: ConfigFile = None, config_ref: ConfigRef = None, as_json: JsonFlag = False
) -> None:
    """Back up the sources of a config now, with a progress bar and a summary; then apply
    its retention, as a scheduled run does. The config's hooks run around it."""
    hooks = None
    try:
        settings = _settings()
        with interruptible() as cancel:
            chosen = choose_config(config_file, config_ref, settings, cancel)
            config, slug = chosen.document, chosen.identity.slug
            hooks, backup_id = hooks_for(settings, chosen, cancel), new_backup_id()
            if hooks is not None:  # a failing one raises HookError: nothing is backed up
                hooks.run("before", BACKAPP_STATUS="running", BACKAPP_BACKUP_ID=backup_id)
            key = master_key(settings, required=config.options.encryption)
            storage = open_config_storage(config, settings, cancel, upload=True)
            with progress_bar(not as_json, f"Backing up {config.name}") as on_progress:
                result = run_backup(
                    config,
                    storage,
                    slug=slug,
                    key=key,
                    progress=on_progress,
                    cancel=cancel,
                    backup_id=backup_id,
                )
            # services.retention reaches the database layer: imported when it has work
            if chosen.ctx is not None and chosen.identity.id is not None:
                from backapp.services import retention

                kept = retention.apply(
                    chosen.ctx, chosen.ctx.db.session, chosen.identity.id, config, slug
                )
            elif config.options.retention_policy is not None:
                from backapp.services import retention

                repo = Repository(storage, config.destination.prefix, slug, key)
                kept = retention.delete_expired(repo, config)
            else:
                kept = {}  # no retention rules: nothing expires (as delete_expired says)
            if hooks is not None:
                hooks.run(
                    "after",
                    BACKAPP_STATUS="completed",
                    BACKAPP_BACKUP_ID=result.backup_id,
                    BACKAPP_BACKUP_TYPE=result.info.type,
                    BACKAPP_FILES_PROCESSED=result.files_processed,
                )
    except (CancelledError, BackappError) as exc:
        if hooks is not None:
            status = "cancelled" if isinstance(exc, CancelledError) else "failed"
            hooks.run("onError", BACKAPP_STATUS=status, BACKAPP_ERROR=exc.message)
        print_hooks(hooks)
        if isinstance(exc, CancelledError):
            interrupted(exc, as_json)
        fail(exc, as_json=as_json)
    doc = result.to_json()
    print_hooks(hooks)
    if as_json:
        print(json.dumps({**doc, **kept, **(hooks.to_json() if hooks else {})}))
        return
    kind = f"{doc['type']}" + (f" on {doc['parent']}" if doc["parent"] else "")
    out_console.print(f"[bold green]Backup {result.backup_id} completed[/] ({kind})")
    out_console.print(
        f"  files: {doc['filesProcessed']:,} processed "
        f"({doc['newFiles']:,} new, {doc['changedFiles']:,} changed, "
        f"{doc['unchangedFiles']:,} unchanged), {doc['filesSkipped']:,} skipped"
    )
    out_console.print(
        f"  data:  {human_bytes(doc['totalBytes'])} read, "
        f"{human_bytes(doc['bytesTransferred'])} uploaded in {doc['durationSeconds']:.1f}s"
    )
    if result.resumed_bytes:
        out_console.print(
            f"  resumed: {human_bytes(result.resumed_bytes)} already stored by an "
            "interrupted run (not uploaded again)"
        )
    if "damaged" in result.parent_note:  # a person should know what BackApp did instead
        out_console.print(f"  [yellow]note:[/] {result.parent_note}", soft_wrap=True)
    if result.cleanup_note:
        out_console.print(f"  cleaned up: {result.cleanup_note}", soft_wrap=True)
    if result.skips.reasons:
        out_console.print(f"  [yellow]skipped or changed:[/] {result.skips.summary()}")
        for path, reason in result.skips.samples[:10]:
            out_console.print(f"    {path}: {reason}", soft_wrap=True)
    _print_retention(kept.get("retention"))


def _print_retention(outcome: dict[str, Any] | None) -> None:
    if outcome is None:
        return
    if "error" in outcome:
        out_console.print(f"  [yellow]{outcome['error']}[/]", soft_wrap=True)
        return
    deleted = outcome["deleted"]
    out_console.print(
        f"  retention: {len(deleted)} expired backup(s) deleted, {outcome['kept']} kept"
    )
    for item in deleted:
        out_console.print(f"    {item['backupId']}: {item['reason']}", soft_wrap=True)
    for problem in outcome.get("errors", []):
        out_console.print(f"    [yellow]not deleted:[/] {problem}", soft_wrap=True)
    pruned = outcome.get("prune")
    if pruned is not None and "error" in pruned:
        out_console.print(f"  [yellow]{pruned['error']}[/]", soft_wrap=True)
    elif pruned is not None:
        out_console.print(
            f"  prune: {human_bytes(pruned['bytesFreed'])} freed "
            f"({pruned['blocksRemoved']:,} block(s) no backup uses any more)"
        )


@backups_app.command("list")
def backups_list(
    config_file: ConfigFile = None, config_ref: ConfigRef = None, as_json: JsonFlag = False
) -> None:
    """List the backups that exist in storage for a config, oldest first."""
    try:
        settings = _settings()
        with interruptible() as cancel:
            chosen = choose_config(config_file, config_ref, settings, cancel)
            config = chosen.document
            listed = repository_for(chosen.identity, settings, cancel).scan()
    except CancelledError as exc:
        interrupted(exc, as_json)
    except BackappError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        docs = [
            b.info.model_dump(mode="json", by_alias=True)
            if b.info is not None
            else {**b.public, "backupId": b.backup_id, "problem": b.problem}
            if b.public is not None  # sealed: what needs no key, and that the rest needs it
            else {"backupId": b.backup_id, "damaged": True, "problem": b.problem}
            for b in listed
        ]
        print(json.dumps({"backups": docs}))
        return
    if not listed:
        out_console.print(f"No backups yet for {config.name}.")
        return
    for b in listed:
        info = b.info
        if info is None and b.public is not None:
            when = str(b.public.get("completedAt") or "")[:19].replace("T", " ")
            stored = human_bytes(int(str(b.public.get("storedBytes") or 0)))
            out_console.print(
                f"{b.backup_id}  {'encrypted':<11}  {when}Z  stored {stored}  "
                "(type, files, sources: need BACKUP_ENCRYPTION_KEY)",
                soft_wrap=True,
            )
            continue
        if info is None:
            out_console.print(f"{b.backup_id}  [bold red]DAMAGED[/]  {b.problem}", soft_wrap=True)
            continue
        out_console.print(
            f"{info.backup_id}  {info.type:<11}  {info.completed_at:%Y-%m-%d %H:%M:%S}Z  "
            f"{info.stats.files:>8,} files  {human_bytes(info.stats.total_bytes):>10}  "
            f"stored {human_bytes(info.stats.stored_bytes)}"
            + ("  encrypted" if info.encrypted else "")
        )


def restore(
    config_file: ConfigFile = None,
    config_ref: ConfigRef = None,
    target: Annotated[
        Path | None,
        typer.Option("--target", "-t", help="Folder to restore into.", show_default=False),
    ] = None,
    backup: Annotated[str, typer.Option("--backup", "-b", help="Backup id or 'latest'.")] = (
        "latest"
    ),
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            "-i",
            help="Restore only what this gitignore pattern matches, as git would "
            "('/home/me/docs/' anchored at the root, '*.jpg' at any depth; repeatable).",
        ),
    ] = None,
    paths: Annotated[
        list[str] | None,
        typer.Option("--path", "-p", help="Restore exactly this path (and what is below it)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Allow a non-empty target; replace existing files."),
    ] = False,
    existing: Annotated[
        ExistingPolicy | None,
        typer.Option(
            "--existing",
            help="Files already there: refuse (default), overwrite, skip or keep-both.",
        ),
    ] = None,
    in_place: Annotated[
        bool,
        typer.Option("--in-place", help="Restore to the original locations (needs --existing)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Restore a backup (or chosen paths of it) into a folder, checking every file."""
    policy = existing or ("overwrite" if overwrite else None)
    if in_place == (target is not None):
        fail(UsageError("give either --target DIR or --in-place"), as_json=as_json)
    where = str(target.absolute()) if target is not None else None
    for field, message in restore_problems(target=where, in_place=in_place, existing=policy):
        flag = {"existing": "--existing", "target": "--target"}.get(field, field)
        fail(UsageError(f"{flag}: {message}"), as_json=as_json)
    relative = [p for p in paths or [] if not p.startswith("/")]
    if relative:
        fail(
            UsageError(
                f"--path {relative[0]}: give the path as it was backed up, from the root "
                f"(e.g. --path /home/me/{relative[0]}); --include takes patterns"
            ),
            as_json=as_json,
        )
    # Patterns as git reads them: "/etc" is anchored at the root, "etc" matches at any depth.
    patterns = [*(include or []), *(exact_path_pattern(p) for p in paths or [])]
    try:
        settings = _settings()
        key = master_key(settings, required=False)
        with interruptible() as cancel:
            chosen = choose_config(config_file, config_ref, settings, cancel)
            repo = repository_for(chosen.identity, settings, cancel)
            with progress_bar(not as_json, "Restoring") as on_progress:
                result = run_restore(
                    repo,
                    backup,
                    target or Path("/"),
                    master=key,
                    include=patterns,
                    existing=policy or DEFAULT_EXISTING,
                    progress=on_progress,
                    cancel=cancel,
                )
    except CancelledError as exc:
        interrupted(exc, as_json)
    except BackappError as exc:
        fail(exc, as_json=as_json)
    doc = result.to_json()
    if as_json:
        print(json.dumps(doc))
    elif result.ok:
        out_console.print(
            f"[bold green]Restored backup {result.backup_id}[/] into {result.target}: "
            f"{doc['filesRestored']:,} files, {doc['dirsRestored']:,} folders, "
            f"{human_bytes(result.bytes)} in {doc['durationSeconds']:.1f}s"
        )
    else:
        out_console.print(
            f"[bold red]Restore of {result.backup_id} finished with "
            f"{len(result.errors)} error(s)[/]"
        )
        for path, message in result.errors[:50]:
            out_console.print(f"  {path}: {message}", soft_wrap=True)
        if len(result.errors) > 50:
            out_console.print(f"  … and {len(result.errors) - 50} more (--json lists all)")
    if result.warnings and not as_json:
        out_console.print(f"[yellow]{len(result.warnings)} warning(s):[/]")
        for path, message in result.warnings[:20]:
            out_console.print(f"  {path or 'restore'}: {message}", soft_wrap=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def verify(
    config_file: ConfigFile = None,
    config_ref: ConfigRef = None,
    backup: Annotated[str, typer.Option("--backup", "-b", help="Backup id or 'latest'.")] = (
        "latest"
    ),
    full: Annotated[
        bool,
        typer.Option("--full", help="Download everything and check every file's SHA-256."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Verify a backup: quick (objects and manifest) or --full (every byte); exit 1 if damaged."""
    try:
        settings = _settings()
        with interruptible() as cancel:
            chosen = choose_config(config_file, config_ref, settings, cancel)
            repo = repository_for(chosen.identity, settings, cancel)
            with progress_bar(not as_json, "Verifying") as on_progress:
                result = run_verify(
                    repo,
                    backup,
                    master=master_key(settings, required=False),
                    full=full,
                    progress=on_progress,
                    cancel=cancel,
                )
    except CancelledError as exc:
        interrupted(exc, as_json)
    except BackappError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        print(json.dumps(result.to_json()))
    elif result.ok:
        out_console.print(
            f"[bold green]Backup {result.backup_id} verified[/] ({'full' if full else 'quick'}): "
            f"{result.objects} objects, {result.files:,} files"
            + (f", {human_bytes(result.bytes)}" if full else "")
            + f" checked in {result.duration_seconds:.1f}s"
        )
    else:
        out_console.print(
            f"[bold red]Backup {result.backup_id} is damaged[/]: {len(result.problems)} problem(s)"
        )
        for where, message in result.problems[:100]:
            out_console.print(f"  {where}: {message}", soft_wrap=True)
    if result.warnings and not as_json:
        out_console.print(f"[yellow]{len(result.warnings)} note(s)[/] (not damage):")
        for where, message in result.warnings[:20]:
            out_console.print(f"  {where}: {message}", soft_wrap=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def decrypt(
    source: Annotated[Path, typer.Argument(help="Encrypted object (a .enc file), or '-'.")],
    output: Annotated[Path, typer.Argument(help="Where to write the plain object, or '-'.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Decrypt one object (e.g. data.tar.gz.enc) to its plain form, with BACKUP_ENCRYPTION_KEY."""
    to_stdout = str(output) == "-"
    if not to_stdout and output.exists() and not force:
        fail(UsageError(f"{output} exists; use --force to replace it"))
    try:
        key = master_key(_settings(), required=True)
        assert key is not None
        infile: Any = sys.stdin.buffer if str(source) == "-" else source.open("rb")
    except BackappError as exc:
        fail(exc)
    except OSError as exc:
        fail(UsageError(f"cannot read {source}: {exc.strerror}"))
    partial = output.with_name(f".{output.name}.partial") if not to_stdout else None
    try:
        with infile:
            out: Any = sys.stdout.buffer if partial is None else _create_new(partial)
            try:
                for chunk in decrypt_stream(file_chunks(infile), key, source.name):
                    out.write(chunk)
            finally:
                if not to_stdout:
                    out.close()
        if partial is not None:
            os.replace(partial, output)
    except (IntegrityError, EncryptionKeyError) as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        fail(exc)
    except OSError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        fail(BackappError(f"cannot write {output}: {exc.strerror}"))


def _create_new(path: Path) -> Any:
    """Given a path, create a fresh file there (a stale file or link of that name goes; a
    link is never written through). Raise OSError."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


__all__ = ["EXIT_BAD_INPUT", "backup_app", "backups_app", "decrypt", "restore", "verify"]
