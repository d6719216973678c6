"""Connections to the readings store and its migrations."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sensorguard.errors import ConfigurationError, SensorGuardError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_engines: dict[str, sa.Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()
_upgrade_lock = threading.Lock()


class StoreError(SensorGuardError):
    """The readings store is unreachable or not migrated."""


def dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """``INSERT`` for ``table`` in the connection's dialect, so that ``on_conflict_do_*``
    (PostgreSQL's and SQLite's, same spelling) is available: the one place that picks."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def normalize_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2 (SQLAlchemy 2.1 reads bare ``postgresql://`` as
    psycopg 3, which is not installed) and check the URL parses."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(
            f"invalid store URL {url!r}: {exc}",
            "use e.g. postgresql://user@host:5432/readings or sqlite:///path/readings.db",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigurationError(
            f"unsupported store backend {parsed.get_backend_name()!r}",
            "the readings store runs on PostgreSQL or SQLite",
        )
    return parsed.render_as_string(hide_password=False)


def resolve_url(url: str | None = None) -> str:
    """The given URL, else ``SENSORGUARD_STORE_URL``, else SQLite in the SensorGuard home."""
    if url is None:
        from sensorguard.config import get_settings

        url = get_settings().resolved_store_url
    return normalize_url(url)


def get_engine(url: str | None = None) -> sa.Engine:
    """A pooled engine per URL (created once per process)."""
    key = resolve_url(url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            parsed = make_url(key)
            if parsed.get_backend_name() == "sqlite" and parsed.database:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(key, connect_args={"timeout": 30})
            else:
                engine = sa.create_engine(key, pool_pre_ping=True)
            _engines[key] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, and before dropping a database)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Run the store's Alembic migrations up to ``revision``; return the new revision."""
    from alembic import command

    key = resolve_url(url)
    engine = get_engine(key)
    cfg = _alembic_config(key)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except sa.exc.OperationalError as exc:
        raise StoreError(
            f"cannot reach the readings store at {_safe(key)}: {_first_line(exc)}",
            "check the URL and that the database server is running",
        ) from None
    with _lock:
        _migrated.add(key)
    return current_revision(key) or ""


def current_revision(url: str | None = None) -> str | None:
    """The applied migration revision, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    from sensorguard.store.schema import VERSION_TABLE

    with get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    return head or ""


def ensure_schema(url: str | None = None) -> sa.Engine:
    """The engine for ``url``, migrated to head once per process (cheap afterwards)."""
    key = resolve_url(url)
    if key not in _migrated:
        # one migration at a time per process: two threads migrating a fresh database at
        # once deadlocked (the second waits in PostgreSQL on the first's DDL, the first
        # on the second inside Alembic), seen with the predictor's first requests
        with _upgrade_lock:
            if key not in _migrated:
                upgrade(key)
    return get_engine(key)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
