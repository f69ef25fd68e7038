"""A server in a background thread, for clients that block (requests, schemathesis)."""

from __future__ import annotations

import asyncio
import threading

import tornado.netutil
from tornado.httpserver import HTTPServer

from expman_tornado.app import ExpmanTornado


class ServerThread:
    """Serve an ``ExpmanTornado`` application on 127.0.0.1 and a free port, in its own event loop.

    Use it as a context manager; :attr:`url` is the server's root URL.
    """

    def __init__(self, application: ExpmanTornado, start_timeout: float = 30.0):
        self.application = application
        self.start_timeout = start_timeout
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="expman-test-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise TimeoutError("the test server did not start in %g s" % self.start_timeout)
        if self._error is not None:
            raise RuntimeError("the test server failed to start") from self._error
        return self

    def __exit__(self, *exc_info) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.start_timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 (reported to the thread that waits)
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        context = self.application.make_context()
        web_app = self.application.make_web_app(context)
        hub = self.application.make_hub(context)
        await hub.start()
        server = HTTPServer(web_app)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        self.url = "http://127.0.0.1:%d" % sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.stop()
            hub.stop()
            await server.close_all_connections()
            context.executor.shutdown(wait=True)
