"""The MLflow registry, behind one door: nothing outside this package imports ``mlflow``.

* :mod:`.setup` — where MLflow points, errors mapped to one-line ``RegistryError``\\ s;
* :mod:`.versions` — versions and aliases (:func:`version_at`, :func:`list_versions`);
* :mod:`.tags` — the lifecycle tag vocabulary and its verbs (``archive``, ``mark_gate``…);
* :mod:`.audit` — the append-only audit trail;
* :mod:`.runs` — the training and drift runs and their artifacts;
* :mod:`.models` — logging a detector, and :func:`load_model` for a folder or a URI;
* :mod:`.signing` — the artifact signature checked before anything is loaded.

Importing this package does not import MLflow (that happens inside the functions).
"""

from sensorguard.registry.audit import AuditEvent, history, record_event
from sensorguard.registry.models import (
    LoadedModel,
    check_flavour,
    load_by_alias,
    load_model,
    load_version,
    log_detector_model,
    model_signature,
    parse_model_uri,
    pip_requirements,
    register_model_version,
    sign_version,
)
from sensorguard.registry.setup import (
    configure_mlflow,
    ensure_experiment,
    get_client,
    registry_errors,
)
from sensorguard.registry.signing import UntrustedModel
from sensorguard.registry.versions import (
    AliasNotFound,
    ModelNotFound,
    VersionInfo,
    VersionNotFound,
    list_versions,
    resolve_alias,
    search_versions,
    show_version,
    version_at,
)

__all__ = [
    "AliasNotFound",
    "AuditEvent",
    "LoadedModel",
    "ModelNotFound",
    "UntrustedModel",
    "VersionInfo",
    "VersionNotFound",
    "check_flavour",
    "configure_mlflow",
    "ensure_experiment",
    "get_client",
    "history",
    "list_versions",
    "load_by_alias",
    "load_model",
    "load_version",
    "log_detector_model",
    "model_signature",
    "parse_model_uri",
    "pip_requirements",
    "record_event",
    "register_model_version",
    "registry_errors",
    "resolve_alias",
    "search_versions",
    "show_version",
    "sign_version",
    "version_at",
]
