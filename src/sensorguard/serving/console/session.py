"""Console login and CSRF: the API token in an HttpOnly cookie, double-submit CSRF tokens.

- With ``SENSORGUARD_API_TOKEN`` set, ``/console/login`` checks the token (constant-time
  compare) and stores it in the ``sg_token`` cookie: HttpOnly (page scripts cannot read it),
  ``SameSite=Strict`` (another site's page cannot make the browser send it). The API's
  bearer check accepts that cookie too, but only together with a matching CSRF header, so
  the console's buttons call the very same ``/v1/...`` endpoints that scripts call.
- CSRF is a double-submit token: a random ``sg_csrf`` cookie that the page copies into a
  hidden form field or an ``X-CSRF-Token`` header. A forged cross-site request can make the
  browser send cookies but cannot read them, so it cannot supply the matching value.
- Without a token the console is open (as the API is), and CSRF is still checked on POST.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

TOKEN_COOKIE = "sg_token"
CSRF_COOKIE = "sg_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality that is False when either side is missing or empty."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def logged_in(cookies: Mapping[str, str], token: str | None) -> bool:
    """True when no token is configured, or the cookie holds the configured token."""
    return token is None or same(cookies.get(TOKEN_COOKIE), token)


def csrf_ok(cookies: Mapping[str, str], submitted: str | None) -> bool:
    return same(cookies.get(CSRF_COOKIE), submitted)


def cookie_auth_ok(
    cookies: Mapping[str, str], headers: Mapping[str, str], token: str | None
) -> bool:
    """The console's way to call the API: the token cookie plus a matching CSRF header."""
    return (
        token is not None
        and same(cookies.get(TOKEN_COOKIE), token)
        and csrf_ok(cookies, headers.get(CSRF_HEADER))
    )
