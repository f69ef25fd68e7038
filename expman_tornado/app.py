"""The standalone server: one traitlets application, ``expman-tornado``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import ipaddress
import logging
import os
import secrets
import signal
import sys
import threading
import time
import webbrowser
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.netutil
import tornado.web
from jupyter_core.application import JupyterApp, base_aliases, base_flags
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from traitlets import Bool, Dict, Enum, Float, Integer, List, Unicode, default, validate

from . import __version__
from .handlers.base import ServerContext
from .handlers.urls import url_path_join
from .jupyter.servers import ChildJupyterServer
from .live import LiveHub
from .registry import BUILTIN_GROUPS, HandlerRegistry, RegistryError, default_registry
from .store import Store, StoreClosed
from .store.filesystem import StoreUnavailable, check_root
from .store.summary_index import default_cache_dir

log = logging.getLogger(__name__)

#: Largest request body Tornado reads into memory. API handlers answer 413 for
#: bodies over their own, smaller limit; past this one Tornado closes the
#: connection with a bare 400.
MAX_BUFFERED_BODY = 1 << 20

aliases = {
    **base_aliases,
    "ip": "ExpmanTornado.ip",
    "port": "ExpmanTornado.port",
    "base-url": "ExpmanTornado.base_url",
    "store": "ExpmanTornado.store",
    "stale-after": "ExpmanTornado.stale_after",
    "disable": "ExpmanTornado.disabled_handler_groups",
    "watcher": "ExpmanTornado.watcher",
    "poll-interval": "ExpmanTornado.poll_interval",
    "cache-dir": "ExpmanTornado.cache_dir",
    "extra-handlers": "ExpmanTornado.extra_handlers",
    "token": "ExpmanTornado.token",
}

flags = {
    **base_flags,
    "demo": (
        {"ExpmanTornado": {"demo": True}},
        "Write a demo store with a run that keeps training, and serve it. "
        "The store goes to the positional folder if one is given, else to a temporary folder.",
    ),
    "open": ({"ExpmanTornado": {"open_browser": True}}, "Open the dashboard in a web browser."),
    "read-only": (
        {"ExpmanTornado": {"read_only": True}},
        "Refuse every write: edits of names, descriptions and tags, and notebooks.",
    ),
    "allow-unauthenticated": (
        {"ExpmanTornado": {"allow_unauthenticated": True}},
        "Serve without a token even on an address other than 127.0.0.1.",
    ),
}


class ExpmanTornado(JupyterApp):
    """Serve an expman store as a REST API and a dashboard."""

    name = "expman-tornado"
    version = __version__
    description = """Serve a folder of experiments written by the expman logger.

    expman-tornado STORE     serve STORE (default: ./experiments, if it exists)
    expman-tornado --demo    serve a demo store with a run that keeps training
    """
    examples = """
    expman-tornado ./experiments
    expman-tornado ./experiments --port=8080 --base-url=/expman/
    expman-tornado --demo
    """
    aliases = aliases
    flags = flags

    store = Unicode(
        "",
        help="Root folder of the experiment store. A URL such as s3://bucket/prefix serves a "
        "store on object storage (see storage_options). The positional argument sets it too; "
        "without either, ./experiments is served if it exists.",
    ).tag(config=True)

    ip = Unicode("127.0.0.1", help="Address the server listens on.").tag(config=True)

    port = Integer(8000, help="Port the server listens on (0 picks a free port).").tag(config=True)

    base_url = Unicode("/", help="URL prefix under which every route is served, e.g. /expman/.").tag(
        config=True
    )

    token = Unicode(
        "",
        help="Token that every request must carry (?token=, an 'Authorization: token' header, "
        "or the cookie set on the first visit). Empty: none on 127.0.0.1; on any other "
        "address a random one is generated and printed, unless allow_unauthenticated is set.",
    ).tag(config=True)

    allow_unauthenticated = Bool(
        False, help="Serve without a token on an address other than 127.0.0.1 (anyone who can "
        "reach the address can read the store)."
    ).tag(config=True)

    read_only = Bool(
        False, help="Refuse every write with 403: edits of names, descriptions and tags, and notebooks."
    ).tag(config=True)

    stale_after = Float(
        300.0,
        help="Seconds without a sign of life (heartbeat or file change) after which a "
        "RUNNING run is reported as stale.",
    ).tag(config=True)

    disabled_handler_groups = List(
        Unicode(),
        help="Handler groups to switch off, by name: %s, or the name of an extra group."
        % ", ".join(BUILTIN_GROUPS),
    ).tag(config=True)

    extra_handlers = List(
        Unicode(),
        help="Extra handler groups, each an import string ('package.module:routes') naming "
        "a list of (pattern, handler_class[, kwargs]) routes or a callable returning one. "
        "Groups published under the 'expman_tornado.handlers' entry point group are added too.",
    ).tag(config=True)

    frontend_dir = Unicode(
        "", help="Folder of the built dashboard; empty means the one shipped in the package."
    ).tag(config=True)

    demo = Bool(
        False, help="Write a demo store with a run that keeps training, and serve it."
    ).tag(config=True)

    open_browser = Bool(False, help="Open the dashboard in a web browser once the server listens.").tag(
        config=True
    )

    watcher = Enum(
        ["auto", "inotify", "poll"],
        "auto",
        help="How live updates learn of changes: 'inotify' (kernel events, Linux), 'poll' "
        "(stat passes every poll_interval seconds, for network filesystems), or 'auto' "
        "(inotify, else poll).",
    ).tag(config=True)

    poll_interval = Float(
        1.0, help="Seconds between two stat passes of the polling watcher, and between two "
        "listings of the listing watcher (a store on object storage)."
    ).tag(config=True)

    heartbeat_interval = Float(
        15.0, help="Seconds of silence after which a live stream sends a comment line, so "
        "proxies keep it open."
    ).tag(config=True)

    jupyter_startup_timeout = Float(
        30.0, help="Seconds to wait for the Jupyter server started for notebooks to respond."
    ).tag(config=True)

    table_cache_mb = Integer(
        1024, help="Megabytes of metric tables kept in memory; the least recently used runs "
        "beyond it are read from their files again when asked for."
    ).tag(config=True)

    worker_threads = Integer(
        4, help="Threads that read files off the IOLoop, so one large read never stalls other requests."
    ).tag(config=True)

    storage_options = Dict(
        help="Options of the fsspec filesystem of a store on object storage, e.g. "
        "{'endpoint_url': 'http://127.0.0.1:9000', 'key': '...', 'secret': '...'} for s3://. "
        "Without them, s3fs reads the AWS environment variables (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_ENDPOINT_URL, ...)."
    ).tag(config=True)

    cache_dir = Unicode(
        help="Folder of the summary index: the runs listing's summaries of closed runs, kept "
        "between starts (one file per store, never inside the store). Default: "
        "$XDG_CACHE_HOME/expman-tornado, else ~/.cache/expman-tornado; empty: no index."
    ).tag(config=True)

    read_summaries_at_start = Bool(
        True, help="Read the summary of every run in a background thread as the server starts, so that "
        "the first runs listing of an experiment is answered from memory, much as TensorBoard reads its "
        "log folder at start. After the first start, the summary index (cache_dir) holds most of them."
    ).tag(config=True)

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        return default_cache_dir()

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    @validate("base_url")
    def _validate_base_url(self, proposal: Any) -> str:
        value = proposal["value"]
        return url_path_join("/", value, "/")

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if self.generate_config or self.subapp:
            return
        _configure_logging(self.log_level)
        positional = self.extra_args[0] if self.extra_args else ""
        if len(self.extra_args) > 1:
            self.log.error("Only one store folder can be given, got: %s", " ".join(self.extra_args))
            self.exit(2)
        if positional:
            self.store = positional
        self._check_handler_groups()
        self._choose_token()

        if self.demo:
            from .demo import start_demo

            self.store = start_demo(self.store or None)
        elif not self.store:
            if not os.path.isdir("experiments"):
                self.log.error(
                    "No store given and ./experiments does not exist. Start with "
                    "'expman-tornado PATH/TO/STORE', or try 'expman-tornado --demo'."
                )
                self.exit(2)
            self.store = "experiments"
        try:
            check_root(self.store, self.storage_options)
        except StoreUnavailable as exc:
            self.log.error("%s", exc)
            self.exit(2)

    @property
    def config_file_paths(self) -> list[str]:
        """Return the folders searched for config files, highest priority first.

        The current folder comes first, then Jupyter's config folders
        (``jupyter --paths``), so ``./expman_tornado_config.py`` wins.
        """
        return [os.getcwd(), *super().config_file_paths]

    def _check_handler_groups(self) -> None:
        """Exit with the registry's message when a handler group cannot be loaded."""
        try:
            self.make_registry().check(self.disabled_handler_groups)
        except RegistryError as exc:
            self.log.error("Cannot start: %s", exc)
            self.exit(2)

    def _choose_token(self) -> None:
        """Generate a token when the server listens beyond this machine and none was given."""
        if self.token or self.allow_unauthenticated or _is_loopback(self.ip):
            if self.allow_unauthenticated and not _is_loopback(self.ip) and not self.token:
                self.log.warning("Serving %s without a token: anyone who reaches it can read the store",
                                 self.ip or "every address")
            return
        self.token = secrets.token_hex(24)
        self.log.info("Listening on %s, so a token is required; one was generated", self.ip or "every address")

    def make_context(self, mode: str = "standalone", base_url: str | None = None,
                     store: str | None = None) -> ServerContext:
        """Return what the handlers share: the store, the settings, the thread pool.

        The Jupyter server extension calls it too, with its own mode, base URL
        and default store.
        """
        executor = ThreadPoolExecutor(self.worker_threads, thread_name_prefix="expman-read")
        return ServerContext(
            store=Store(store or self.store, stale_after=self.stale_after,
                        cache_bytes=self.table_cache_mb << 20, cache_dir=self.cache_dir, executor=executor,
                        storage_options=self.storage_options),
            base_url=base_url or self.base_url,
            mode=mode,
            read_only=self.read_only,
            token=self.token if mode == "standalone" else "",
            version=__version__,
            executor=executor,
            extra={
                "frontend_dir": self.frontend_dir,
                "jupyter_routes": "jupyter" not in self.disabled_handler_groups,
            },
        )

    def make_notebook_server(self, context: ServerContext) -> ChildJupyterServer:
        """Create the on-demand Jupyter child that opens spawned notebooks (standalone mode)."""
        notebooks = ChildJupyterServer(context.store.root, self.jupyter_startup_timeout)
        context.extra["notebooks"] = notebooks
        return notebooks

    def make_hub(self, context: ServerContext) -> LiveHub:
        """Create the live hub of a context (started later, on the IOLoop that serves it)."""
        hub = LiveHub(context.store, self.watcher, self.poll_interval, context.executor, context.base_url,
                      heartbeat_interval=self.heartbeat_interval)
        context.extra["hub"] = hub
        return hub

    def read_summaries_soon(self, context: ServerContext) -> None:
        """Start reading every run's summary in a background thread, if ``read_summaries_at_start`` is on.

        A daemon thread rather than the read pool: a server stopped while it runs
        exits at once, and the summaries read so far are simply lost.
        """
        if self.read_summaries_at_start:
            threading.Thread(target=_read_summaries, args=(context.store,), name="expman-summaries",
                             daemon=True).start()

    def make_registry(self) -> HandlerRegistry:
        return default_registry(self.extra_handlers)

    def make_web_app(self, context: ServerContext | None = None) -> tornado.web.Application:
        """Build the Tornado application, with every enabled handler group."""
        context = context or self.make_context()
        if "notebooks" not in context.extra:
            self.make_notebook_server(context)
        routes = self.make_registry().routes(self.base_url, self.disabled_handler_groups)
        if self.base_url != "/":
            routes.append((self.base_url.rstrip("/"), tornado.web.RedirectHandler, {"url": self.base_url}))
        return tornado.web.Application(
            routes,
            expman=context,
            xsrf_cookies=True,
            cookie_secret=_cookie_secret(self.token),
            log_function=_log_request,
        )

    def start(self) -> None:
        super().start()
        context = self.make_context()
        web_app = self.make_web_app(context)
        loop = IOLoop.current()
        hub = None
        if "live" not in self.disabled_handler_groups:
            hub = self.make_hub(context)
            loop.run_sync(hub.start)
            experiments, runs = hub.counts()
        else:
            log.info("Live updates are off: the 'live' handler group is disabled")
            experiments, runs = context.store.counts()
        # Bound only now: a client that connects is served at once, not queued behind the start.
        server = HTTPServer(web_app, max_body_size=MAX_BUFFERED_BODY, xheaders=False)
        try:
            sockets = tornado.netutil.bind_sockets(self.port, self.ip)
        except OSError as exc:
            log.critical("Cannot listen on %s port %d (%s); choose another with --port, or --port=0 for any free one",
                         self.ip, self.port, exc.strerror or exc)
            if hub is not None:
                hub.stop()
            context.executor.shutdown(wait=False, cancel_futures=True)
            self.exit(1)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        url = "http://%s:%d%s" % (_host_for_url(self.ip), port, self.base_url)
        if self.token:
            url += "?token=" + self.token
        log.info("Serving store %s (%s, %s)", context.store.root,
                 _count(experiments, "experiment"), _count(runs, "run"))
        log.info("Dashboard and API at %s", url)
        self.read_summaries_soon(context)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.asyncio_loop.add_signal_handler(signum, loop.stop)
        if self.open_browser:
            webbrowser.open(url)
        # Everything made while starting (modules, the application) lives as long as the
        # process: keep it out of the garbage collector's full passes, which otherwise
        # walk all of it every few seconds and hold up every stream for a fraction of a second.
        gc.freeze()
        try:
            loop.start()
        finally:
            log.info("Stopping the server")
            server.stop()
            if hub is not None:
                hub.stop()
                # One more loop turn ends the tasks stop() cancelled, rather than leaving
                # them pending. A second stop signal may cut that turn short, which is fine.
                with contextlib.suppress(RuntimeError):
                    loop.run_sync(lambda: asyncio.sleep(0))
            context.extra["notebooks"].terminate_now()
            context.store.close()
            context.executor.shutdown(wait=False, cancel_futures=True)


def _read_summaries(store: Store) -> None:
    started = time.monotonic()
    try:
        runs = store.read_summaries()
    except StoreClosed:
        return
    except Exception:  # Whatever it is, each listing reads its runs when asked.
        log.warning("Reading the run summaries at start failed; runs listings read them when asked",
                    exc_info=True)
        return
    log.info("Summaries of %s ready after %.1f s", _count(runs, "run"), time.monotonic() - started)


def _cookie_secret(token: str) -> bytes:
    """Return the key that signs the token cookie.

    With a token, the key is derived from it, so every process started with the
    same token (several behind a load balancer, or one after a restart) accepts
    the cookie another one set. Knowing the key lets one forge a cookie that
    carries the token, which gives nothing the token does not. Without a token
    no cookie is set, and a random key is used.
    """
    if not token:
        return os.urandom(32)
    return hashlib.sha256(b"expman-tornado token cookie\0" + token.encode("utf-8")).digest()


def _is_loopback(ip: str) -> bool:
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _count(number: int, noun: str) -> str:
    return "%d %s%s" % (number, noun, "" if number == 1 else "s")


def _host_for_url(ip: str) -> str:
    if ip in ("", "0.0.0.0", "::"):
        return "localhost"
    return "[%s]" % ip if ":" in ip else ip


def _configure_logging(level: int | str) -> None:
    root = logging.getLogger("expman_tornado")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("tornado.access").setLevel(level)
    if not logging.getLogger("tornado").handlers:
        logging.getLogger("tornado").addHandler(root.handlers[0])


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Log 2xx and 3xx requests at debug, 4xx at warning and 5xx at error."""
    status = handler.get_status()
    access = logging.getLogger("tornado.access")
    if status < 400:
        level = logging.DEBUG
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    request = handler.request
    access.log(level, "%d %s %s %.1f ms", status, request.method, request.uri,
               1000.0 * request.request_time())


main = launch_new_instance = ExpmanTornado.launch_instance
