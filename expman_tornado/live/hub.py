"""The live hub: turns the watcher's path changes into events for run and store streams."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict

from tornado.ioloop import IOLoop

from ..store import NotFound, Store
from .channel import RunChannel, StoreChannel, Subscription
from .events import LOG_FILES, Position, format_event
from .watchers import Watcher, start_watcher

log = logging.getLogger(__name__)

#: Seconds a burst of changes to one run is gathered before it is read.
COALESCE_SECONDS = 0.005

#: Files that are rewritten whole: a write to one still open is not read yet,
#: because IN_CLOSE_WRITE or IN_MOVED_TO follows once it is whole.
_REWRITTEN_SUFFIXES = (".parquet", ".yaml", ".yml", ".json")


class LiveHub:
    """Watches the store and feeds every live stream; one per application.

    Changes are gathered per run for :data:`COALESCE_SECONDS`, then each
    changed run is read once for all of its clients. Store-wide events
    (experiments and runs created or deleted, status changes) go to the
    clients of ``/api/live``.
    """

    def __init__(self, store: Store, watcher: str = "auto", poll_interval: float = 1.0,
                 executor=None, base_url: str = "/"):
        self.store = store
        self.watcher_kind = watcher
        self.poll_interval = poll_interval
        self.executor = executor
        self.base_url = base_url
        self.watcher: Watcher | None = None
        self.store_channel = StoreChannel()
        self._channels: dict[tuple[str, str], RunChannel] = {}
        self._dirty: dict[tuple[str, ...], set[str]] = defaultdict(set)
        self._flush_scheduled = False
        self._experiments: set[str] = set()
        self._runs: dict[tuple[str, str], str | None] = {}
        self._flushing: asyncio.Lock | None = None

    # Lifecycle

    @property
    def watcher_name(self) -> str | None:
        return self.watcher.name if self.watcher is not None else None

    @property
    def subscribers(self) -> int:
        runs = sum(len(channel.subscriptions) for channel in self._channels.values())
        return runs + len(self.store_channel.subscriptions)

    async def start(self) -> None:
        """Read the store's experiments and runs, then start the watcher."""
        self._flushing = asyncio.Lock()
        self._experiments, self._runs = await self._in_thread(self._read_tree)
        self.watcher = start_watcher(self.watcher_kind, self.store.root, self.on_change,
                                     self.poll_interval, self.executor)
        log.info("Live updates on: watching %s with %s", self.store.root, self.watcher.name)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        for channel in list(self._channels.values()):
            for subscription in list(channel.subscriptions):
                subscription.close()
        for subscription in list(self.store_channel.subscriptions):
            subscription.close()

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def _read_tree(self) -> tuple[set[str], dict[tuple[str, str], str | None]]:
        experiments = set(self.store.experiment_ids())
        runs = {}
        for experiment in experiments:
            try:
                for run in self.store.run_ids(experiment):
                    runs[(experiment, run)] = self._status(experiment, run)
            except NotFound:
                continue
        return experiments, runs

    def _status(self, experiment: str, run: str) -> str | None:
        try:
            return self.store.run_status(experiment, run)
        except NotFound:
            return None

    # Subscriptions

    async def subscribe_run(self, experiment: str, run: str, resume: Position | None,
                            since_step: int | None) -> Subscription:
        """Subscribe to a run; raise NotFound (or InvalidName) before any stream starts."""
        key = (experiment, run)
        channel = self._channels.get(key)
        if channel is None:
            channel = RunChannel(self.store, experiment, run, self.executor, self.base_url)
            await channel.open()
            channel = self._channels.setdefault(key, channel)
        return await channel.subscribe(resume, since_step)

    def subscribe_store(self) -> Subscription:
        return self.store_channel.subscribe()

    def unsubscribe(self, subscription: Subscription) -> None:
        """Release a client's subscription; a run channel without clients is dropped."""
        subscription.close()
        channel = subscription.channel
        channel.subscriptions.discard(subscription)
        if isinstance(channel, RunChannel) and not channel.subscriptions:
            if self._channels.get((channel.experiment, channel.run)) is channel:
                del self._channels[(channel.experiment, channel.run)]

    # Changes

    def on_change(self, path: str, partial: bool) -> None:
        """Note a changed path; called by the watcher on the IOLoop."""
        relative = os.path.relpath(path, self.store.root)
        if relative.startswith(".."):
            return
        parts = [] if relative == "." else relative.split(os.sep)
        if any(part.startswith(".") for part in parts[:2]):
            return
        if partial and path.endswith(_REWRITTEN_SUFFIXES):
            return
        key = tuple(parts[:2])
        self._dirty[key].add("/".join(parts[2:]))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            IOLoop.current().call_later(COALESCE_SECONDS, self._schedule_flush)

    def _schedule_flush(self) -> None:
        IOLoop.current().add_callback(self._flush)

    async def _flush(self) -> None:
        assert self._flushing is not None
        async with self._flushing:
            self._flush_scheduled = False
            dirty, self._dirty = self._dirty, defaultdict(set)
            try:
                await self._process(dirty)
            except Exception:  # noqa: BLE001 (one failed pass must not stop live updates)
                log.error("Failed to process store changes %s", sorted(dirty)[:5], exc_info=True)

    async def _process(self, dirty: dict[tuple[str, ...], set[str]]) -> None:
        if () in dirty:
            # The store root itself changed, or events were lost: look at every streamed run.
            for key in self._channels:
                dirty[key] |= {"run.yaml", "config.yaml", "artifacts"}
        tree_changed = any(len(key) < 2 or "" in names for key, names in dirty.items())
        if tree_changed:
            await self._update_tree()

        for key, names in dirty.items():
            if len(key) != 2:
                continue
            if "run.yaml" in names and key in self._runs:
                await self._update_status(key)
            channel = self._channels.get(key)  # type: ignore[arg-type]
            if channel is not None:
                await channel.update(names)
                if channel.deleted:
                    self._channels.pop(key, None)  # type: ignore[arg-type]
                elif channel.logs_pending:
                    channel.logs_pending = False
                    self.on_change(os.path.join(channel.folder, LOG_FILES[0]), False)

    async def _update_tree(self) -> None:
        experiments, runs = await self._in_thread(self._read_tree)
        for experiment in sorted(experiments - self._experiments):
            self._publish("ExperimentCreated", {"experiment": experiment})
        for experiment, run in sorted(set(runs) - set(self._runs)):
            self._publish("RunCreated", {"experiment": experiment, "run": run})
        for experiment, run in sorted(set(self._runs) - set(runs)):
            self._publish("RunDeleted", {"experiment": experiment, "run": run})
            channel = self._channels.get((experiment, run))
            if channel is not None:
                await channel.update({""})
                self._channels.pop((experiment, run), None)
        for experiment in sorted(self._experiments - experiments):
            self._publish("ExperimentDeleted", {"experiment": experiment})
        for key, status in runs.items():
            previous = self._runs.get(key, status)
            if key in self._runs and status != previous:
                self._publish_status(key, status, previous)
        self._experiments, self._runs = experiments, runs

    async def _update_status(self, key: tuple[str, str]) -> None:
        status = await self._in_thread(self._status, *key)
        previous = self._runs.get(key)
        if status != previous:
            self._runs[key] = status
            self._publish_status(key, status, previous)

    def _publish_status(self, key: tuple[str, str], status: str | None, previous: str | None) -> None:
        self._publish("StatusChanged", {"experiment": key[0], "run": key[1],
                                        "status": status, "previous": previous})

    def _publish(self, name: str, data: dict) -> None:
        # NOTE: store-wide events cannot be rebuilt from the files, so their id is
        # only the time they were seen, and a reconnecting client gets no replay.
        event_id = "t%d" % time.time_ns()
        self.store_channel.publish(format_event(name, data, event_id), Position())
        log.debug("%s %s", name, data)
