"""The live hub: turns the watcher's path changes into events for run and store streams."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict

from polars.exceptions import PanicException
from tornado.ioloop import IOLoop, PeriodicCallback

from ..store import NotFound, Store
from .channel import ANY_FILE, RunChannel, StoreChannel, Subscription, changed_kinds
from .events import LOG_FILES, Position, format_event
from .watchers import Watcher, start_watcher

log = logging.getLogger(__name__)

#: Seconds a burst of changes to one run is gathered before it is read.
COALESCE_SECONDS = 0.002

#: Files that are rewritten whole: a write to one still open is not read yet,
#: because IN_CLOSE_WRITE or IN_MOVED_TO follows once it is whole.
_REWRITTEN_SUFFIXES = (".parquet", ".yaml", ".yml", ".json")

#: The status of a run not read yet.
UNKNOWN = object()


class LiveHub:
    """Watches the store and feeds every live stream; one per application.

    Changes are gathered per run for :data:`COALESCE_SECONDS`, then each
    changed run is read once for all of its clients. Store-wide events
    (experiments and runs created or deleted, status changes) go to the
    clients of ``/api/live``.
    """

    def __init__(self, store: Store, watcher: str = "auto", poll_interval: float = 1.0,
                 executor=None, base_url: str = "/", heartbeat_interval: float = 15.0):
        self.store = store
        self.heartbeat_interval = heartbeat_interval
        self._heartbeats: PeriodicCallback | None = None
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
        # Each run's status, or UNKNOWN until it is read (see _read_statuses).
        self._runs: dict[tuple[str, str], object] = {}
        self._statuses_read: asyncio.Future | None = None
        self._flushing: asyncio.Lock | None = None

    # Lifecycle

    @property
    def watcher_name(self) -> str | None:
        return self.watcher.name if self.watcher is not None else None

    @property
    def subscribers(self) -> int:
        runs = sum(len(channel.subscriptions) for channel in self._channels.values())
        return runs + len(self.store_channel.subscriptions)

    def counts(self) -> tuple[int, int]:
        """Return the number of experiments and runs in the store (listed at start, then kept current)."""
        return len(self._experiments), len(self._runs)

    async def start(self) -> None:
        """Start the watcher, then list the store's experiments and runs.

        Listing after the watcher started misses no run created meanwhile. The
        runs' statuses are read afterwards, in the background (see
        :meth:`_read_statuses`), so that a large store does not delay serving.
        """
        self._flushing = asyncio.Lock()
        async with self._flushing:
            self.watcher = start_watcher(self.watcher_kind, self.store.root, self.on_change,
                                         self.poll_interval, self.executor, self.store.fs)
            self._experiments, runs = await self._in_thread(self._list_tree)
            self._runs = dict.fromkeys(runs, UNKNOWN)
        # Only inotify reports every change from the moment it started: the polling
        # watcher's first pass is its baseline, so a change made before that pass
        # is never reported, and the runs listing keeps its stat checks with it.
        if self.watcher.name == "inotify":
            self.store.set_change_feed(True)
        # One timer for every stream, checked four times per interval, rather than
        # one timeout per stream and event.
        self._heartbeats = PeriodicCallback(self.send_heartbeats, self.heartbeat_interval * 250)
        self._heartbeats.start()
        log.info("Live updates on: watching %s with %s", self.store.root, self.watcher.name)
        self._statuses_read = asyncio.ensure_future(self._read_statuses())

    def stop(self) -> None:
        if self._statuses_read is not None:
            self._statuses_read.cancel()
            self._statuses_read = None
        if self._heartbeats is not None:
            self._heartbeats.stop()
            self._heartbeats = None
        if self.watcher is not None:
            self.store.set_change_feed(False)
            self.watcher.stop()
            self.watcher = None
        for channel in list(self._channels.values()):
            for subscription in list(channel.subscriptions):
                subscription.close()
        for subscription in list(self.store_channel.subscriptions):
            subscription.close()

    def send_heartbeats(self) -> None:
        """Wake every stream that sent nothing for :attr:`heartbeat_interval` seconds, to send a comment."""
        silent_since = IOLoop.current().time() - self.heartbeat_interval
        channels = [*self._channels.values(), self.store_channel]
        for channel in channels:
            for subscription in channel.subscriptions:
                if subscription.last_sent <= silent_since and not subscription.heartbeat_due:
                    subscription.heartbeat_due = True
                    subscription.wake.set()

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def _list_tree(self) -> tuple[set[str], set[tuple[str, str]]]:
        """Return the store's experiments and runs; a listing only, no file is read."""
        experiments = set(self.store.experiment_ids())
        runs = set()
        for experiment in experiments:
            try:
                runs.update((experiment, run) for run in self.store.run_ids(experiment))
            except NotFound:
                continue
        return experiments, runs

    async def _read_statuses(self, publish: bool = False) -> None:
        """Read the status of every run, one experiment at a time.

        At start it runs in the background and only fills in statuses not known
        yet. After the watcher lost events, it runs in a pass (``publish``) and
        publishes the statuses that changed. :meth:`Store.run_statuses` takes
        them from the runs listing's current summaries, and reads only run.yaml
        for the other runs. With a current summary index, the pass costs a few
        ``stat`` calls per run, and it loads the summaries that the first runs
        listing of each experiment then uses.
        NOTE: until a run's status is known, a change of it is recorded but not
        published as ``StatusChanged``, because the status it changed from is unknown.
        """
        for experiment in sorted(self._experiments):
            try:
                statuses = await self._in_thread(self.store.run_statuses, experiment)
            except NotFound:
                continue
            for run, status in statuses.items():
                key = (experiment, run)
                previous = self._runs.get(key, status)
                if previous is UNKNOWN:
                    self._runs[key] = status
                elif publish and status != previous:
                    self._runs[key] = status
                    self._publish_status(key, status, previous)

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
            # Kept while it opens, so clients that come meanwhile wait for this one
            # first read instead of each reading the whole run again.
            channel = self._channels[key] = RunChannel(self.store, experiment, run, self.executor,
                                                       self.base_url)
            try:
                await channel.open()
            except BaseException:
                if self._channels.get(key) is channel:
                    del self._channels[key]
                raise
        else:
            await channel.wait_open()
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
        # Every path, before the filtering below, so the runs listing drops a
        # changed summary before any request reads it.
        self.store.note_change(path)
        relative = os.path.relpath(path, self.store.root)
        if relative.startswith(".."):
            return
        parts = [] if relative == "." else relative.split(os.sep)
        if any(part.startswith(".") for part in parts[:2]):
            return
        if partial and path.endswith(_REWRITTEN_SUFFIXES):
            return
        inside_run = "/".join(parts[2:])
        if inside_run and not changed_kinds({inside_run}):
            return  # A file no event is made from, such as the logger's temporary run.yaml.
        key = tuple(parts[:2])
        self._dirty[key].add(inside_run)
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
            except (Exception, PanicException):  # noqa: BLE001 (one failed pass must not stop live updates)
                log.error("Failed to process store changes %s", sorted(dirty)[:5], exc_info=True)

    async def _process(self, dirty: dict[tuple[str, ...], set[str]]) -> None:
        if () in dirty:
            # The store root itself changed, or events were lost: look at every streamed run.
            for key in self._channels:
                dirty[key].add(ANY_FILE)
        tree_changed = any(len(key) < 2 or "" in names for key, names in dirty.items())
        if tree_changed:
            await self._update_tree()
        if () in dirty:
            await self._read_statuses(publish=True)

        for key, names in dirty.items():
            if len(key) != 2:
                continue
            channel = self._channels.get(key)  # type: ignore[arg-type]
            if channel is not None:
                await channel.update(names)
                if channel.deleted:
                    self._channels.pop(key, None)  # type: ignore[arg-type]
                elif channel.logs_pending:
                    channel.logs_pending = False
                    self.on_change(os.path.join(channel.folder, LOG_FILES[0]), False)
            # After the run's own clients had their events: store-wide status changes.
            if "run.yaml" in names and key in self._runs:
                await self._update_status(key)

    async def _update_tree(self) -> None:
        experiments, listed = await self._in_thread(self._list_tree)
        created = sorted(listed - self._runs.keys())
        statuses = await self._in_thread(lambda: {key: self._status(*key) for key in created})
        for experiment in sorted(experiments - self._experiments):
            self._publish("ExperimentCreated", {"experiment": experiment})
        for experiment, run in created:
            self._publish("RunCreated", {"experiment": experiment, "run": run})
        for experiment, run in sorted(self._runs.keys() - listed):
            self._publish("RunDeleted", {"experiment": experiment, "run": run})
            channel = self._channels.get((experiment, run))
            if channel is not None:
                await channel.update({""})
                self._channels.pop((experiment, run), None)
        for experiment in sorted(self._experiments - experiments):
            self._publish("ExperimentDeleted", {"experiment": experiment})
        self._experiments = experiments
        self._runs = {key: self._runs.get(key, statuses.get(key)) for key in listed}

    async def _update_status(self, key: tuple[str, str]) -> None:
        status = await self._in_thread(self._status, *key)
        previous = self._runs.get(key)
        if status != previous:
            self._runs[key] = status
            if previous is not UNKNOWN:
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
