"""The one error type of the API and how store errors map to HTTP statuses."""

from __future__ import annotations

from tornado.web import HTTPError


class ApiError(HTTPError):
    """An HTTP error whose message is shown to the client in the JSON error body.

    ``message`` is for the client; ``log_message`` (optional) is for the server's
    log only, as with :class:`tornado.web.HTTPError`.
    """

    def __init__(self, status: int, message: str, log_message: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status, log_message or message.replace("%", "%%"))
        self.message = message
        self.headers = headers or {}
