"""PostgreSQL helpers for the store and stack tests: a throw-away database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_URL = os.environ.get(
    "SENSORGUARD_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def _admin_engine():  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from sensorguard.store import normalize_url

    return sa.create_engine(
        normalize_url(PG_URL), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


def pg_available() -> bool:
    import sqlalchemy as sa

    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def db_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    from sensorguard.store import normalize_url

    return make_url(normalize_url(PG_URL)).set(database=name).render_as_string(False)


def drop_database(name: str) -> None:
    import sqlalchemy as sa

    from sensorguard.store import dispose_engines

    dispose_engines()
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextmanager
def temp_database(prefix: str, create: bool = True) -> Iterator[tuple[str, str]]:
    """``(name, url)`` of a new uniquely named database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"sgtest_{prefix}_{uuid.uuid4().hex[:10]}"
    if create:
        engine = _admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
    try:
        yield name, db_url(name)
    finally:
        drop_database(name)
