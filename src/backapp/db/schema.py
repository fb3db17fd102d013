"""Which migration a database is at, and which one this BackApp brings (for ``doctor``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError

from backapp.db.session import Database, normalise_url
from backapp.errors import ConfigError, DatabaseError

_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SchemaState:
    """The database's migration (None: none applied yet) and the newest this code knows."""

    current: str | None
    head: str
    known: bool  # whether this code knows the database's migration at all

    @property
    def up_to_date(self) -> bool:
        """Whether the database is at the newest migration."""
        return self.current == self.head


def schema_state(db: Database) -> SchemaState:
    """Given a database, return its migration state without changing anything.
    Raise DatabaseError (unreachable)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    assert head is not None
    try:
        with db.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except (OperationalError, InterfaceError) as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(f"cannot reach the database: {first}") from exc
    known = current is None or current in {s.revision for s in script.walk_revisions()}
    return SchemaState(current=current, head=head, known=known)


def sqlite_file(url: str) -> Path | None:
    """Given a DATABASE_URL, return its SQLite file (None for another database), without
    creating anything. Raise ConfigError (not a database URL)."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as exc:
        raise ConfigError(
            f"DATABASE_URL: not a database URL ({exc})", [("DATABASE_URL", str(exc))]
        ) from None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def open_database(url: str) -> Database:
    """Given a DATABASE_URL, return its Database (connecting later). Raise ConfigError."""
    try:
        return Database(url)
    except ArgumentError as exc:  # also an unknown dialect or driver (NoSuchModuleError)
        raise ConfigError(
            f"DATABASE_URL: not a database BackApp can use ({exc})",
            [("DATABASE_URL", str(exc))],
        ) from None
