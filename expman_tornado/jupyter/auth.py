"""Jupyter Server's authentication and authorization around this package's handlers."""

from __future__ import annotations

import inspect

from jupyter_server.base.handlers import JupyterHandler
from tornado.web import HTTPError, RequestHandler

from ..errors import ApiError
from ..handlers.base import ApiHandler

#: The resource name that Jupyter authorizers see for every route of this package.
AUTH_RESOURCE = "expman"


class JupyterAuthMixin:
    """Checks the Jupyter user on every request, API, live streams and files alike.

    Jupyter's own ``prepare`` identifies the user (token, cookie or header) and
    checks XSRF on writes; then the authorizer decides ``read`` (GET, HEAD) or
    ``write`` (anything else) on the ``expman`` resource. The wrapped handler's
    own ``prepare`` runs after that.
    """

    async def prepare(self) -> None:  # type: ignore[override]
        result = JupyterHandler.prepare(self, _redirect_to_login=False)  # type: ignore[arg-type]
        if inspect.isawaitable(result):
            await result
        user = self.current_user  # type: ignore[attr-defined]
        if user is None:
            if self.request.method in ("GET", "HEAD") and not isinstance(self, ApiHandler):  # type: ignore[attr-defined]
                self.redirect(self.get_login_url() + "?next=" + self.request.uri)  # type: ignore[attr-defined]
                return
            raise ApiError(403, "authentication required: log in to Jupyter or send its token")
        action = "read" if self.request.method in ("GET", "HEAD", "OPTIONS") else "write"  # type: ignore[attr-defined]
        allowed = self.authorizer.is_authorized(self, user, action, AUTH_RESOURCE)  # type: ignore[attr-defined]
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise ApiError(403, "user %r may not %s expman" % (getattr(user, "username", user), action))
        await self._own_prepare()

    async def _own_prepare(self) -> None:
        for klass in type(self).__mro__[2:]:
            if klass is JupyterHandler or klass is RequestHandler:
                return
            own = klass.__dict__.get("prepare")
            if own is not None:
                result = own(self)
                if inspect.isawaitable(result):
                    await result
                return


def with_jupyter_auth(handler: type) -> type:
    """Return a subclass of ``handler`` that runs inside Jupyter Server's auth."""
    if not issubclass(handler, RequestHandler):
        raise TypeError("%r is not a tornado RequestHandler" % handler)
    if issubclass(handler, JupyterHandler):
        return handler
    return type("Jupyter" + handler.__name__, (JupyterAuthMixin, handler, JupyterHandler), {})


__all__ = ["HTTPError", "JupyterAuthMixin", "with_jupyter_auth"]
