"""MLflow registry access: configuration, the pickle-free pyfunc, loading by alias.

Importing this package does not import MLflow (that happens inside the functions).
"""

from sensorguard.registry.models import (
    LoadedModel,
    load_by_alias,
    load_model_uri,
    load_version,
    log_detector_model,
    model_signature,
    parse_model_uri,
    pip_requirements,
    register_model_version,
    resolve_alias,
)
from sensorguard.registry.setup import (
    configure_mlflow,
    ensure_experiment,
    get_client,
    registry_errors,
)

__all__ = [
    "LoadedModel",
    "configure_mlflow",
    "ensure_experiment",
    "get_client",
    "load_by_alias",
    "load_model_uri",
    "load_version",
    "log_detector_model",
    "model_signature",
    "parse_model_uri",
    "pip_requirements",
    "register_model_version",
    "registry_errors",
    "resolve_alias",
]
