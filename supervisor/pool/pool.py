"""RunnerPool: the sole owner of every llama-server process.

Callers state intent: ``lease(spec)`` (give me a ready runner for this model, loading it if needed),
``expire(model_key)`` (unload when idle), ``close()`` (stop everything). They never look at runner state
and then act on it.

Invariants:

* ``_entries`` maps a model key to at most one live entry; a lookup and the change that follows it
  happen with no ``await`` in between, so the event loop makes them atomic.
* Loads belong to the pool: each runs in a pool-owned task that requests await through ``shield``.
  A client that disconnects stops waiting, but never cancels a load that others wait for. Loads run
  one at a time, in arrival order (``_loading``), so each is planned with the memory of the previous
  one measured rather than guessed.
* Leases are reference-counted. A leased runner is never stopped by keep-alive; the keep-alive timer
  starts when the count falls to zero and is cancelled when a new lease arrives.
* A runner whose launch parameters no longer match (e.g. another ``num_ctx``) is retired: it leaves
  ``_entries`` at once, stops when its last lease ends, and its replacement starts only after it has
  stopped, so one model never holds memory twice.
* A runner that exits on its own is removed, and the next request starts a fresh one.
* Before a load, the planner (``placement.place``) decides the launch parameters from the hardware
  inventory, the model's memory estimate and the resident runners (their measured memory): which
  idle runners to unload first (at most ``max_loaded`` stay resident, and the new one must fit
  beside them), or to wait until a busy one is idle; a leased runner is never evicted. A load that
  llama-server refuses for lack of memory is retried once with every idle runner unloaded, then
  with a smaller automatic context; a load that cannot fit fails with what did not fit.
* After a load, what the runner really allocated is parsed from its log (``runner.memlog``) and is
  what ``/api/ps`` and later plans use; the estimate's error is logged.
* Every load, reload and unload has a reason, logged and kept (``events``; a runner's own in
  ``LoadedRunner.reason``).
* A ready runner is checked on ``/health`` every ``health_interval`` seconds; one that misses two
  checks in a row is killed and replaced on the next request, like one that exits.
* A lease holds one of its runner's slots (``-np``); leases beyond the slots wait in the pool. The
  leases that wait — for a load or for a slot — are counted, and a new one beyond ``max_queue`` is
  refused at once with Ollama's 503. A waiter that is cancelled (its client went away) leaves the
  count and its place in line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import structlog

from ..errors import LlamasupError, RunnerStartError, ServerBusy
from ..runner.client import RunnerClient
from ..runner.command import RunnerConfig
from ..runner.memlog import MeasuredMemory
from ..runner.process import RunnerProcess
from .hardware import Inventory
from .memory import Estimate, ModelShape, estimate_error
from .placement import SMALLER_CTX, Limits, Placement, Resident, Want, describe_change, place

log = structlog.get_logger("supervisor.pool")

# Makes a RunnerProcess for a config; the pool owns everything after that.
Spawner = Callable[[RunnerConfig], RunnerProcess]
# The machine's memory now (the injected or probed inventory, with free memory refreshed).
InventorySource = Callable[[], Awaitable[Inventory]]
EVENTS_KEPT = 100
RELEASE_GRACE = 5.0  # seconds a stopped runner's GPU memory counts as free though not yet reported so
# How llama-server says a buffer could not be allocated (CPU, CUDA, ROCm, Vulkan, Metal).
_OOM = re.compile(
    r"out of memory|failed to allocate|unable to allocate|cudaMalloc failed|ErrorOutOfDeviceMemory|bad_alloc"
    r"|insufficient memory",
    re.IGNORECASE,
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: object = _Unset()  # "not given": keep the runner's keep-alive (or the default for a new one)


class PoolClosed(LlamasupError):
    status = 503

    def __init__(self) -> None:
        super().__init__("server is shutting down")


class InsufficientMemory(LlamasupError):
    """The model does not fit on this machine even with every other runner unloaded."""

    status = 500


@dataclass(frozen=True)
class RunnerSpec:
    """What to run for a model: equal specs share a runner, a different one forces a reload."""

    model_key: str  # identifies the model (its weights); one runner per key
    name: str  # display name for logs and /api/ps
    config: RunnerConfig  # as requested: gpu_layers None = as many as fit
    shape: ModelShape | None = field(default=None, compare=False)  # None: memory is not planned
    auto_ctx: bool = field(default=False, compare=False)  # num_ctx chosen by nobody: may shrink to fit
    projector_bytes: int = field(default=0, compare=False)

    def want(self) -> Want:
        return Want(self.config, self.shape, self.auto_ctx, self.projector_bytes)


@dataclass(frozen=True)
class PlanView:
    """The planner's answer for a model now, with the names of the runners it would unload."""

    placement: Placement
    names: dict[str, str]  # resident key -> model name
    loaded: bool  # a runner with these parameters is already loaded (a request would not load)
    inventory: Inventory | None


@dataclass(frozen=True)
class PoolEvent:
    """A load, reload or unload, for logs and ``/api/ps``."""

    at: float  # wall clock
    model: str
    action: str  # "load" | "unload"
    reason: str


@dataclass(frozen=True)
class LoadedRunner:
    """A ready runner as ``/api/ps`` shows it."""

    spec: RunnerSpec
    keep_alive: float | None  # seconds once idle; None = forever
    expires_at: float | None  # wall clock while idle with a timer; None while leased or forever
    refs: int
    config: RunnerConfig  # as launched (context, layers on GPU)
    reason: str  # why it was loaded
    estimate: Estimate | None
    measured: MeasuredMemory | None


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
    reason: str = "requested"
    placement: Placement | None = None
    measured: MeasuredMemory | None = None

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(max(self.spec.config.parallel, 1))

    @property
    def ready(self) -> bool:
        task = self.load_task
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    @property
    def config(self) -> RunnerConfig:
        return self.placement.config if self.placement is not None else self.spec.config

    def usage(self) -> dict[str, int]:
        """Bytes per device: measured once loaded, estimated while loading."""
        if self.measured is not None and self.measured.measured:
            return {device: b.total for device, b in self.measured.devices.items()}
        if self.placement is not None and self.placement.estimate is not None:
            return {device: b.total for device, b in self.placement.estimate.devices.items()}
        return {}


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
        inventory: InventorySource | None = None,
        limits: Limits | None = None,
        health_interval: float | None = None,
        health_timeout: float = 10.0,
    ) -> None:
        self._spawn = spawn
        self._default_keep_alive = default_keep_alive
        self._max_queue = max_queue
        self._waiting = 0  # leases waiting for a load or a slot
        self._limits = replace(limits or Limits(), max_loaded=max(max_loaded, 1))
        self._inventory = inventory
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self._events: collections.deque[PoolEvent] = collections.deque(maxlen=EVENTS_KEPT)
        self._last_unload: dict[str, str] = {}  # model key -> why its last runner went away
        self._released: list[tuple[float, dict[str, int]]] = []  # (monotonic time, GPU bytes) of stopped runners
        self._loading = asyncio.Lock()  # one load at a time: each plans with the previous one's memory known
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
                yield Runner(entry, entry.process.client)
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
            LoadedRunner(e.spec, e.keep_alive, e.expires_at, e.refs, e.config, e.reason,
                         e.placement.estimate if e.placement else None, e.measured)
            for e in self._entries.values()
            if e.ready
        ]  # fmt: skip

    def events(self) -> list[PoolEvent]:
        """The latest loads and unloads with their reasons, oldest first."""
        return list(self._events)

    def residents(self) -> list[Resident]:
        """The runners now resident (loading, ready or draining), as the planner sees them."""
        return [self._resident(e) for e in self._residents(None)]

    async def plan(self, spec: RunnerSpec) -> PlanView:
        """What loading ``spec`` now would do, without doing it (``/api/plan``). A runner of the same
        model with other parameters would be replaced, so it is planned as gone."""
        inventory = await self._inventory() if self._inventory is not None else None
        current = self._entries.get(spec.model_key)
        entries = [e for e in self._residents(None) if e is not current]
        placement = place(spec.want(), inventory, [self._resident(e) for e in entries], self._limits_now(None))
        names = {str(id(e)): e.spec.name for e in entries}
        loaded = current is not None and current.spec == spec and current.ready
        return PlanView(placement, names, loaded, inventory)

    def _record(self, model: str, action: str, reason: str) -> None:
        self._events.append(PoolEvent(time.time(), model, action, reason))

    # -- bookkeeping (no awaits: each is atomic on the event loop) ---------------------------------
    def _acquire(self, spec: RunnerSpec, keep_alive: float | None | object) -> _Entry:
        if self._closed:
            raise PoolClosed()
        entry = self._entries.get(spec.model_key)
        previous: _Entry | None = None
        reason = "requested"
        if entry is not None and entry.spec != spec:
            previous = entry
            reason = "reload: " + describe_change(entry.spec.config, spec.config)
            self._retire(entry, reason=reason)
            entry = None
        elif spec.model_key in self._last_unload:
            reason = f"requested again after: {self._last_unload[spec.model_key]}"
        if entry is None:
            start_keep_alive = self._default_keep_alive if keep_alive is UNSET else keep_alive
            entry = _Entry(spec=spec, keep_alive=start_keep_alive, reason=reason)  # type: ignore[arg-type]
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

    def _residents(self, loading: _Entry | None) -> list[_Entry]:
        return [e for e in [*self._entries.values(), *self._draining] if e is not loading and not e.stopped.is_set()]

    @staticmethod
    def _resident(e: _Entry) -> Resident:
        return Resident(str(id(e)), e.refs, e.ready and not e.retired, e.keep_alive, e.idle_since, e.usage())

    def _load_finished(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is not None:
            if self._entries.get(entry.spec.model_key) is entry:
                del self._entries[entry.spec.model_key]
            entry.retired = True
            self._stopped(entry)
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
        self._record(entry.spec.name, "unload", reason)
        self._last_unload[entry.spec.model_key] = reason
        entry.stop_task = asyncio.create_task(self._stop(entry), name=f"stop-{entry.spec.name}")
        self._stopping.add(entry.stop_task)
        entry.stop_task.add_done_callback(self._stopping.discard)

    # -- acting on processes ------------------------------------------------------------------------
    async def _place(self, entry: _Entry, ctx_cap: int | None) -> Placement:
        """Plan the load; unload idle runners or wait for busy ones until it fits beside the rest."""
        name = entry.spec.name
        while True:
            inventory = await self._inventory() if self._inventory is not None else None
            residents = self._residents(entry)
            view = [self._resident(e) for e in residents]
            placement = place(entry.spec.want(), inventory, view, self._limits_now(ctx_cap))
            if placement.error is not None and not placement.wait:
                raise InsufficientMemory(placement.error)
            crowded = len(residents) >= self._limits.max_loaded
            if placement.wait:
                log.info("waiting for a runner to become idle", model=name, loaded=len(residents))
                event = asyncio.Event()
                self._room_waiters.append(event)
                await event.wait()
                continue
            if not placement.evict:
                return placement
            why = (f"max loaded models ({self._limits.max_loaded}) reached" if crowded else "not enough memory")
            for key in placement.evict:
                victim = next(e for e in residents if str(id(e)) == key)
                self._retire(victim, reason=f"{why}, making room for {name}")
            await asyncio.gather(*(e.stopped.wait() for e in residents if str(id(e)) in placement.evict))

    def _limits_now(self, ctx_cap: int | None) -> Limits:
        """The planner's limits, with the GPU bytes of runners stopped within ``RELEASE_GRACE``
        seconds counted as free (drivers report freed memory late)."""
        now = time.monotonic()
        self._released = [(t, usage) for t, usage in self._released if now - t < RELEASE_GRACE]
        released: dict[str, int] = {}
        for _, usage in self._released:
            for device, n in usage.items():
                released[device] = released.get(device, 0) + n
        return replace(self._limits, ctx_cap=ctx_cap, released=released)

    async def _load(self, entry: _Entry, previous: _Entry | None) -> None:
        if previous is not None:
            await previous.stopped.wait()
        spec = entry.spec
        async with self._loading:
            process, placement = await self._start(entry)
        entry.measured = process.memory.snapshot()
        self._loaded(entry, placement)
        watcher = asyncio.create_task(self._watch(entry, process), name=f"watch-{spec.name}")
        self._watchers.add(watcher)  # held so it is not collected; it ends with its process
        watcher.add_done_callback(self._watchers.discard)

    async def _start(self, entry: _Entry) -> tuple[RunnerProcess, Placement]:
        """Plan, spawn and wait until ready; on out-of-memory, retry as Ollama does (see the class doc)."""
        spec = entry.spec
        ctx_cap: int | None = None
        evicted_for_oom = False
        while True:
            placement = await self._place(entry, ctx_cap)
            entry.placement = placement
            config = placement.config
            log.info("loading model", model=spec.name, reason=entry.reason, ctx=config.ctx_size, parallel=config.parallel,
                     gpu_layers=config.gpu_layers, estimate=placement.estimate.total if placement.estimate else None,
                     notes=list(placement.notes))  # fmt: skip
            process = self._spawn(config)
            entry.process = process
            try:
                await process.start()
                await process.wait_ready()
                return process, placement
            except RunnerStartError as e:
                await process.stop()
                oom = next((line for line in process.tail if _OOM.search(line)), None)
                if oom is not None:
                    others = [o for o in self._residents(entry) if o.ready and o.refs == 0]
                    smaller = [t for t in SMALLER_CTX if t < config.ctx_per_slot]
                    if others and not evicted_for_oom:
                        evicted_for_oom = True
                        log.warning("out of memory at load, unloading idle runners and retrying", model=spec.name)
                        for other in others:
                            self._retire(other, reason=f"out of memory loading {spec.name}")
                        await asyncio.gather(*(o.stopped.wait() for o in others))
                        continue
                    if spec.auto_ctx and smaller:
                        ctx_cap = smaller[0]
                        log.warning("out of memory at load, retrying with a smaller context", model=spec.name, ctx=ctx_cap)
                        continue
                    log.error("model failed to load", model=spec.name, error=str(e))
                    detail = _detail(e) if oom in str(e) else f"{_detail(e)} ({oom})"
                    raise RunnerStartError(f"llama-server reported out-of-memory during startup: {detail}") from None
                log.error("model failed to load", model=spec.name, error=str(e))
                raise
            except BaseException:
                await asyncio.shield(process.stop())
                raise

    def _loaded(self, entry: _Entry, placement: Placement) -> None:
        measured, estimate = entry.measured, placement.estimate
        log.info("model loaded", model=entry.spec.name, reason=entry.reason,
                 measured=measured.total if measured else None, estimated=estimate.total if estimate else None,
                 estimate_error=estimate_error(estimate, measured))  # fmt: skip
        self._record(entry.spec.name, "load", entry.reason)
        self._last_unload.pop(entry.spec.model_key, None)

    async def _watch(self, entry: _Entry, process: RunnerProcess) -> None:
        """Until the process ends: notice an unexpected exit at once, and a runner that stops answering."""
        misses = 0
        while await process.wait_exit(self._health_interval) is None:
            misses = 0 if await process.health(self._health_timeout) else misses + 1
            if misses >= 2 and not process.stopping:
                log.error("runner hung, replacing it", model=entry.spec.name, pid=process.pid)
                reason, grace = f"runner stopped answering /health (pid {process.pid})", 0.0
                break
        else:
            if process.stopping:
                return
            detail = await process.exit_detail()
            log.error("runner exited unexpectedly", model=entry.spec.name, detail=detail)
            reason, grace = f"runner exited unexpectedly ({detail.split(':', 1)[0]})", None
        self._gone(entry, reason)
        await process.stop(grace=grace)  # kill a hung runner at once; reap and clear the process group
        self._stopped(entry)

    def _gone(self, entry: _Entry, reason: str) -> None:
        """A runner that left without being asked: out of service now; the next request loads anew."""
        if self._entries.get(entry.spec.model_key) is entry:
            del self._entries[entry.spec.model_key]
        self._draining.discard(entry)
        entry.retired = True
        if entry.expiry is not None:
            entry.expiry.cancel()
            entry.expiry = None
        self._record(entry.spec.name, "unload", reason)
        self._last_unload[entry.spec.model_key] = reason

    async def _stop(self, entry: _Entry) -> None:
        try:
            if entry.load_task is not None and not entry.load_task.done():
                with contextlib.suppress(BaseException):
                    await entry.load_task
            if entry.process is not None:
                await entry.process.stop()
        finally:
            self._stopped(entry)

    def _stopped(self, entry: _Entry) -> None:
        """The entry's process is gone (or never started): its GPU memory is being released, and
        loads waiting for room look again."""
        gpu = {device: n for device, n in entry.usage().items() if device != "CPU"}
        if gpu:
            self._released.append((time.monotonic(), gpu))
        entry.stopped.set()
        self._room_changed()


def _detail(error: RunnerStartError) -> str:
    text = str(error)
    prefix = "llama-server process has terminated: "
    return text[len(prefix):] if text.startswith(prefix) else text
