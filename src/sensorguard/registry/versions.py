"""Registered versions and aliases: what exists, and which version an alias points at.

The room's rules: this is the only place that asks MLflow about versions and aliases.
"The version at this alias, or none" has one answer, :func:`version_at`; a missing model,
version or alias is one of three error types (:class:`ModelNotFound`,
:class:`VersionNotFound`, :class:`AliasNotFound`) with one message each; search filters
are built and escaped in one place (:func:`search_versions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sensorguard.config import Settings, get_settings
from sensorguard.errors import RegistryError
from sensorguard.registry.setup import get_client, registry_errors

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.entities.model_registry import ModelVersion

# MLflow's answers for "no such model / alias" (a missing alias is INVALID_PARAMETER_VALUE
# on the SQL store and RESOURCE_DOES_NOT_EXIST on the REST store)
_MISSING_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class ModelNotFound(RegistryError):
    """No registered model of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no registered model named '{name}'",
            "train and register one with `sensorguard train DATA` or `sensorguard demo`",
        )
        self.name = name


class VersionNotFound(RegistryError):
    """The model exists but has no such version."""

    def __init__(self, name: str, version: int | str) -> None:
        super().__init__(
            f"model '{name}' has no version {version}",
            "see the versions with `sensorguard models list`",
        )
        self.name, self.version = name, version


class AliasNotFound(RegistryError):
    """The model exists but no version carries the alias."""

    def __init__(self, name: str, alias: str) -> None:
        super().__init__(
            f"model '{name}' has no version with alias '{alias}'",
            "promote a version with `sensorguard models promote VERSION` "
            "(see `sensorguard models list`)",
        )
        self.name, self.alias = name, alias


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in _MISSING_CODES


def _quote(value: str) -> str:
    """A string literal for an MLflow search filter."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def model_exists(name: str, settings: Settings | None = None) -> bool:
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"registered model '{name}'", settings):
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if _missing(exc):
                return False
            raise
    return True


def ensure_model(name: str, settings: Settings | None = None) -> None:
    """``ModelNotFound`` unless registered model ``name`` exists."""
    if not model_exists(name, settings):
        raise ModelNotFound(name)


def get_version(name: str, version: int | str, settings: Settings | None = None) -> ModelVersion:
    """The registry entry of one version; ``ModelNotFound``/``VersionNotFound`` if absent."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"version {version} of model '{name}'", settings):
        try:
            return client.get_model_version(name, str(version))
        except MlflowException as exc:
            if not _missing(exc):
                raise
    ensure_model(name, settings)
    raise VersionNotFound(name, version)


def version_at(name: str, alias: str, settings: Settings | None = None) -> int | None:
    """The version ``name@alias`` points at; ``None`` when the alias or the model does not
    exist yet. An unreachable registry is still an error."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"registered model '{name}'", settings):
        try:
            return int(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise


def resolve_alias(name: str, alias: str, settings: Settings | None = None) -> int:
    """Like :func:`version_at`, but a missing model or alias is an error."""
    version = version_at(name, alias, settings)
    if version is None:
        ensure_model(name, settings)
        raise AliasNotFound(name, alias)
    return version


def search_versions(
    name: str,
    settings: Settings | None = None,
    *,
    tags: dict[str, str] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[ModelVersion]:
    """Versions of ``name`` whose tags equal ``tags`` (values escaped here, once)."""
    settings = settings or get_settings()
    client = get_client(settings)
    parts = [f"name={_quote(name)}"]
    parts += [f"tags.`{k}`={_quote(v)}" for k, v in (tags or {}).items()]
    kwargs: dict[str, Any] = {}
    if limit is not None:
        kwargs["max_results"] = limit
    if newest_first:
        kwargs["order_by"] = ["version_number DESC"]
    with registry_errors(f"registered model '{name}'", settings):
        return list(client.search_model_versions(" and ".join(parts), **kwargs))


def list_model_names(settings: Settings | None = None) -> list[str]:
    """Every registered model name, sorted."""
    settings = settings or get_settings()
    client = get_client(settings)
    names: list[str] = []
    with registry_errors("the model registry", settings):
        token = None
        while True:
            page = client.search_registered_models(max_results=1000, page_token=token)
            names += [m.name for m in page]
            token = getattr(page, "token", None)
            if not token:
                break
    return sorted(names)


def count_versions(name: str, settings: Settings | None = None) -> int:
    """How many versions ``name`` has (0 when the model does not exist)."""
    return len(search_versions(name, settings))


def run_id_of(name: str, version: int, settings: Settings | None = None) -> str | None:
    """The training run that produced ``version``."""
    return get_version(name, version, settings).run_id or None


def version_tags(name: str, version: int, settings: Settings | None = None) -> dict[str, str]:
    return dict(get_version(name, version, settings).tags or {})


# ---------------------------------------------------------------- listing


@dataclass
class VersionInfo:
    version: int
    aliases: list[str]
    tags: dict[str, str]
    created: datetime
    run_id: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    description: str = ""

    @property
    def lifecycle(self) -> str:
        return self.tags.get("lifecycle", "")


def list_versions(
    settings: Settings | None = None, *, with_metrics: bool = True, limit: int = 200
) -> list[VersionInfo]:
    """The registered versions, newest first, with aliases, tags and run metrics."""
    settings = settings or get_settings()
    name = settings.model_name
    client = get_client(settings)
    ensure_model(name, settings)
    versions = search_versions(name, settings, limit=limit, newest_first=True)
    with registry_errors(f"registered model '{name}'", settings):
        # search results may lack aliases; the registered model has the authoritative map
        aliases = _alias_map(client.get_registered_model(name))
        out = [_version_info(client, mv, with_metrics, aliases) for mv in versions]
    return sorted(out, key=lambda v: -v.version)


def show_version(version: int, settings: Settings | None = None) -> VersionInfo:
    """One version with its aliases, tags, run params and metrics."""
    settings = settings or get_settings()
    name = settings.model_name
    mv = get_version(name, version, settings)
    client = get_client(settings)
    with registry_errors(f"version {version} of model '{name}'", settings):
        return _version_info(client, mv, True, _alias_map(client.get_registered_model(name)))


def _alias_map(model: Any) -> dict[int, list[str]]:
    raw = model.aliases or {}
    pairs = raw.items() if isinstance(raw, dict) else ((a.alias, a.version) for a in raw)
    out: dict[int, list[str]] = {}
    for alias, version in pairs:
        out.setdefault(int(version), []).append(str(alias))
    return out


def _version_info(
    client: Any, mv: Any, with_metrics: bool, aliases: dict[int, list[str]]
) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if with_metrics and mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            metrics, params = dict(run.data.metrics), dict(run.data.params)
        except MlflowException:  # run deleted: the version still exists
            pass
    return VersionInfo(
        version=int(mv.version),
        aliases=sorted(aliases.get(int(mv.version), [])),
        tags=dict(mv.tags or {}),
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
        run_id=mv.run_id,
        metrics=metrics,
        params=params,
        description=mv.description or "",
    )
