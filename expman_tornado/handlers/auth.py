"""The standalone server's token: checked on every route, pages, files and streams included.

A token is accepted as ``?token=…``, as an ``Authorization: token …`` header, or
from the cookie set on the first request that carried it. Inside Jupyter
Server the context has no token and Jupyter's own authentication applies.
"""

from __future__ import annotations

import hmac

from tornado.web import RequestHandler

COOKIE_NAME = "expman-token"


class TokenAuthMixin:
    """Mixed into every handler of this package; :meth:`check_token` runs first in ``prepare``."""

    def expected_token(self: RequestHandler) -> str:  # type: ignore[misc]
        context = self.settings.get("expman")
        return getattr(context, "token", "") or ""

    def presented_token(self: RequestHandler) -> tuple[str, str]:  # type: ignore[misc]
        """Return the token the request carries and where: ``query``, ``header`` or ``cookie``."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "token" and value.strip():
            return value.strip(), "header"
        query = self.get_query_argument("token", "")
        if query:
            return query, "query"
        cookie = self.get_signed_cookie(COOKIE_NAME)
        if cookie:
            return cookie.decode("utf-8", "replace"), "cookie"
        return "", ""

    def token_is_valid(self) -> bool:
        """Return whether the request may go on (every request may when no token is configured)."""
        expected = self.expected_token()
        if not expected:
            return True
        presented, where = self.presented_token()
        if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
            return False
        if where == "query":
            self.set_signed_cookie(COOKIE_NAME, expected, httponly=True, samesite="Lax")  # type: ignore[attr-defined]
        return True

    def has_token_header(self) -> bool:
        """Return whether the request carries the token header, which exempts it from the XSRF check."""
        expected = self.expected_token()
        presented, where = self.presented_token()
        return bool(expected) and where == "header" and hmac.compare_digest(
            presented.encode(), expected.encode()
        )
