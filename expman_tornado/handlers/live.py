"""Server-Sent Event streams: one run's changes, and the store's."""

from __future__ import annotations

import logging
from functools import partial

from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

from ..errors import ApiError
from ..live.channel import Subscription
from ..live.events import HEARTBEAT, Position
from ..store import InvalidName, NotFound
from ..store.filesystem import StoreUnavailable
from .base import RETRY_AFTER_SECONDS, ApiHandler
from .routes import RUN_LIVE, STORE_LIVE

log = logging.getLogger(__name__)


class EventStreamHandler(ApiHandler):
    """A long-lived ``text/event-stream`` reply fed by a hub subscription.

    The subscription is released as soon as the client goes away, whether that
    is noticed while waiting (``on_connection_close``) or while writing
    (``StreamClosedError``).
    """

    subscription: Subscription | None = None

    async def head(self, *args: str, **kwargs: str) -> None:
        """Refuse HEAD with 405: a stream has no end for HEAD to wait for."""
        raise ApiError(405, "HEAD is not allowed on a live stream; use GET")

    def allowed_methods(self) -> list[str]:
        return ["GET"]

    @property
    def hub(self):
        hub = self.context.extra.get("hub")
        if hub is None:
            raise ApiError(501, "live updates are switched off on this server")
        return hub

    def start_stream(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def pump(self, subscription: Subscription) -> None:
        """Write events as they come, and a heartbeat comment when the hub marks one as due."""
        channel = subscription.channel
        clock = IOLoop.current()
        try:
            await self.flush()
            subscription.last_sent = clock.time()
            while not subscription.closed:
                subscription.wake.clear()
                chunks = await channel.take(subscription)
                data = self.encode_events(chunks) if chunks else b""
                if not data and subscription.heartbeat_due:
                    data = HEARTBEAT
                if data:
                    subscription.heartbeat_due = False
                    self.write(data)
                    await self.flush()
                    subscription.last_sent = clock.time()
                if subscription.ended:
                    break
                if not chunks:
                    subscription.send_now = partial(self.send_now, subscription)
                    try:
                        await subscription.wake.wait()
                    finally:
                        subscription.send_now = None
        except StreamClosedError:
            pass
        finally:
            self.release()
        if not self.request.connection.stream.closed():
            self.finish()

    def send_now(self, subscription: Subscription, data: bytes) -> bool:
        """Write one event while the stream loop waits; return False when the loop must send it.

        That is when the connection is closed or still sending earlier bytes: the
        loop then waits for the client, so a slow client's bytes do not pile up.
        """
        stream = self.request.connection.stream
        if stream.closed() or stream.writing():
            return False
        payload = self.encode_events([data])
        if payload:
            if not self._send_chunk(stream, payload):
                self.write(payload)
                self.flush().add_done_callback(_retrieve_error)
            subscription.last_sent = IOLoop.current().time()
        return True

    def _send_chunk(self, stream: IOStream, payload: bytes) -> bool:
        """Send bytes of the reply as one HTTP/1.1 chunk straight to the socket.

        With hundreds of clients, Tornado's write path (a buffer and a future per
        write) costs more than the system call itself. This path needs a plain
        TCP stream with nothing left to send, a chunked reply and no output
        transforms (such as gzip). Otherwise, or when the socket refuses, it
        returns False and the caller writes through Tornado. Bytes the socket
        did not take are handed to the stream, which keeps their order.
        ``_chunking_output`` and ``_transforms`` are Tornado's private state: if
        a later Tornado lacks them, this path is simply never taken.
        """
        if (type(stream) is not IOStream or getattr(self, "_transforms", None)
                or getattr(self.request.connection, "_chunking_output", None) is not True):
            return False
        chunk = b"%x\r\n%b\r\n" % (len(payload), payload)
        try:
            sent = stream.socket.send(chunk)
        except OSError:  # Full (EAGAIN) or gone: Tornado's path waits or notices.
            return False
        if sent < len(chunk):
            stream.write(chunk[sent:]).add_done_callback(_retrieve_error)
        return True

    def encode_events(self, chunks: list[bytes]) -> bytes:
        """Return the bytes sent for events taken from the hub, each one encoded event.

        A subclass that streams another format overrides it; an empty result sends nothing.
        """
        return b"".join(chunks)

    async def subscribe_run(self, experiment: str, run: str, resume: Position | None,
                            since_step: int | None) -> Subscription:
        """Subscribe to a run's changes; an invalid name is a 400 and an unknown run a 404."""
        try:
            self.subscription = await self.hub.subscribe_run(experiment, run, resume, since_step)
        except InvalidName as exc:
            raise ApiError(400, str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except StoreUnavailable as exc:
            log.warning("%s (%s)", exc, self.request.path)
            raise ApiError(503, str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        return self.subscription

    def release(self) -> None:
        if self.subscription is not None:
            self.hub.unsubscribe(self.subscription)
            self.subscription = None

    def on_connection_close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()

    def on_finish(self) -> None:
        self.release()


class RunLiveHandler(EventStreamHandler):
    """``GET …/runs/:run/live``: Snapshot, then metrics, logs, status and artifact events."""

    async def get(self, experiment: str, run: str) -> None:
        since_step = self.int_argument("since_step", None, minimum=-1)
        # A browser cannot set the header on a new EventSource, so the id may come in the query too.
        # A header id that is not ours is ignored, so the stream starts at the run's end.
        # The query parameter is the client's own choice, so an invalid one is a 400.
        header_id = self.request.headers.get("Last-Event-ID")
        query_id = self.get_query_argument("last_event_id", None)
        resume = Position.parse(header_id or query_id)
        if not header_id and query_id is not None and resume is None:
            raise ApiError(400, "query parameter 'last_event_id' must be an event id of this run's stream, "
                                "such as m120.r5123.c0, got %r" % query_id)
        await self.subscribe_run(experiment, run, resume, since_step)
        self.start_stream()
        await self.pump(self.subscription)


class StoreLiveHandler(EventStreamHandler):
    """``GET /api/live``: experiments and runs created or deleted, and status changes."""

    async def get(self) -> None:
        self.subscription = self.hub.subscribe_store()
        self.start_stream()
        await self.pump(self.subscription)


def _retrieve_error(future) -> None:
    """Mark a write's error as seen; a closed stream is noticed by the stream loop."""
    if not future.cancelled():
        future.exception()


default_handlers = [(RUN_LIVE, RunLiveHandler), (STORE_LIVE, StoreLiveHandler)]
