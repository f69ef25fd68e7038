"""The base class of every API handler: JSON replies, JSON errors, store access."""

from __future__ import annotations

import asyncio
import http.client
import inspect
import logging
import re
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import orjson
from polars.exceptions import PanicException
from tornado.web import HTTPError, RequestHandler

from ..encoding import BodyCache
from ..errors import ApiError
from .auth import TokenAuthMixin
from ..store import InvalidName, NotFound, OutsideStore, Store, StoreClosed, UnreadableFile
from ..store.edits import EditConflict, InvalidEdit, UneditableFile
from ..store.filesystem import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_INTEGER = re.compile(r"^[+-]?[0-9]+$")

#: Query integers are steps and counts, so they must fit in int64.
_INT64 = (-(1 << 63), (1 << 63) - 1)

#: Largest request body the API accepts, in bytes.
MAX_BODY_BYTES = 64 * 1024

#: Seconds a client should wait before requesting again a file that is still being written.
RETRY_AFTER_SECONDS = 1


@dataclass
class ServerContext:
    """What handlers share, stored in the Tornado settings under ``"expman"``."""

    store: Store
    base_url: str = "/"
    mode: str = "standalone"
    version: str = ""
    read_only: bool = False
    token: str = ""
    executor: Any = None
    body_cache: BodyCache = field(default_factory=BodyCache)
    extra: dict = field(default_factory=dict)


class ApiHandler(TokenAuthMixin, RequestHandler):
    """A handler under ``/api``: replies and errors are JSON, never a traceback."""

    @property
    def context(self) -> ServerContext:
        return self.settings["expman"]

    @property
    def store(self) -> Store:
        return self.context.store

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    async def head(self, *args: str, **kwargs: str) -> None:
        """Serve HEAD like GET: Tornado sends the headers (Content-Length included) without the body.

        Monitors and ``curl -I`` expect that of every GET route. A handler
        without ``get`` rejects HEAD with 405, as it rejects GET.
        """
        get = getattr(self, "get", None)
        if get is None or getattr(get, "__func__", None) is RequestHandler.get:
            raise ApiError(405, "HEAD is not allowed on %s" % self.request.path)
        result = get(*args, **kwargs)
        if inspect.isawaitable(result):  # Some handlers' get is a plain method.
            await result

    def prepare(self) -> None:
        if not self.token_is_valid():
            raise ApiError(403, "missing or invalid token: add ?token=… or an "
                                "'Authorization: token …' header")
        if len(self.request.body or b"") > MAX_BODY_BYTES:
            raise ApiError(413, "request body is %d bytes; the limit is %d"
                           % (len(self.request.body), MAX_BODY_BYTES))

    def check_xsrf_cookie(self) -> None:
        """Check XSRF on writes, unless the request carries the token header.

        A method the handler does not implement skips the check, so it gets its 405.
        """
        method = self.request.method.lower() if self.request.method else ""
        if getattr(type(self), method, None) is getattr(RequestHandler, method, None):
            return
        if self.has_token_header() or not self.token_is_valid():
            return  # Without a valid token, prepare() rejects the request with the token error.
        super().check_xsrf_cookie()

    def require_writable(self) -> None:
        if self.context.read_only:
            raise ApiError(403, "this server is read-only (started with --read-only)")

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        """Log unexpected errors with their traceback; an ApiError is in the access log already."""
        if isinstance(value, HTTPError):
            log.debug("%d %s %s: %s", value.status_code, self.request.method, self.request.uri,
                      value.log_message)
            return
        super().log_exception(typ, value, tb)

    def compute_etag(self) -> str | None:
        return None  # Hashing every reply costs more than it saves for large metric bodies.

    def write_json(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))

    def allowed_methods(self) -> list[str]:
        """Return the methods this handler serves, for the ``Allow`` header of a 405."""
        methods = [method for method in self.SUPPORTED_METHODS
                   if getattr(type(self), method.lower(), None) is not getattr(RequestHandler, method.lower(), None)]
        if "GET" not in methods:
            methods = [method for method in methods if method != "HEAD"]
        return methods

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Send the JSON error body ``{"error": {"status", "message"}}``."""
        message = http.client.responses.get(status_code, "Unknown error")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            message = exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, HTTPError) and "xsrf" in (exc.log_message or "").lower():
            message = ("XSRF check failed: send the _xsrf cookie back in an X-XSRFToken header, "
                       "or authenticate with an 'Authorization: token …' header")
        elif isinstance(exc, HTTPError) and exc.status_code == 405:
            message = "method %s is not allowed on %s" % (self.request.method, self.request.path)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        elif isinstance(exc, HTTPError) and exc.status_code == 400 and exc.log_message:
            # Tornado's own checks, such as a URL that is not valid UTF-8.
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        body = {"error": {"status": status_code, "message": message}}
        self.finish(orjson.dumps(body))

    async def call_store(self, function: Callable[..., T], *args: Any) -> T:
        """Run a store call off the IOLoop and turn store errors into API errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.context.executor, function, *args)
        except InvalidName as exc:
            raise ApiError(400, str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except OutsideStore as exc:
            raise ApiError(403, str(exc)) from None
        except UnreadableFile as exc:
            raise await self._unreadable_error(exc, args) from None
        except StoreClosed as exc:
            raise ApiError(503, "%s; retry once it has started again" % exc,
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None
        except UneditableFile as exc:
            raise ApiError(422, str(exc)) from None
        except EditConflict as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except StoreUnavailable as exc:
            log.warning("%s (%s %s)", exc, self.request.method, self.request.path)
            raise ApiError(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except PermissionError as exc:
            raise ApiError(403, "permission denied on %s" % _file_name(exc)) from None
        except PanicException as exc:
            # polars raises this (not an Exception) on values it cannot handle; left
            # alone, it would end the request without any reply.
            log.error("polars failed on %s: %s", self.request.path, exc)
            raise ApiError(422, "the rows of this file cannot be read or encoded: %s" % exc) from None
        except OSError as exc:
            log.error("Reading or writing the store failed: %s", exc)
            raise ApiError(500, "access to %s failed: %s" % (_file_name(exc), exc.strerror or exc)) from None

    async def _unreadable_error(self, exc: UnreadableFile, args: tuple) -> ApiError:
        """Return 503 for a file of a RUNNING run (it may be mid-write), else 422."""
        status = None
        if len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
            try:
                status = await asyncio.get_running_loop().run_in_executor(
                    self.context.executor, self.store.run_status, args[0], args[1]
                )
            except (NotFound, InvalidName):
                status = None
        name = exc.path.rsplit("/", 1)[-1]
        if status == "RUNNING":
            return ApiError(
                503,
                "%s is being written and has not been read whole yet; retry shortly" % name,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return ApiError(422, "%s cannot be parsed: %s" % (name, exc.reason))

    def int_argument(self, name: str, default: int | None = None, minimum: int | None = None) -> int | None:
        """Return an integer query argument; a malformed value is a 400 naming it."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if not _INTEGER.match(raw) or len(raw) > 20:
            raise ApiError(400, "query parameter %r must be an integer, got %r" % (name, raw))
        value = int(raw)
        if not _INT64[0] <= value <= _INT64[1]:
            raise ApiError(400, "query parameter %r must fit in a 64-bit integer, got %s" % (name, raw))
        if minimum is not None and value < minimum:
            raise ApiError(400, "query parameter %r must be at least %d, got %d" % (name, minimum, value))
        return value

    def json_body(self) -> Any:
        """Return the parsed JSON request body; invalid JSON is a 400."""
        try:
            return orjson.loads(self.request.body or b"null")
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "request body is not valid JSON: %s" % exc) from None

    def list_argument(self, name: str) -> list[str] | None:
        """Return a comma-separated query argument as a list, or None when absent."""
        raw = self.get_query_argument(name, None)
        if raw is None:
            return None
        return [item for item in raw.split(",") if item]


def _file_name(exc: OSError) -> str:
    return repr(exc.filename.rsplit("/", 1)[-1]) if isinstance(exc.filename, str) else "the file"


def content_disposition(filename: str) -> str:
    """Return an ``attachment`` header that keeps non-ASCII names (RFC 6266, RFC 5987)."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    return "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (fallback, quote(filename, safe=""))


class ApiNotFoundHandler(ApiHandler):
    """Every ``/api`` path that no other route matched: a JSON 404."""

    def prepare(self) -> None:
        super().prepare()  # Without the token, even an unknown route is a 403.
        raise ApiError(404, "no API route matches %s" % self.request.path)
