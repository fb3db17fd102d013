"""``backapp forget``: apply a config's retention policy now, or forget one backup;
``backapp prune``: delete the blocks no backup references any more."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backapp.cli.chosen import (
    ConfigFile,
    ConfigRef,
    JsonFlag,
    choose_config,
    interrupted,
    repository_for,
)
from backapp.cli.output import EXIT_FAILED, fail, human_bytes, out_console
from backapp.cli.signals import interruptible
from backapp.errors import BackappError, CancelledError
from backapp.settings import Settings

if TYPE_CHECKING:  # services.retention reaches the database layer: imported when run
    from backapp.services.retention import RetentionPreview


def forget(
    config_file: ConfigFile = None,
    config_ref: ConfigRef = None,
    backup: Annotated[
        str | None,
        typer.Option(
            "--backup",
            "-b",
            help="Forget this one backup (id or unique prefix); refused while a backup that "
            "stays requires it.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="Only say what would go, and why the rest stays."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Apply a config's retention policy now (options.retention, retentionDays), as a run
    does after its backup; or, with --backup, forget one backup."""
    from backapp.services import retention

    try:
        settings = Settings()
        with interruptible() as cancel:
            chosen = choose_config(config_file, config_ref, settings, cancel)
            config, slug, config_id = chosen.document, chosen.identity.slug, chosen.identity.id
            repo = repository_for(chosen.identity, settings, cancel)
            ctx = chosen.ctx  # a config the server knows: its runs are marked too
            if backup is not None:
                if ctx is not None and config_id is not None:
                    forgotten = retention.forget_recorded(
                        ctx, ctx.db.session, config_id, config, slug, backup, dry_run=dry_run
                    )
                else:
                    forgotten = retention.forget_backup(repo, backup, dry_run=dry_run)
                _print_forgotten(forgotten, dry_run=dry_run, as_json=as_json)
                return
            if dry_run or config.options.retention_policy is None:
                preview = retention.preview_over(repo, config)
                _print_preview(config.name, preview, dry_run=dry_run, as_json=as_json)
                return
            if ctx is not None and config_id is not None:
                outcome = retention.apply(ctx, ctx.db.session, config_id, config, slug)
            else:
                outcome = retention.delete_expired(repo, config)
    except CancelledError as exc:
        interrupted(exc, as_json)
    except BackappError as exc:
        fail(exc, as_json=as_json)
    _print_applied(outcome["retention"], as_json)


def _print_forgotten(backup_id: str, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"dryRun": dry_run, "forgotten": backup_id}))
    elif dry_run:
        out_console.print(f"Backup {backup_id} would be forgotten (no backup requires it).")
    else:
        out_console.print(f"[bold green]Forgot backup {backup_id}[/]")


def _print_preview(name: str, preview: RetentionPreview, *, dry_run: bool, as_json: bool) -> None:
    def rows(decisions: list[Any]) -> list[dict[str, str]]:
        return [{"backupId": d.backup_id, "reason": d.reason} for d in decisions]

    policy = preview.policy
    if as_json:
        body = {
            "dryRun": dry_run,  # without rules nothing is done either way
            "policy": policy.model_dump(mode="json", by_alias=True) if policy else None,
            "timezone": preview.timezone,
            "delete": rows(preview.delete),
            "keep": rows(preview.keep),
            "damaged": rows(preview.damaged),
        }
        print(json.dumps(body))
        return
    if policy is None:
        out_console.print(
            f"{name} has no retention rules (options.retention or retentionDays): "
            "nothing is forgotten."
        )
        return
    out_console.print(
        f"Retention of {name} ({policy.describe()}; periods in {preview.timezone}): "
        f"{len(preview.delete)} backup(s) would be deleted, "
        f"{len(preview.keep) + len(preview.damaged)} kept"
    )
    for d in preview.delete:
        out_console.print(f"  delete  {d.backup_id}  {d.reason}", soft_wrap=True)
    for d in [*preview.keep, *preview.damaged]:
        out_console.print(f"  keep    {d.backup_id}  {d.reason}", soft_wrap=True)


def _print_applied(outcome: dict[str, Any], as_json: bool) -> None:
    failed = "error" in outcome or bool(outcome.get("errors"))
    if as_json:
        print(json.dumps({"dryRun": False, **outcome}))
    else:
        if "error" in outcome:
            out_console.print(f"[bold red]{outcome['error']}[/]", soft_wrap=True)
        else:
            out_console.print(
                f"{len(outcome['deleted'])} expired backup(s) deleted, {outcome['kept']} kept"
            )
        for item in outcome["deleted"]:
            out_console.print(f"  deleted {item['backupId']}: {item['reason']}", soft_wrap=True)
        for problem in outcome.get("errors", []):
            out_console.print(f"  [yellow]not deleted:[/] {problem}", soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_FAILED)


def prune(
    config_file: ConfigFile = None,
    config_ref: ConfigRef = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="Only say what would be deleted."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete the stored blocks that no backup of the config references any more (after
    forget). Waits for a running backup of the config to finish; deletes nothing if a
    backup cannot be read."""
    from backapp.services import retention

    try:
        settings = Settings()
        with interruptible() as cancel:
            chosen = choose_config(config_file, config_ref, settings, cancel)
            repo = repository_for(chosen.identity, settings, cancel)
            result = retention.prune(repo, dry_run=dry_run)
    except CancelledError as exc:
        interrupted(exc, as_json)
    except BackappError as exc:
        fail(exc, as_json=as_json)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    verb = "would be" if dry_run else "were"
    out_console.print(
        f"{'Prune (dry run)' if dry_run else '[bold green]Pruned[/]'}: "
        f"{result.blocks_removed:,} unreferenced block(s) {verb} removed, "
        f"{human_bytes(result.bytes_freed)} freed; {result.packs_removed} pack(s) deleted, "
        f"{result.packs_repacked} repacked, {result.packs_unlisted_removed} left by "
        f"interrupted runs; {result.blocks_kept:,} block(s) of {result.backups} backup(s) kept"
    )
    for note in result.notes:
        out_console.print(f"  [yellow]note:[/] {note}", soft_wrap=True)
