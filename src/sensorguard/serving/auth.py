"""Bearer tokens, compared in constant time."""

from __future__ import annotations

import hmac

from sensorguard.serving.errors import RequestError

_HINT = "send the header 'Authorization: Bearer <SENSORGUARD_API_TOKEN>'"


def check_bearer(header: str | None, token: str) -> None:
    """Raise 401 without credentials, 403 with wrong ones."""
    if not header:
        raise RequestError(401, "unauthorized", "this endpoint needs a bearer token", _HINT)
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise RequestError(401, "unauthorized", "expected a bearer token", _HINT)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError(403, "forbidden", "the bearer token is not valid", _HINT)


def check_admin(header: str | None, token: str | None) -> None:
    """Admin endpoints exist only when a token is configured (404 otherwise)."""
    if not token:
        raise RequestError(
            404,
            "admin_disabled",
            "admin endpoints are disabled because no API token is configured",
            "set SENSORGUARD_API_TOKEN and restart the predictor to enable them",
        )
    check_bearer(header, token)
