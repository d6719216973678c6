"""Test support for the lifecycle tests: a pre-migrated, empty MLflow SQLite store.

Creating an MLflow SQLite database runs all of MLflow's schema migrations (seconds on a
busy machine); each test copies one migrated template instead.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _template() -> Path:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="sg-mlflow-template-"))
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    # tests never use this URI (they use copies), so MLflow's per-URI store cache is harmless
    tracking = SqlAlchemyStore(uri, (folder / "artifacts").as_uri())
    registry = RegistryStore(uri)
    for store in (tracking, registry):
        store.engine.dispose()
    return db


def seed_store(home: Path) -> None:
    """Put an empty, migrated ``mlflow.db`` into SensorGuard home ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), home / "mlflow.db")
