"""Server-Sent Event streams: one run's changes, and the store's."""

from __future__ import annotations

import asyncio
import logging

from tornado.iostream import StreamClosedError

from ..errors import ApiError
from ..live.channel import Subscription
from ..live.events import HEARTBEAT, Position
from ..store import InvalidName, NotFound
from .base import ApiHandler
from .routes import RUN_LIVE, STORE_LIVE

log = logging.getLogger(__name__)


class EventStreamHandler(ApiHandler):
    """A long-lived ``text/event-stream`` reply fed by a hub subscription.

    The subscription is released as soon as the client goes away, whether that
    is noticed while waiting (``on_connection_close``) or while writing
    (``StreamClosedError``).
    """

    subscription: Subscription | None = None

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
        """Write events as they come, and a heartbeat comment when none came for a while."""
        interval = self.context.extra.get("heartbeat_interval", 15.0)
        channel = subscription.channel
        try:
            await self.flush()
            while not subscription.closed:
                subscription.wake.clear()
                chunks = await channel.take(subscription)
                if chunks:
                    data = self.encode_events(chunks)
                    if data:
                        self.write(data)
                        await self.flush()
                    if subscription.ended:
                        break
                    continue
                try:
                    await asyncio.wait_for(subscription.wake.wait(), interval)
                except asyncio.TimeoutError:
                    self.write(HEARTBEAT)
                    await self.flush()
        except StreamClosedError:
            pass
        finally:
            self.release()
        if not self.request.connection.stream.closed():
            self.finish()

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
        resume = Position.parse(self.request.headers.get("Last-Event-ID"))
        await self.subscribe_run(experiment, run, resume, since_step)
        self.start_stream()
        await self.pump(self.subscription)


class StoreLiveHandler(EventStreamHandler):
    """``GET /api/live``: experiments and runs created or deleted, and status changes."""

    async def get(self) -> None:
        self.subscription = self.hub.subscribe_store()
        self.start_stream()
        await self.pump(self.subscription)


default_handlers = [(RUN_LIVE, RunLiveHandler), (STORE_LIVE, StoreLiveHandler)]
