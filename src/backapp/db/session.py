"""Database engines, sessions and migrations, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from backapp.errors import ConfigError, DatabaseError

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK = 0x6261636B  # "back": one migrator at a time on PostgreSQL
_READ_ONLY = "backapp_read_only"  # execution option of the engine that read-only sessions use
_TRUSTED_FOR = 1.0  # seconds a PostgreSQL connection is used again without a ping


def normalise_url(url: str) -> str:
    """Given a DATABASE_URL, return it with BackApp's drivers (psycopg 3 for PostgreSQL)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    """Given a database URL, return an Engine configured for BackApp's access pattern."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            # Each connection would see a database of its own: the web threads, the worker
            # and the scheduler would not meet. Say so instead of failing oddly later.
            raise ConfigError(
                "DATABASE_URL: an in-memory SQLite database is not shared between BackApp's "
                "threads and processes: give a file, e.g. sqlite:///./data/backapp.db",
                [("DATABASE_URL", "an in-memory database is not shared")],
            )
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            # Readers run side by side under WAL: enough connections for the web threads.
            pool_size=20,
            max_overflow=20,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        connect_args={"connect_timeout": 10},  # a partitioned database fails in seconds
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    # pool_pre_ping, except for a connection that finished a transaction a moment ago: a
    # round trip less per request. If the database went away in that moment, the first use
    # fails as in any outage (DatabaseError) and every pooled connection is replaced.
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in", -_TRUSTED_FOR) < _TRUSTED_FOR:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise DisconnectionError(str(exc)) from exc  # the pool connects anew
            raise


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(_READ_ONLY):
            # A reader takes no lock: under WAL it sees a snapshot and never waits for writers.
            conn.exec_driver_sql("BEGIN")
            return
        # A writer takes the write lock up front: a read-then-write transaction that upgrades
        # later fails with "database is locked" instead of waiting its turn.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(engine: Engine) -> None:
    """Given an engine, bring its schema to the newest migration. Raise DatabaseError."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise DatabaseError(f"cannot reach the database: {_short(exc)}") from exc


def _short(exc: OperationalError | InterfaceError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


class RequestTransaction:
    """The one transaction of a request: begun by its first ``session()`` block, kept open
    by a block that hands it over (authentication) and ended when the next block ends, or
    with the request if no block comes. Only the request's first transaction is handed
    over; when it ends, ``release`` is called (the request's slot, see ``request_slots``).
    """

    def __init__(
        self, db: Database, read_only: bool, release: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.read_only = read_only
        self.session: Session | None = None
        self.depth = 0
        self.first = True  # no transaction of this request has ended yet
        self._release = release

    @property
    def open(self) -> bool:
        """Return whether a transaction is open (handed over and not yet ended)."""
        return self.session is not None

    def end(self, *, commit: bool = True) -> None:
        """End the open transaction, if any: commit it, or roll it back."""
        session, self.session, self.depth = self.session, None, 0
        try:
            if session is None:
                return
            try:
                if commit:
                    session.commit()
                else:
                    session.rollback()
            finally:
                session.close()
        finally:
            if self.first:
                self.first = False
                if self._release is not None:
                    self._release()


_request: ContextVar[RequestTransaction | None] = ContextVar("backapp_request", default=None)


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        reader = self.engine.execution_options(**{_READ_ONLY: True})
        if self.engine.dialect.name == "postgresql":
            # BEGIN READ ONLY: a write slipped into a read-only request fails loudly.
            reader = reader.execution_options(postgresql_readonly=True)
        self.readers = sessionmaker(reader, expire_on_commit=False)
        # A handed-over transaction holds its connection while the request waits for a
        # worker thread: with fewer such requests at a time than the pool has connections,
        # waiting for a connection (in a thread) can never wait on them forever.
        pool_size = getattr(self.engine.pool, "size", None)
        self.request_slots = max(1, pool_size() - 1) if callable(pool_size) else 1

    @property
    def description(self) -> str:
        """Return the URL without its password, for logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(
        self, *, read_only: bool | None = None, hand_over: bool = False, separate: bool = False
    ) -> Iterator[Session]:
        """Yield a session in a transaction, committed on success, rolled back on error.

        A writer (the default outside a request) takes SQLite's write lock at BEGIN; a
        reader (``read_only=True``) takes none. Inside ``request()`` the blocks of the
        request share one transaction (a reader unless the request is not read-only or a
        block asks for a writer) unless ``separate``: a block nested in another joins it;
        a block that ``hand_over``s leaves it open for the next one, which commits it.

        Raise DatabaseError when the database cannot be reached (or the connection is lost
        on the way): callers can tell an outage from a bug.
        """
        scope = _request.get()
        try:
            if scope is None or scope.db is not self or separate:
                maker = self.readers if read_only else self.sessions
                with maker() as session, session.begin():
                    yield session
                return
            with self._in_scope(scope, read_only, hand_over) as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseError(f"cannot reach the database: {_short(exc)}") from exc

    @contextmanager
    def _in_scope(
        self, scope: RequestTransaction, read_only: bool | None, hand_over: bool
    ) -> Iterator[Session]:
        if read_only is False and scope.read_only:
            if scope.depth:
                raise RuntimeError("a writer block cannot join a read-only transaction")
            scope.end(commit=True)  # the reads so far stand; the writes get a writer
            scope.read_only = False
        if scope.session is None:
            scope.session = (self.readers if scope.read_only else self.sessions)()
            try:
                scope.session.begin()
            except BaseException:
                scope.end(commit=False)
                raise
        scope.depth += 1
        try:
            yield scope.session
        except BaseException:
            scope.end(commit=False)
            raise
        scope.depth -= 1
        if scope.depth == 0 and not (hand_over and scope.first):
            scope.end(commit=True)

    @contextmanager
    def request(
        self, *, read_only: bool, release: Callable[[], None] | None = None
    ) -> Iterator[RequestTransaction]:
        """Yield the transaction that the ``session()`` blocks run while inside share (in
        this thread, and in the threads it hands work to with its context), a reader if
        ``read_only``; ``release`` is called once its first transaction has ended. One
        still open on the way out is ended here (committed, or rolled back on error);
        async callers end it first, in a worker thread.
        """
        scope = RequestTransaction(self, read_only, release)
        token = _request.set(scope)
        try:
            yield scope
        except BaseException:
            scope.end(commit=False)
            raise
        else:
            scope.end(commit=True)
        finally:
            _request.reset(token)

    def upgrade(self) -> None:
        """Apply pending migrations."""
        upgrade(self.engine)

    def ping(self) -> None:
        """Check the database answers. Raise DatabaseError."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise DatabaseError(f"cannot reach the database: {_short(exc)}") from exc

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
