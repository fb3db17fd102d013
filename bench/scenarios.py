"""The benchmark scenarios, run in an order that lets later ones reuse earlier work.

Local scenarios run on a copy of the corpus ("live"), because the incremental rows
mutate it in place; the S3 and scaling scenarios read the pristine corpus.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import corpus
from measure import BenchError, Measurement, shell, timed, tree_bytes
from results import Results
from s3server import S3_ENV, MotoServer
from tools import Backapp, Restic, fresh_dir

Sizer = Callable[[], int]


RESTORE_SETTLE_SECONDS = 36
WEEK_DAYS = 7  # mutated days, day 1 included, for the week's totals


@dataclass
class Settings:
    """What one benchmark run uses."""

    project: Path
    work: Path
    size: str
    scale_size: str
    seed: int
    timeout: float
    budget: float
    s3: bool = True
    scaling: bool = True
    million: int = 0
    api_seconds: float = 0.0  # API load per database; 0 skips it


class Scenarios:
    """Given settings and a Results collector, run the scenarios into it, phase by phase."""

    def __init__(self, settings: Settings, results: Results) -> None:
        self.s = settings
        self.r = results
        self.run_dir = fresh_dir(settings.work / "run")
        self.env = {**os.environ, "LC_ALL": "C"}
        self.env.pop("BACKUP_ENCRYPTION_KEY", None)
        # An installed BackApp has its bytecode compiled; this sandbox sets
        # PYTHONDONTWRITEBYTECODE, which would bill a recompile to every run. The cache
        # goes to the work folder, so nothing is written next to the sources.
        py_env = {k: v for k, v in self.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        py_env["PYTHONPYCACHEPREFIX"] = str(settings.work / "pycache")
        self.backapp = Backapp(
            settings.project / ".venv" / "bin" / "backapp",
            self.run_dir / "configs",
            env=py_env,
            timeout=settings.timeout,
        )
        self.corpus = Path()
        self.live = self.run_dir / "live"
        self.restic_local: Restic | None = None
        # The day-1 incremental configs, kept for the week: algorithm -> (config, folder)
        self.incremental_configs: dict[str, tuple[Path, Path]] = {}

    # -- helpers -----------------------------------------------------------------

    def restic(self, repo: str, env: dict[str, str] | None = None) -> Restic:
        """Given a repository, return a Restic sharing this run's cache folder."""
        cache = self.run_dir / "restic-cache"
        return Restic(repo, cache=cache, env=env or self.env, timeout=self.s.timeout)

    def folder(self, name: str) -> Path:
        """Given a name, return that path inside this run's folder."""
        return self.run_dir / name

    def backup_row(
        self,
        key: str,
        label: str,
        run: Callable[[], Measurement],
        size: Sizer,
        *,
        ref: str | None = None,
        target: float | None = None,
        stored_target: float | None = None,
        repeatable: bool = False,
        fresh: Path | None = None,
    ) -> None:
        """Measure a backup; its stored figure is what the destination grew by. ``fresh``:
        a folder emptied before each attempt (a full backup's destination: a second attempt
        into the same one would find every block stored already)."""

        def measure() -> Measurement:
            if fresh is not None:
                fresh_dir(fresh)
            before = size()
            m = run()
            m.stored = size() - before
            return m

        self.r.measure(
            key,
            label,
            measure,
            ref=ref,
            target=target,
            stored_target=stored_target,
            repeatable=repeatable,
        )

    def restore_row(
        self,
        key: str,
        label: str,
        run: Callable[[Path], Measurement],
        source: Path,
        *,
        ref: str | None = None,
        target: float | None = None,
    ) -> None:
        """Measure a restore into a new folder, then compare the restored tree with source."""

        attempts = iter(range(1, 100))

        def measure() -> Measurement:
            into = fresh_dir(self.folder(f"restore-{key}-{next(attempts)}"))
            # ext4 allocates inodes slowly for ~35 s after mass deletions (recently_deleted
            # in its allocator): let earlier rows' deletions settle, for every tool alike.
            os.sync()
            time.sleep(RESTORE_SETTLE_SECONDS)
            m = run(into)
            try:
                diff = corpus.compare_trees(source, corpus.restored_root(into, source))
                verdict = (diff.ok, diff.summary())
            except BenchError as exc:
                verdict = (False, f"FAIL ({exc})")
            self.r.facts.setdefault("restore_checks", {})[key] = verdict
            m.extra["check"] = verdict[1]
            # Restored trees stay until the run ends: ext4 creates files slowly for a while
            # after many were deleted, which would penalise whichever restore comes next.
            return m

        self.r.measure(key, label, measure, ref=ref, target=target, repeatable=True)

    def full_backup_rows(self, *keys: str) -> None:
        """Given row keys, mark them as full backups (the peak-RSS target applies)."""
        self.r.facts.setdefault("full_backup_rows", []).extend(keys)

    # -- phases ------------------------------------------------------------------

    def prepare(self) -> None:
        """Build (or reuse) the corpus, copy it to the live folder and warm the cache."""
        self.corpus = corpus.ensure_corpus(self.s.work, self.s.size, self.s.seed)
        corpus.copy_tree(self.corpus, self.live)
        corpus.warm_cache(self.corpus)
        corpus.warm_cache(self.live)
        self.backapp.warm_up(self.folder("warm-up"))
        self.r.facts["corpus"] = str(self.corpus)
        self.r.facts["corpus_bytes"] = tree_bytes(self.corpus)

    def references(self) -> None:
        """Measure the tar pipelines on the live corpus."""
        src = f"-C {self.live.parent} {self.live.name}"
        out = self.folder("out")
        enc = "openssl enc -aes-256-ctr -pbkdf2 -pass pass:x"
        pipelines = {
            "tar_cat": ("tar | cat (read only)", f"tar -cf - {src} | cat > /dev/null"),
            "tar_gzip_enc": (
                "tar | gzip -6 | openssl aes-256-ctr",
                f"tar -cf - {src} | gzip -6 | {enc} > {out}",
            ),
            "tar_pigz_enc": (
                "tar | pigz -6 -p 2 | openssl aes-256-ctr",
                f"tar -cf - {src} | pigz -6 -p 2 | {enc} > {out}",
            ),
            "tar_zstd": ("tar | zstd -3 -T2", f"tar -cf - {src} | zstd -q -3 -T2 > {out}"),
        }
        for key, (label, pipeline) in pipelines.items():

            def run(pipeline: str = pipeline) -> Measurement:
                m = timed(shell(pipeline), env=self.env, timeout=self.s.timeout)
                if out.exists():
                    m.stored = out.stat().st_size
                    out.unlink()
                return m

            # The single-threaded gzip row is context only: not worth a second attempt.
            self.r.measure(key, label, run, repeatable=key != "tar_gzip_enc")

    def restic_local_rows(self) -> None:
        """Measure restic full, no-change, restore and check on a local repository."""
        restic = self.restic(str(self.folder("restic-local")))
        self.restic_local = restic
        repo = Path(restic.repo)

        def full() -> Measurement:
            # A new repository for each attempt, so a second attempt is a full backup too.
            fresh_dir(repo)
            restic.init()
            m = restic.backup(self.live)
            m.stored = tree_bytes(repo)
            return m

        backup = lambda: restic.backup(self.live)  # noqa: E731
        self.r.measure("restic_full", "restic full (local)", full, repeatable=True)
        self.backup_row(
            "restic_nochange",
            "restic no-change (local)",
            backup,
            _folder_size(repo),
            repeatable=True,
        )
        self.restore_row("restic_restore", "restic restore (local)", restic.restore, self.live)
        self.r.measure(
            "restic_check",
            "restic check --read-data (local)",
            restic.check_read_data,
            repeatable=True,
        )

    def backapp_local_rows(self) -> None:
        """Measure BackApp full (gzip, zstd), no-change, restore and verify to a folder."""
        ba = self.backapp
        gz_dest = {"type": "local", "path": str(self.folder("backapp-gzip"))}
        zs_dest = {"type": "local", "path": str(self.folder("backapp-zstd"))}
        gz_size, zs_size = (
            _folder_size(self.folder("backapp-gzip")),
            _folder_size(self.folder("backapp-zstd")),
        )
        gz_full = ba.config("bench-gzip", self.live, gz_dest)
        gz_incr = ba.config("bench-gzip", self.live, gz_dest, kind="incremental")
        zs_full = ba.config("bench-zstd", self.live, zs_dest, algorithm="zstd", level=3)
        self.full_backup_rows("ba_full_gzip", "ba_full_zstd")
        self.backup_row(
            "ba_full_gzip",
            "BackApp full gzip-6+enc (local)",
            lambda: ba.backup(gz_full),
            gz_size,
            ref="tar_pigz_enc",
            target=1.0,
            repeatable=True,
            fresh=self.folder("backapp-gzip"),
        )
        self.backup_row(
            "ba_full_zstd",
            "BackApp full zstd-3+enc (local)",
            lambda: ba.backup(zs_full),
            zs_size,
            ref="restic_full",
            target=0.8,
            repeatable=True,
            fresh=self.folder("backapp-zstd"),
        )
        # Every file read again, every block found stored: the manifest is what is new.
        self.backup_row(
            "ba_full_again",
            "BackApp second full gzip-6+enc, unchanged data (local)",
            lambda: ba.backup(gz_full),
            gz_size,
            ref="ba_full_gzip",
            stored_target=0.01,
            repeatable=True,
        )
        self.backup_row(
            "ba_nochange",
            "BackApp no-change incremental gzip (local)",
            lambda: ba.backup(gz_incr),
            gz_size,
            ref="restic_nochange",
            target=0.8,
            repeatable=True,
        )
        self.restore_row(
            "ba_restore",
            "BackApp restore latest (local)",
            lambda into: ba.restore(gz_full, into),
            self.live,
            ref="restic_restore",
            target=0.8,
        )
        self.r.measure(
            "ba_verify",
            "BackApp verify --full (local)",
            lambda: ba.verify(gz_full),
            ref="restic_check",
            repeatable=True,
        )

    def incremental_rows(self) -> None:
        """Mutate the live corpus (one day of changes) and measure the incremental backups."""
        labels = {
            "restic_incr": "restic incremental (local)",
            "ba_incr_gzip": "BackApp incremental gzip-6+enc (local)",
            "ba_incr_zstd": "BackApp incremental zstd-3+enc (local)",
        }
        try:
            self.r.facts["mutation"] = corpus.mutate(self.live, day=1)
            corpus.warm_cache(self.live)
        except BenchError as exc:
            for key, label in labels.items():
                self.r.skip(key, label, f"mutate_corpus.py failed: {exc}")
            return
        restic = self.restic_local
        if restic is None:
            self.r.skip("restic_incr", labels["restic_incr"], "no restic repository")
        else:
            size = _folder_size(Path(restic.repo))
            run = lambda: restic.backup(self.live)  # noqa: E731
            self.backup_row("restic_incr", labels["restic_incr"], run, size)
        for algo, level, target in (("gzip", 6, 2.5), ("zstd", 3, 1.0)):
            dest = {"type": "local", "path": str(self.folder(f"backapp-{algo}"))}
            cfg = self.backapp.config(
                f"bench-{algo}", self.live, dest, kind="incremental", algorithm=algo, level=level
            )
            self.incremental_configs[algo] = (cfg, Path(dest["path"]))
            self.backup_row(
                f"ba_incr_{algo}",
                labels[f"ba_incr_{algo}"],
                lambda cfg=cfg: self.backapp.backup(cfg),
                _folder_size(Path(dest["path"])),
                ref="restic_incr",
                target=target,
                stored_target=1.5,
            )

    def week_rows(self) -> None:
        """Mutate the live corpus for days 2..7 (day 1: the incremental rows), back up each
        day with restic and BackApp (gzip, zstd), and record each tool's week as one row:
        wall and CPU summed, peak RSS the largest, stored the growth of days 1..7 summed."""
        tools = {
            "restic": ("restic_week", "restic_incr", "restic, 7 days of changes (local)"),
            "gzip": (
                "ba_week_gzip",
                "ba_incr_gzip",
                "BackApp incremental gzip-6+enc, 7 days (local)",
            ),
            "zstd": (
                "ba_week_zstd",
                "ba_incr_zstd",
                "BackApp incremental zstd-3+enc, 7 days (local)",
            ),
        }
        days: dict[str, list[Measurement]] = {t: [] for t in tools}
        problem = ""
        for tool, (_, day1, _) in tools.items():
            m = self.r.get(day1)
            if m is None:
                problem = problem or f"no day-1 row {day1}"
            else:
                days[tool].append(m)
        runs: dict[str, tuple[Callable[[], Measurement], Sizer]] = {}
        if self.restic_local is not None:
            restic = self.restic_local
            runs["restic"] = (lambda: restic.backup(self.live), _folder_size(Path(restic.repo)))
        for algo, (cfg, folder) in self.incremental_configs.items():
            runs[algo] = (lambda cfg=cfg: self.backapp.backup(cfg), _folder_size(folder))
        mutations = self.r.facts.setdefault("week_mutations", {})
        for day in range(2, WEEK_DAYS + 1):
            if problem or runs.keys() != tools.keys():
                problem = problem or "a tool has no day-1 repository"
                break
            try:
                done = corpus.mutate(self.live, day=day)  # "...; N MiB written <details>"
                mutations[day] = done.split(": ", 1)[-1].split(" written", 1)[0] + " written"
                corpus.warm_cache(self.live)
                for tool, (run, size) in runs.items():
                    before = size()
                    m = run()
                    m.stored = size() - before
                    days[tool].append(m)
                    print(
                        f"[{self.r.elapsed():6.0f}s]   day {day} {tool}: wall {m.wall:.2f} s, "
                        f"stored {m.stored / 2**20:.1f} MiB",
                        flush=True,
                    )
            except BenchError as exc:
                problem = f"day {day}: {exc}"
        self.r.facts["week_days"] = {
            tool: [
                {"wall": m.wall, "cpu": m.cpu, "rss_mib": m.rss_mib, "stored": m.stored or 0}
                for m in ms
            ]
            for tool, ms in days.items()
        }
        for tool, (key, _, label) in tools.items():

            def total(ms: list[Measurement] = days[tool]) -> Measurement:
                if problem:
                    raise BenchError(problem)
                return _summed(ms)

            is_backapp = tool != "restic"
            self.r.measure(
                key,
                label,
                total,
                ref="restic_week" if is_backapp else None,
                stored_target=1.3 if is_backapp else None,
            )

    def resume_rows(self) -> None:
        """A full backup killed (SIGKILL) once half of it is stored, then run again: what
        the resumed run uploads (issue 17), against a full backup of the same corpus."""
        folder = self.folder("backapp-resume")
        dest = {"type": "local", "path": str(folder)}
        config = self.backapp.config("bench-resume", self.live, dest, algorithm="zstd", level=3)
        size = _folder_size(folder)
        self.backup_row(  # the whole: what an uninterrupted full backup stores
            "ba_resume_whole",
            "BackApp full zstd-3+enc, uninterrupted, for the resume row (local)",
            lambda: self.backapp.backup(config),
            size,
            fresh=folder,
        )
        whole_run = self.r.get("ba_resume_whole")
        whole = whole_run.stored if whole_run is not None and whole_run.stored else 0
        if not whole:
            return
        fresh_dir(folder)
        held = self.backapp.kill_at(config, folder, int(whole * 0.5))
        self.r.facts["resume_killed_at"] = held
        self.backup_row(
            "ba_resume",
            f"BackApp full zstd-3+enc resumed after a kill at {held / whole:.0%} (local)",
            lambda: self.backapp.backup(config),
            size,
            ref="ba_resume_whole",
            stored_target=0.6,
        )

    def s3_rows(self) -> None:
        """Measure full, no-change and restore to moto's S3, with a fresh server per tool."""
        log = self.folder("moto.log")
        self.full_backup_rows("ba_s3_full", "ba_s3_full_zstd")
        with MotoServer(log) as server:
            bucket = "bench-backapp"
            server.create_bucket(bucket)
            ba = self.backapp.with_env(S3_ENV)
            dest = {
                "type": "s3",
                "bucket": bucket,
                "region": "us-east-1",
                "endpoint": server.endpoint,
            }
            full = ba.config("bench-s3", self.corpus, dest)
            incr = ba.config("bench-s3", self.corpus, dest, kind="incremental")
            zstd = ba.config("bench-s3-zstd", self.corpus, dest, algorithm="zstd", level=3)
            size = lambda: server.bucket_bytes(bucket)  # noqa: E731
            self.backup_row(
                "ba_s3_full",
                "BackApp full gzip-6+enc (S3/moto)",
                lambda: ba.backup(full),
                size,
                ref="restic_s3_full",
                target=0.8,
            )
            self.backup_row(
                "ba_s3_full_zstd",
                "BackApp full zstd-3+enc (S3/moto)",
                lambda: ba.backup(zstd),
                size,
                ref="restic_s3_full",
                target=0.8,
            )
            self.backup_row(
                "ba_s3_nochange",
                "BackApp no-change incremental gzip (S3/moto)",
                lambda: ba.backup(incr),
                size,
                ref="restic_s3_nochange",
                target=0.8,
                repeatable=True,
            )
            self.restore_row(
                "ba_s3_restore",
                "BackApp restore latest (S3/moto)",
                lambda into: ba.restore(full, into),
                self.corpus,
                ref="restic_s3_restore",
                target=0.8,
            )
            self.r.facts["moto_rss_after_backapp_mib"] = server.rss_mib()
        with MotoServer(log) as server:
            bucket = "bench-restic"
            server.create_bucket(bucket)
            repo = f"s3:{server.endpoint}/{bucket}"
            restic = self.restic(repo, env={**self.env, **S3_ENV})
            restic.init()
            size = lambda: server.bucket_bytes(bucket)  # noqa: E731
            backup = lambda: restic.backup(self.corpus)  # noqa: E731
            self.backup_row("restic_s3_full", "restic full (S3/moto)", backup, size)
            self.backup_row(
                "restic_s3_nochange",
                "restic no-change (S3/moto)",
                backup,
                size,
                repeatable=True,
            )
            self.restore_row(
                "restic_s3_restore", "restic restore (S3/moto)", restic.restore, self.corpus
            )
            self.r.facts["moto_rss_after_restic_mib"] = server.rss_mib()

    def cleanup(self) -> None:
        """Remove this run's copies, repositories and restores (the corpora stay)."""
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _summed(ms: list[Measurement]) -> Measurement:
    """Given one tool's daily backups, return them as one: times and stored bytes summed,
    the largest peak RSS, outside load weighted by wall time."""
    wall = sum(m.wall for m in ms)
    return Measurement(
        wall=wall,
        cpu=sum(m.cpu for m in ms),
        rss_kib=max(m.rss_kib for m in ms),
        stored=sum(m.stored or 0 for m in ms),
        other_load=sum(m.other_load * m.wall for m in ms) / wall if wall else 0.0,
        helper_cpu=sum(m.helper_cpu for m in ms),
        extra={"days": len(ms)},
    )


def _folder_size(path: Path) -> Sizer:
    return lambda: tree_bytes(path) if path.exists() else 0
