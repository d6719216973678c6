"""Test support for the lifecycle tests: a pre-migrated, empty MLflow SQLite store.

Creating an MLflow SQLite database runs all of MLflow's schema migrations (several
seconds on a busy machine); each test copies one migrated template instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="sg-mlflow-template-"))
    db = folder / "mlflow.db"
    # a separate process so this process' MLflow store cache never sees the template
    code = (
        "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
        f"SqlAlchemyStore('sqlite:///{db}', '{folder.as_uri()}/artifacts')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return db


def seed_store(home: Path) -> None:
    """Put an empty, migrated ``mlflow.db`` into SensorGuard home ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), home / "mlflow.db")
