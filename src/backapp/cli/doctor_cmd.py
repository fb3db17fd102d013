"""``backapp doctor``: is this BackApp set up right? Exit 0 when all is well, 1 when
something is wrong (each problem in the words of the README's Troubleshooting), 2 for
bad usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from backapp.cli.chosen import ConfigFile, ConfigRef, JsonFlag
from backapp.cli.output import EXIT_BAD_INPUT, EXIT_FAILED, out_console
from backapp.domain.config import load_config_file, slugify
from backapp.engine.format.layout import newest_per_folder
from backapp.errors import BackappError, ConfigError, NotFoundError, StorageError
from backapp.settings import Settings
from backapp.storage.factory import open_storage

if TYPE_CHECKING:  # the services reach the database layer: imported when doctor runs
    from backapp.services.context import AppContext
    from backapp.services.doctor import Finding
    from backapp.services.identity import StoredConfig

_MARKS = {"ok": "[green]ok[/]     ", "note": "[dim]note[/]   ", "problem": "[bold red]PROBLEM[/]"}


def doctor(
    config_ref: ConfigRef = None, config_file: ConfigFile = None, as_json: JsonFlag = False
) -> None:
    """Check the settings, the database, the encryption key and every config's destination
    (reachable, writable, clock); say what is wrong. Exit 1 if something is."""
    from backapp.services import doctor as checks
    from backapp.services.context import AppContext
    from backapp.services.doctor import Finding

    if config_ref is not None and config_file is not None:
        _usage("give --config NAME|ID or --config-file FILE, not both", as_json)
    findings: list[Finding] = []
    settings, read = checks.load_settings()
    findings.append(read)
    if settings is not None:
        key, key_finding = checks.check_key(settings)
        findings.append(key_finding)
        identities: list[StoredConfig] = []
        if config_file is not None:
            identities = _from_file(settings, config_file, findings, as_json)
        else:
            db, found = checks.check_database(settings.database_url)
            findings.extend(found)
            if db is not None and not any(f.problem for f in found):
                ctx = AppContext(settings=settings, db=db)
                identities = _from_database(ctx, config_ref, findings, as_json)
        for identity in identities:
            found = checks.check_config(settings, identity, key)
            if key_finding.problem:  # a malformed key was named once: not "not set" again
                found = [f for f in found if f.topic != checks.T_KEY_MISSING]
            findings.extend(found)
        if not identities and not any(f.problem for f in findings):
            findings.append(Finding("configs", "note", "no configs to check"))
    _report(findings, as_json)
    raise typer.Exit(EXIT_FAILED if any(f.problem for f in findings) else 0)


def _from_file(
    settings: Settings, path: Path, findings: list[Finding], as_json: bool
) -> list[StoredConfig]:
    from backapp.services import doctor as checks
    from backapp.services.doctor import Finding
    from backapp.services.identity import StoredConfig, identity_of_file

    try:
        file = load_config_file(path)
    except ConfigError as exc:
        _usage(exc.message, as_json)
    document = file.document
    storage = open_storage(
        document.destination, default_endpoint=settings.aws_s3_endpoint, retry=False
    )
    try:
        newest = newest_per_folder(storage, document.destination.prefix)
        return [identity_of_file(file, lambda: newest)]
    except StorageError:
        # The probe of check_config says what is wrong with the destination.
        return [StoredConfig(file.config_id, file.slug or slugify(document.name), document)]
    except ConfigError as exc:
        findings.append(
            Finding(f"config '{document.name}'", "problem", exc.message, checks.T_CONFIG)
        )
        return []


def _from_database(
    ctx: AppContext, config_ref: str | None, findings: list[Finding], as_json: bool
) -> list[StoredConfig]:
    from backapp.services import doctor as checks
    from backapp.services.doctor import Finding

    try:
        identities = checks.stored_configs(ctx, config_ref)
    except NotFoundError as exc:
        _usage(exc.message, as_json)
    except BackappError as exc:
        findings.append(Finding("configs", "problem", exc.message, checks.T_DATABASE))
        return []
    if config_ref is None:
        findings.extend(checks.check_documents(ctx))
    return identities


def _usage(message: str, as_json: bool) -> NoReturn:
    if as_json:
        print(json.dumps({"status": "failed", "error": message}))
    else:
        out_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(EXIT_BAD_INPUT)


def _report(findings: list[Finding], as_json: bool) -> None:
    problems = [f for f in findings if f.problem]
    if as_json:
        doc = {
            "ok": not problems,
            "findings": [
                {"subject": f.subject, "status": f.status, "message": f.message, "topic": f.topic}
                for f in findings
            ],
        }
        print(json.dumps(doc))
        return
    for finding in findings:
        out_console.print(f"{_MARKS[finding.status]}  {finding.subject}: {finding.message}")
        if finding.topic:
            out_console.print(f'           see README.md, Troubleshooting: "{finding.topic}"')
    if problems:
        out_console.print(f"\n{len(problems)} problem(s) found.")
    else:
        out_console.print("\nAll is well.")
