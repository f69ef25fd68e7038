"""Jupyter Server's authentication and authorization around this package's handlers."""

from __future__ import annotations

import inspect

from jupyter_server.base.handlers import JupyterHandler
from tornado.httputil import url_concat
from tornado.web import HTTPError, RequestHandler, authenticated

from ..errors import ApiError
from ..handlers.base import ApiHandler

#: The resource name that Jupyter authorizers see for every route of this package.
AUTH_RESOURCE = "expman"

#: Key in the context's ``extra`` of an ``asyncio.Event`` set once the extension has started.
STARTED_KEY = "started"

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class JupyterAuthMixin:
    """Jupyter Server's user check on every request: API, live streams and files alike.

    Jupyter's own ``prepare`` identifies the user (token, cookie or header) and
    checks XSRF on writes. Then the authorizer decides ``read`` (GET, HEAD,
    OPTIONS) or ``write`` (anything else) on the ``expman`` resource. The
    wrapped handler's own ``prepare`` runs after that. A request without a
    user gets a JSON 403 on the API and a redirect to Jupyter's login page
    for the dashboard's GET and HEAD.
    """

    async def prepare(self) -> None:  # type: ignore[override]
        handler: JupyterHandler = self  # type: ignore[assignment]
        started = handler.settings["expman"].extra.get(STARTED_KEY)
        if started is not None and not started.is_set():
            await started.wait()

        is_api = isinstance(self, ApiHandler)
        try:
            # For a page, Jupyter redirects to its login itself when it requires
            # authentication everywhere (allow_unauthenticated_access=False).
            result = JupyterHandler.prepare(handler, _redirect_to_login=not is_api)
            if inspect.isawaitable(result):
                await result
        except HTTPError as exc:
            if is_api and not isinstance(exc, ApiError):
                raise ApiError(exc.status_code, _rejection_message(exc)) from None
            raise
        if handler._finished:
            return

        user = handler.current_user
        if user is None:
            if handler.request.method in ("GET", "HEAD") and not is_api:
                handler.redirect(url_concat(handler.get_login_url(), {"next": handler.request.uri}))
                return
            raise ApiError(403, _rejection_message(None))
        action = "read" if handler.request.method in _SAFE_METHODS else "write"
        allowed = handler.authorizer.is_authorized(handler, user, action, AUTH_RESOURCE)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        if not allowed:
            raise ApiError(403, "user %r is not allowed to %s expman"
                           % (getattr(user, "username", user), action))
        await self._own_prepare()

    async def _own_prepare(self) -> None:
        """Run the ``prepare`` of the wrapped handler, the first one found below this mixin."""
        classes = type(self).__mro__
        for klass in classes[classes.index(JupyterAuthMixin) + 1:]:
            if klass is JupyterHandler or klass is RequestHandler:
                return
            own = klass.__dict__.get("prepare")
            if own is not None:
                result = own(self)
                if inspect.isawaitable(result):
                    await result
                return


def _rejection_message(exc: HTTPError | None) -> str:
    """Return the client's message for a request that Jupyter's auth rejected."""
    if exc is not None and exc.log_message:
        return exc.log_message % exc.args if exc.args else exc.log_message
    return ("authentication required: log in to Jupyter, or send its token "
            "('Authorization: token …' header or '?token=…')")


def with_jupyter_auth(handler: type) -> type:
    """Return a subclass of ``handler`` that runs inside Jupyter Server's auth.

    Each HTTP method the handler implements is also wrapped in
    ``tornado.web.authenticated``. The mixin's ``prepare`` has rejected a
    request without a user before any method runs, but Jupyter Server looks
    for the decorator and, with ``allow_unauthenticated_access=False``, warns
    at start about every method that lacks it.
    """
    if not issubclass(handler, RequestHandler):
        raise TypeError("%r is not a tornado RequestHandler" % handler)
    if issubclass(handler, JupyterHandler):
        return handler
    methods = {}
    for name in (method.lower() for method in handler.SUPPORTED_METHODS):
        method = getattr(handler, name)
        if method is not getattr(RequestHandler, name):
            methods[name] = authenticated(method)
    return type("Jupyter" + handler.__name__, (JupyterAuthMixin, handler, JupyterHandler), methods)


__all__ = ["AUTH_RESOURCE", "JupyterAuthMixin", "with_jupyter_auth"]
