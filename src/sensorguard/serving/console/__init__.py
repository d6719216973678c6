"""The operator console at ``/console``: fleet overview, alarm triage, models.

Server-rendered (Jinja2) by the predictor process, with its CSS, JS and charts shipped
in the package so it works with no internet. See docs/console.md.
"""

from __future__ import annotations

from sensorguard.serving.console.routes import STATIC, router, static_app

__all__ = ["STATIC", "router", "static_app"]
