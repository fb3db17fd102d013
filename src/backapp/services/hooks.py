"""Hooks: the commands a config runs around its backups (``options.hooks``, docs/HOOKS.md).

Each command is an argv list run without a shell, in a process group of its own (a
timeout or a cancel ends the command and its children), with stdin closed, the run's
details in ``BACKAPP_*`` variables and the worker's environment minus BackApp's secrets.
The end of its output (OUTPUT_LIMIT bytes of stdout and of stderr, BackApp's secrets
masked) goes into the run's log. A failing ``before`` command fails the run (HookError)
unless it is optional; a failing ``after`` or ``onError`` command is a warning.
"""

from __future__ import annotations

import logging
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any
from urllib.parse import urlsplit

from backapp.db.repositories.runs import RunOutcome
from backapp.domain.config import HOOK_PHASES, HookCommand, Hooks
from backapp.engine.progress import CancelToken
from backapp.errors import CancelledError, HookError
from backapp.settings import Settings

logger = logging.getLogger(__name__)

OUTPUT_LIMIT = 4096  # bytes kept of each stream: its end, where the error is
ERROR_LIMIT = 2000  # characters of a failed command's output quoted in the run's error
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
DRAIN_SECONDS = 1.0  # output still read after the command exits (a child may hold the pipe)
CANCELLED_LIMIT = 30  # seconds an onError command of a cancelled run is given at most
# Never handed to a hook: BackApp's secrets. Every BACKAPP_* variable of the worker is
# dropped too: a hook's BACKAPP_* variables are exactly the ones describing its run.
SECRET_ENV = (
    "BACKUP_ENCRYPTION_KEY",
    "BACKUP_ENCRYPTION_KEY_FILE",
    "DATABASE_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)
_MASK = "[secret]"


@dataclass
class HookResult:
    """What one hook command did: how it ended and the end of what it printed."""

    phase: str
    argv: list[str]
    optional: bool = False
    position: int = 1  # in its phase, from 1
    exit_code: int | None = None
    duration_seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False  # the start of the output was cut (only its end is kept)
    error: str | None = None  # why it failed ("exit status 1", "timed out after 60 s", …)

    @property
    def ok(self) -> bool:
        """Whether the command ran and exited with status 0."""
        return self.error is None

    @property
    def name(self) -> str:
        """The command as errors, alerts and logs name it: phase, position and program only
        (its arguments may hold what a notification should not carry)."""
        return f"{self.phase} hook {self.position} ({self.argv[0]})"

    @property
    def command(self) -> str:
        """The command as a shell would spell it (for people; it never runs in one)."""
        text = shlex.join(self.argv)
        return text if len(text) <= 200 else text[:199] + "…"

    def to_json(self) -> dict[str, Any]:
        """Return the camelCase JSON the run's log stores."""
        return {
            "phase": self.phase,
            "position": self.position,
            "argv": self.argv,
            "command": self.command,
            "optional": self.optional,
            "exitCode": self.exit_code,
            "durationSeconds": round(self.duration_seconds, 3),
            "ok": self.ok,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "truncated": self.truncated,
        }


def hook_environment(parent: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, str]:
    """Given the worker's environment and a run's BACKAPP_* variables, return a hook's
    environment: the worker's without BackApp's secrets and settings, plus the variables."""
    env = {k: v for k, v in parent.items() if k not in SECRET_ENV and not k.startswith("BACKAPP_")}
    env.update(variables)
    return env


def secrets_of(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Given the settings and the environment, return the secret values a hook's output
    must never show (masked if a hook prints one anyway)."""
    found = [
        secret.get_secret_value()
        for secret in (
            settings.backup_encryption_key,
            settings.admin_password,
            settings.metrics_token,
        )
        if secret is not None
    ]
    found += [environ.get(name, "") for name in SECRET_ENV if not name.endswith("_FILE")]
    password = urlsplit(settings.database_url).password
    if password:
        found.append(password)
    return sorted({s for s in found if len(s) >= 6}, key=len, reverse=True)


class _Tail:
    """The last OUTPUT_LIMIT bytes of a stream, and whether anything before them was cut."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > OUTPUT_LIMIT:
            del self.data[: len(self.data) - OUTPUT_LIMIT]
            self.cut = True

    def text(self, mask: Callable[[str], str]) -> str:
        text = self.data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        return mask(text)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Given a running command, end its process group: SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(
    phase: str,
    command: HookCommand,
    *,
    env: Mapping[str, str],
    timeout: float,
    cancel: CancelToken | None = None,
    mask: Callable[[str], str] = lambda text: text,
    position: int = 1,
) -> HookResult:
    """Given a hook command, run it (no shell) until it exits, times out or is cancelled;
    return what it did. Never raises for the command's own failure."""
    result = HookResult(phase, list(command.argv), command.optional, position)
    started = time.monotonic()
    try:
        process = subprocess.Popen(  # noqa: S603 - an argv list, no shell: the point of hooks
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,  # its own process group: a timeout ends its children too
        )
    except FileNotFoundError:
        result.error = f"program not found: {command.argv[0]!r} (not in PATH, or no such file)"
        return result
    except OSError as exc:
        result.error = f"cannot start {command.argv[0]!r}: {exc.strerror or exc}"
        return result
    streams: dict[IO[bytes], _Tail] = {}
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
            streams[stream] = _Tail()
        exited: float | None = None
        while selector.get_map():
            for key, _ in selector.select(0.1):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    streams[key.fileobj].add(chunk)  # type: ignore[index]
                else:
                    selector.unregister(key.fileobj)
            now = time.monotonic()
            if process.poll() is not None:
                exited = exited or now
                if now - exited > DRAIN_SECONDS:
                    break  # a child it left running holds the pipe open: stop reading
            elif result.error is not None:
                continue  # stopped, and still going: read on until it is gone
            elif now - started > timeout:
                result.error = f"timed out after {timeout:g} s, stopped"
                _stop(process)
            elif cancel is not None and cancel.cancelled:
                result.error = "cancelled with its run, stopped"
                _stop(process)
    for stream in streams:
        stream.close()
    result.exit_code = process.wait()
    result.duration_seconds = time.monotonic() - started
    out, err = streams[process.stdout], streams[process.stderr]  # type: ignore[index]
    result.stdout, result.stderr = out.text(mask), err.text(mask)
    result.truncated = out.cut or err.cut
    if result.error is None and result.exit_code != 0:
        code = result.exit_code
        result.error = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    return result


@dataclass
class RunHooks:
    """The hooks of one backup run: its commands, the variables describing the run, and
    what each command did (the run's log keeps it)."""

    hooks: Hooks | None
    variables: dict[str, str]
    enabled: bool = True
    cancel: CancelToken | None = None
    secrets: list[str] = field(default_factory=list)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_command: Callable[[str], None] | None = None  # told "before hook 1/2: pg_dump"
    results: list[HookResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.hooks is not None and not self.hooks.empty and not self.enabled:
            counts = ", ".join(f"{len(self.hooks.commands(p))} {p}" for p in HOOK_PHASES)
            self.warnings.append(
                f"hooks are off on this server (BACKAPP_HOOKS=off): not run ({counts})"
            )

    @classmethod
    def of(
        cls,
        settings: Settings,
        hooks: Hooks | None,
        variables: Mapping[str, str],
        **kwargs: Any,
    ) -> RunHooks:
        """Given the settings, a config's hooks and the run's variables (BACKAPP_CONFIG_NAME,
        …), return the run's hooks (off when ``BACKAPP_HOOKS=off``)."""
        environ = dict(os.environ)
        return cls(
            hooks,
            dict(variables),
            enabled=settings.hooks,
            secrets=secrets_of(settings, environ),
            environ=environ,
            **kwargs,
        )

    def mask(self, text: str) -> str:
        """Given a hook's output, return it with BackApp's secrets replaced by a mark."""
        for secret in self.secrets:
            text = text.replace(secret, _MASK)
        return text

    def run(self, phase: str, **variables: str | int | None) -> list[HookResult]:
        """Given a phase (before, after, onError) and more variables (BACKAPP_STATUS=…),
        run its commands in order; return what they did. Raise HookError when a required
        ``before`` command fails (the commands after it do not run), CancelledError when the
        run is cancelled during a ``before`` command."""
        if self.hooks is None or not self.enabled:
            return []
        commands = self.hooks.commands(phase)
        env = hook_environment(
            self.environ,
            {
                **self.variables,
                "BACKAPP_HOOK": phase,
                **{k: "" if v is None else str(v) for k, v in variables.items()},
            },
        )
        # A cancelled run's onError commands still run (they report it), briefly.
        cancelled = self.cancel is not None and self.cancel.cancelled
        done = []
        for position, command in enumerate(commands, 1):
            if self.on_command is not None:
                self.on_command(f"{phase} hook {position}/{len(commands)}: {command.argv[0]}")
            limit = command.timeout_seconds or self.hooks.timeout_seconds
            result = run_command(
                phase,
                command,
                env=env,
                timeout=min(limit, CANCELLED_LIMIT) if cancelled else limit,
                cancel=None if cancelled else self.cancel,
                mask=self.mask,
                position=position,
            )
            self.results.append(result)
            done.append(result)
            logger.info("%s: %s", result.name, result.error or "ok")
            if result.ok:
                continue
            if phase == "before" and self.cancel is not None and self.cancel.cancelled:
                raise CancelledError(self.cancel.reason)  # not the hook's failure: the run's
            if phase == "before" and not command.optional:
                raise HookError(self._failure(result))
            self.warnings.append(
                f"{result.name} failed ({result.error})"
                + (", optional: the run went on" if command.optional else "")
            )
        return done

    def _failure(self, result: HookResult) -> str:
        said = (result.stderr or result.stdout).strip()
        if len(said) > ERROR_LIMIT:
            said = "…" + said[-ERROR_LIMIT:]
        message = f"{result.name} failed ({result.error})"
        return f"{message}:\n{said}" if said else message

    def to_json(self) -> dict[str, Any]:
        """Return the run log's part of the hooks: ``hooks`` and ``warnings`` (when any)."""
        out: dict[str, Any] = {}
        if self.results:
            out["hooks"] = [r.to_json() for r in self.results]
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def into(self, outcome: RunOutcome) -> RunOutcome:
        """Given a run's outcome, return it with the hooks' log in its details."""
        log = self.to_json()
        if not log:
            return outcome
        details = dict(outcome.details or {})
        details["warnings"] = [*details.get("warnings", []), *log.pop("warnings", [])]
        if not details["warnings"]:
            del details["warnings"]
        return replace(outcome, details={**details, **log})


def run_variables(
    *, config_id: str, config_name: str, slug: str, run_id: str, trigger: str
) -> dict[str, str]:
    """Given who a run is, return the BACKAPP_* variables every hook of it gets."""
    return {
        "BACKAPP_CONFIG_ID": config_id,
        "BACKAPP_CONFIG_NAME": config_name,
        "BACKAPP_CONFIG_SLUG": slug,
        "BACKAPP_RUN_ID": run_id,
        "BACKAPP_TRIGGER": trigger,
    }
