"""RunnerPool: the sole owner of every llama-server process.

Callers state intent: ``lease(spec)`` (give me a ready runner for this model, loading it if needed),
``expire(model_key)`` (unload when idle), ``close()`` (stop everything). They never look at runner state
and then act on it.

Invariants:

* ``_entries`` maps a model key to at most one live entry; a lookup and the change that follows it
  happen with no ``await`` in between, so the event loop makes them atomic.
* Loads belong to the pool: each runs in a pool-owned task that requests await through ``shield``.
  A client that disconnects stops waiting, but never cancels a load that others wait for.
* Leases are reference-counted. A leased runner is never stopped by keep-alive; the keep-alive timer
  starts when the count falls to zero and is cancelled when a new lease arrives.
* A runner whose launch parameters no longer match (e.g. another ``num_ctx``) is retired: it leaves
  ``_entries`` at once, stops when its last lease ends, and its replacement starts only after it has
  stopped, so one model never holds memory twice.
* A runner that exits on its own is removed, and the next request starts a fresh one.
* At most ``max_loaded`` runners are resident (loading, ready or draining). A load that would exceed
  it first unloads an idle runner (``placement.eviction_victim``), waiting for one to become idle
  when all are busy; a leased runner is never evicted.
* A lease holds one of its runner's slots (``-np``); leases beyond the slots wait in the pool. The
  leases that wait — for a load or for a slot — are counted, and a new one beyond ``max_queue`` is
  refused at once with Ollama's 503. A waiter that is cancelled (its client went away) leaves the
  count and its place in line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import structlog

from ..errors import LlamasupError, RunnerStartError, ServerBusy
from ..runner.client import RunnerClient
from ..runner.command import RunnerConfig
from ..runner.process import RunnerProcess
from .placement import Resident, eviction_victim

log = structlog.get_logger("supervisor.pool")

# Makes a RunnerProcess for a config; the pool owns everything after that.
Spawner = Callable[[RunnerConfig], RunnerProcess]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: object = _Unset()  # "not given": keep the runner's keep-alive (or the default for a new one)


class PoolClosed(LlamasupError):
    status = 503

    def __init__(self) -> None:
        super().__init__("server is shutting down")


@dataclass(frozen=True)
class RunnerSpec:
    """What to run for a model: equal specs share a runner, a different one forces a reload."""

    model_key: str  # identifies the model (its weights); one runner per key
    name: str  # display name for logs and /api/ps
    config: RunnerConfig


@dataclass(frozen=True)
class LoadedRunner:
    """A ready runner as ``/api/ps`` shows it."""

    spec: RunnerSpec
    keep_alive: float | None  # seconds once idle; None = forever
    expires_at: float | None  # wall clock while idle with a timer; None while leased or forever
    refs: int


@dataclass(eq=False)
class _Entry:
    spec: RunnerSpec
    keep_alive: float | None
    process: RunnerProcess | None = None
    load_task: asyncio.Task[None] | None = None
    refs: int = 0
    expiry: asyncio.TimerHandle | None = None
    expires_at: float | None = None  # wall clock, for /api/ps
    retired: bool = False
    stop_task: asyncio.Task[None] | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    slots: asyncio.Semaphore = field(init=False)
    idle_since: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(max(self.spec.config.parallel, 1))


class Runner:
    """A ready runner as handed out under a lease."""

    def __init__(self, entry: _Entry, client: RunnerClient) -> None:
        self._entry = entry
        self.client = client

    @property
    def spec(self) -> RunnerSpec:
        return self._entry.spec

    @property
    def process(self) -> RunnerProcess:
        assert self._entry.process is not None
        return self._entry.process


class RunnerPool:
    def __init__(
        self,
        *,
        spawn: Spawner,
        default_keep_alive: float | None,
        max_queue: int = 512,
        max_loaded: int = 3,
    ) -> None:
        self._spawn = spawn
        self._default_keep_alive = default_keep_alive
        self._max_queue = max_queue
        self._waiting = 0  # leases waiting for a load or a slot
        self._max_loaded = max(max_loaded, 1)
        self._room_waiters: list[asyncio.Event] = []  # loads waiting for a runner to become idle
        self._entries: dict[str, _Entry] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._draining: set[_Entry] = set()  # retired but still leased: stopped when the last lease ends
        self._closed = False

    # -- intent -------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self, spec: RunnerSpec, keep_alive: float | None | object = UNSET) -> AsyncIterator[Runner]:
        """A ready runner for ``spec``, held until the block exits.

        ``keep_alive``: seconds to stay loaded once idle (None = forever); ``UNSET`` keeps the runner's
        current value (or the server default for a new runner).
        """
        if self._waiting >= self._max_queue:
            log.warning("queue full", model=spec.name, waiting=self._waiting)
            raise ServerBusy()
        entry = self._acquire(spec, keep_alive)
        self._waiting += 1
        queued = True
        try:
            assert entry.load_task is not None
            await asyncio.shield(entry.load_task)
            async with entry.slots:
                self._waiting -= 1
                queued = False
                assert entry.process is not None
                assert entry.process.session is not None
                yield Runner(entry, RunnerClient(entry.process.session, entry.process.base_url))
        except asyncio.CancelledError:
            if queued:
                log.info("request canceled while queued", model=spec.name, status=499)
            raise
        finally:
            if queued:
                self._waiting -= 1
            self._release(entry)

    @property
    def waiting(self) -> int:
        """Leases waiting for a load or a free slot (what ``OLLAMA_MAX_QUEUE`` bounds)."""
        return self._waiting

    def expire(self, model_key: str) -> bool:
        """Unload ``model_key`` as soon as it is idle (``keep_alive: 0``); False if it is not loaded."""
        entry = self._entries.get(model_key)
        if entry is None:
            return False
        entry.keep_alive = 0.0
        if entry.refs == 0 and entry.load_task is not None and entry.load_task.done():
            self._retire(entry, reason="unload requested")
        return True

    async def close(self) -> None:
        """Stop every runner (loading ones too) and refuse new leases."""
        self._closed = True
        for entry in [*self._entries.values(), *self._draining]:
            if entry.load_task is not None and not entry.load_task.done():
                entry.load_task.cancel()
            self._retire(entry, reason="shutdown", force=True)
        while self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def loaded(self) -> list[LoadedRunner]:
        """Snapshot of the ready runners."""
        return [
            LoadedRunner(e.spec, e.keep_alive, e.expires_at, e.refs)
            for e in self._entries.values()
            if e.load_task is not None and e.load_task.done() and not e.load_task.cancelled() and e.load_task.exception() is None
        ]

    # -- bookkeeping (no awaits: each is atomic on the event loop) ---------------------------------
    def _acquire(self, spec: RunnerSpec, keep_alive: float | None | object) -> _Entry:
        if self._closed:
            raise PoolClosed()
        entry = self._entries.get(spec.model_key)
        previous: _Entry | None = None
        if entry is not None and entry.spec != spec:
            previous = entry
            self._retire(entry, reason="launch parameters changed")
            entry = None
        if entry is None:
            start_keep_alive = self._default_keep_alive if keep_alive is UNSET else keep_alive
            entry = _Entry(spec=spec, keep_alive=start_keep_alive)  # type: ignore[arg-type]
            self._entries[spec.model_key] = entry
            entry.load_task = asyncio.create_task(self._load(entry, previous), name=f"load-{spec.name}")
            entry.load_task.add_done_callback(functools.partial(self._load_finished, entry))
        elif keep_alive is not UNSET:
            entry.keep_alive = keep_alive  # type: ignore[assignment]
        entry.refs += 1
        if entry.expiry is not None:
            entry.expiry.cancel()
            entry.expiry = None
        entry.expires_at = None
        return entry

    def _release(self, entry: _Entry) -> None:
        entry.refs -= 1
        if entry.refs == 0:
            entry.idle_since = time.monotonic()
            if entry.load_task is not None and entry.load_task.done():
                self._idle(entry)
            self._room_changed()

    def _room_changed(self) -> None:
        """A runner became idle or left: loads waiting for room look again."""
        waiters, self._room_waiters = self._room_waiters, []
        for event in waiters:
            event.set()

    def _residents(self, loading: _Entry) -> list[_Entry]:
        return [e for e in [*self._entries.values(), *self._draining] if e is not loading and not e.stopped.is_set()]

    def _load_finished(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is not None:
            if self._entries.get(entry.spec.model_key) is entry:
                del self._entries[entry.spec.model_key]
            entry.retired = True
            entry.stopped.set()
            self._room_changed()
            return
        if entry.refs == 0:
            self._idle(entry)

    def _idle(self, entry: _Entry) -> None:
        """The last lease ended: stop now, or start the keep-alive timer."""
        if entry.retired or entry.keep_alive == 0:
            self._retire(entry, reason="retired" if entry.retired else "keep_alive is 0")
            return
        if entry.keep_alive is None:
            entry.expires_at = None
            return
        loop = asyncio.get_running_loop()
        entry.expires_at = time.time() + entry.keep_alive
        entry.expiry = loop.call_later(entry.keep_alive, self._expired, entry)

    def _expired(self, entry: _Entry) -> None:
        entry.expiry = None
        if entry.refs == 0 and not entry.retired:
            self._retire(entry, reason="keep-alive expired")

    def _retire(self, entry: _Entry, *, reason: str, force: bool = False) -> None:
        """Take the entry out of service; stop its process now if idle (or ``force``), else when idle."""
        if self._entries.get(entry.spec.model_key) is entry:
            del self._entries[entry.spec.model_key]
        if entry.expiry is not None:
            entry.expiry.cancel()
            entry.expiry = None
        entry.retired = True
        if entry.stop_task is not None or entry.stopped.is_set():
            return
        if entry.refs > 0 and not force:
            self._draining.add(entry)
            return
        self._draining.discard(entry)
        log.info("unloading model", model=entry.spec.name, reason=reason)
        entry.stop_task = asyncio.create_task(self._stop(entry), name=f"stop-{entry.spec.name}")
        self._stopping.add(entry.stop_task)
        entry.stop_task.add_done_callback(self._stopping.discard)

    # -- acting on processes ------------------------------------------------------------------------
    async def _make_room(self, entry: _Entry) -> None:
        """Unload idle runners until ``entry`` fits under ``max_loaded``; wait while all are busy."""
        while len(residents := self._residents(entry)) >= self._max_loaded:
            view = [
                Resident(str(id(e)), e.refs, e.load_task is not None and e.load_task.done() and not e.retired,
                         e.keep_alive, e.idle_since)
                for e in residents
            ]  # fmt: skip
            key = eviction_victim(view)
            if key is None:
                log.info("waiting for a runner to become idle", model=entry.spec.name, loaded=len(residents))
                event = asyncio.Event()
                self._room_waiters.append(event)
                await event.wait()
                continue
            victim = next(e for e in residents if str(id(e)) == key)
            self._retire(victim, reason=f"max loaded models ({self._max_loaded}) reached, making room for {entry.spec.name}")
            await victim.stopped.wait()

    async def _load(self, entry: _Entry, previous: _Entry | None) -> None:
        if previous is not None:
            await previous.stopped.wait()
        await self._make_room(entry)
        spec = entry.spec
        log.info("loading model", model=spec.name, ctx=spec.config.ctx_size, parallel=spec.config.parallel)
        process = self._spawn(spec.config)
        entry.process = process
        try:
            await process.start()
            await process.wait_ready()
        except RunnerStartError as e:
            await process.stop()
            log.error("model failed to load", model=spec.name, error=str(e))
            raise
        except BaseException:
            await asyncio.shield(process.stop())
            raise
        watcher = asyncio.create_task(self._watch(entry, process), name=f"watch-{spec.name}")
        self._watchers.add(watcher)  # held so it is not collected; it ends with its process
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, entry: _Entry, process: RunnerProcess) -> None:
        await process.wait_exit()
        if process.stopping:
            return
        detail = await process.exit_detail()
        log.error("runner exited unexpectedly", model=entry.spec.name, detail=detail)
        if self._entries.get(entry.spec.model_key) is entry:
            del self._entries[entry.spec.model_key]
        self._draining.discard(entry)
        entry.retired = True
        await process.stop()  # reap and clear the process group
        entry.stopped.set()
        self._room_changed()

    async def _stop(self, entry: _Entry) -> None:
        try:
            if entry.load_task is not None and not entry.load_task.done():
                with contextlib.suppress(BaseException):
                    await entry.load_task
            if entry.process is not None:
                await entry.process.stop()
        finally:
            entry.stopped.set()
            self._room_changed()

