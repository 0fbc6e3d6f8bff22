"""Where and how a model's runner runs (pure decisions, table-tested).

Launch parameters (reference/ollama-api.md §6.3): ``num_ctx`` is the per-request (per-slot) context;
the runner gets ``-c num_ctx x num_parallel`` and ``-np num_parallel``. ``num_ctx`` comes from the
request or the model's parameters, else ``OLLAMA_CONTEXT_LENGTH``, else a default tiered by the GPU
memory of the machine (4096, 32768 from 23 GiB, 262144 from 47 GiB); it is at least 4 and never
exceeds the model's training context.

Fitting (``place``): the estimate of ``pool.memory`` is compared with the memory each device has for
a new runner: what it reports free (plus what runners that would be unloaded hold), never more than
its total minus what the runners that stay hold, minus a margin (1 GiB, or a tenth of a small
device) and ``OLLAMA_GPU_OVERHEAD`` per GPU. Layers go to one GPU when the model fits on one (the
one with most room), across all GPUs in proportion to their room when not (or always with
``OLLAMA_SCHED_SPREAD``), and else as many as fit, the rest on the CPU. When the load does not fit
beside the loaded runners, idle runners are unloaded in Ollama's order until it does; when it would
only fit once busy runners are idle, the load waits; an automatic context is reduced (to 32768,
then 4096) only when the model does not fit even on an empty machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..runner.command import RunnerConfig
from ..runner.memlog import HOST
from ..settings import Settings
from .hardware import Inventory
from .memory import Estimate, ModelShape, estimate_memory

DEFAULT_NUM_CTX = 4096
MIN_NUM_CTX = 4
GIB = 1 << 30
CTX_TIERS = ((47 * GIB, 262144), (23 * GIB, 32768))  # total VRAM -> default num_ctx (Ollama's tiers)
SMALLER_CTX = (32768, 4096)  # an automatic context that does not fit is retried at these sizes
DEFAULT_MAX_LOADED = 3  # Ollama's automatic OLLAMA_MAX_LOADED_MODELS per GPU, and on CPU


@dataclass(frozen=True)
class RunnerOptions:
    """The Ollama options that change how a runner is launched (a change means a reload)."""

    num_ctx: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    num_thread: int | None = None
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_parallel: int | None = None  # llamasup's own (Ollama #4894): a Modelfile PARAMETER


def default_num_ctx(settings: Settings, inventory: Inventory | None) -> int:
    """``OLLAMA_CONTEXT_LENGTH``, else Ollama's default for this machine's GPU memory."""
    if settings.context_length:
        return settings.context_length
    if inventory is None:
        return DEFAULT_NUM_CTX
    vram = sum(max(g.total - settings.gpu_overhead, 0) for g in inventory.gpus)
    return next((ctx for floor, ctx in CTX_TIERS if vram >= floor), DEFAULT_NUM_CTX)


def effective_num_ctx(requested: int | None, settings: Settings, train_ctx: int | None, default: int | None = None) -> int:
    n = requested if requested and requested > 0 else (default or settings.context_length or DEFAULT_NUM_CTX)
    n = max(n, MIN_NUM_CTX)
    if train_ctx:
        n = min(n, train_ctx)
    return n


def plan_runner(
    *,
    model_path: Path,
    alias: str,
    train_ctx: int | None,
    options: RunnerOptions,
    settings: Settings,
    projector: Path | None = None,
    adapters: tuple[Path, ...] = (),
    repack: bool = True,
    default_ctx: int | None = None,
    parallel: int | None = None,
    mode: str = "generate",
) -> RunnerConfig:
    """The requested launch parameters; ``parallel`` (slots) defaults to ``OLLAMA_NUM_PARALLEL``.

    Embedding and rerank runners (``mode``) take a batch and micro-batch of the whole slot context:
    llama-server must fit each input into one micro-batch (reference/llama-server.md §3.5), and
    inputs are cut to the slot context."""
    num_ctx = effective_num_ctx(options.num_ctx, settings, train_ctx, default_ctx)
    slots = max(parallel or settings.num_parallel, 1)
    batch = options.num_batch if options.num_batch and options.num_batch > 0 else None
    if mode != "generate":
        batch = max(batch or 0, num_ctx)
    return RunnerConfig(
        model_path=model_path,
        alias=alias,
        ctx_size=num_ctx * slots,
        parallel=slots,
        gpu_layers=options.num_gpu if options.num_gpu is not None and options.num_gpu >= 0 else None,
        main_gpu=options.main_gpu if options.main_gpu is not None and options.main_gpu >= 0 else None,
        mmap=options.use_mmap,
        threads=options.num_thread if options.num_thread and options.num_thread > 0 else settings.runner_threads,
        batch_size=batch,
        flash_attention=settings.flash_attention,
        kv_cache_type=settings.kv_cache_type,
        cache_ram_mib=settings.cache_ram_mib,
        projector=projector,
        adapters=adapters,
        repack=repack,
        mode=mode,
    )


_CHANGE_NAMES = {
    "ctx_size": "num_ctx",
    "parallel": "num_parallel",
    "gpu_layers": "num_gpu",
    "main_gpu": "main_gpu",
    "mmap": "use_mmap",
    "threads": "num_thread",
    "batch_size": "num_batch",
    "projector": "projector",
    "adapters": "adapters",
    "model_path": "model",
}


def describe_change(old: RunnerConfig, new: RunnerConfig) -> str:
    """Why a runner with ``old`` parameters cannot serve a request for ``new`` ones, in Ollama's terms."""
    parts = []
    for attr, name in _CHANGE_NAMES.items():
        before, after = getattr(old, attr), getattr(new, attr)
        if attr == "ctx_size":
            before, after = old.ctx_per_slot, new.ctx_per_slot
        if before != after:
            parts.append(f"{name} {_show(before)} -> {_show(after)}")
    return ", ".join(parts) or "launch parameters changed"


def _show(value: object) -> str:
    if value is None:
        return "auto"
    if isinstance(value, Path):
        return value.name
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def max_loaded_models(setting: int, gpus: int = 0) -> int:
    """``OLLAMA_MAX_LOADED_MODELS``: the setting, or 3 per GPU (3 on a CPU-only host) when 0."""
    return setting if setting > 0 else DEFAULT_MAX_LOADED * max(gpus, 1)


# -- eviction -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    """A loaded runner as eviction and fitting see it."""

    key: str
    refs: int
    ready: bool
    keep_alive: float | None  # None = forever
    idle_since: float  # monotonic time of its last release (load time if never leased)
    usage: Mapping[str, int] = field(default_factory=dict)  # device -> bytes (measured, else estimated)


def eviction_order(residents: Sequence[Resident]) -> list[str]:
    """Idle, ready runners in the order Ollama unloads them: shortest keep-alive first (forever
    last), then the one idle longest."""
    idle = [r for r in residents if r.refs == 0 and r.ready]
    forever = float("inf")
    idle.sort(key=lambda r: (forever if r.keep_alive is None else r.keep_alive, r.idle_since))
    return [r.key for r in idle]


# -- fitting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    """A load as the planner sees it: the requested parameters and what the model is made of."""

    config: RunnerConfig  # requested; gpu_layers None = as many as fit
    shape: ModelShape | None  # None: unknown (memory is not planned, only the count of runners)
    auto_ctx: bool = False  # num_ctx was not chosen by the request, the model or the operator
    projector_bytes: int = 0


@dataclass(frozen=True)
class Limits:
    max_loaded: int = DEFAULT_MAX_LOADED
    gpu_overhead: int = 0  # OLLAMA_GPU_OVERHEAD, bytes per GPU
    spread: bool = False  # OLLAMA_SCHED_SPREAD
    ctx_cap: int | None = None  # per-slot context ceiling after an out-of-memory failure
    # GPU bytes of runners stopped moments ago, which the driver may not report free yet
    released: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    """The planner's answer: what to launch, what to unload first, or why it cannot be done."""

    config: RunnerConfig  # what to launch (gpu_layers and tensor_split decided)
    estimate: Estimate | None
    available: Mapping[str, int]  # device -> bytes the runner may use, after the evictions
    evict: tuple[str, ...] = ()  # idle runners to unload first, in this order
    wait: bool = False  # fits only once busy runners are idle: wait for one, then plan again
    error: str | None = None  # does not fit even on an empty machine
    notes: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.error is None and not self.wait


def margin(total: int) -> int:
    """Memory left free on a device: 1 GiB, or a tenth of a small device."""
    return min(GIB, total // 10)


def available(
    inventory: Inventory,
    residents: Sequence[Resident],
    staying: Sequence[Resident],
    overhead: int,
    released: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Bytes per device for a new runner when only ``staying`` of ``residents`` remain loaded
    (``released``: bytes per GPU that stopped runners held, counted as free until the device says so;
    never more than the total minus what stays)."""
    leaving = [r for r in residents if r not in staying]

    def room(device: str, free: int, total: int) -> int:
        freed = sum(r.usage.get(device, 0) for r in leaving) + (released or {}).get(device, 0)
        held = sum(r.usage.get(device, 0) for r in staying)
        return max(min(free + freed, total - held) - margin(total), 0)

    out = {HOST: room(HOST, inventory.host_free, inventory.host_total)}
    for gpu in inventory.gpus:
        out[gpu.id] = max(room(gpu.id, gpu.free, gpu.total) - overhead, 0)
    return out


def _estimate(want: Want, config: RunnerConfig, gpus: tuple[str, ...], split: dict[str, float] | None) -> Estimate:
    assert want.shape is not None
    n_layers = want.shape.n_layer + 1
    ngl = 0 if not gpus else (n_layers if config.gpu_layers is None else min(config.gpu_layers, n_layers))
    return estimate_memory(
        want.shape,
        n_ctx=config.ctx_size,
        n_seq=config.parallel,
        kv_type=config.kv_cache_type or "f16",
        flash_attention=config.flash_attention,
        n_batch=config.batch_size or 2048,
        n_ubatch=config.batch_size or 512,
        gpu_layers=ngl,
        split=split,
        gpus=gpus,
        projector_bytes=want.projector_bytes,
        mmap=config.mmap is not False,
    )


def _fits(estimate: Estimate, room: Mapping[str, int], *, gpus_only: bool = False) -> bool:
    return all(b.total <= room.get(d, 0) for d, b in estimate.devices.items() if not (gpus_only and d == HOST))


def _split_config(config: RunnerConfig, inventory: Inventory, split: dict[str, float], ngl: int) -> RunnerConfig:
    shares = tuple(round(split.get(g.id, 0.0), 4) for g in inventory.gpus) if len(inventory.gpus) > 1 else ()
    return replace(config, gpu_layers=ngl, tensor_split=shares)


def _layout(want: Want, config: RunnerConfig, inventory: Inventory, room: Mapping[str, int], spread: bool) -> tuple[RunnerConfig, Estimate]:
    """Layers per device for ``config``: the best layout, whether or not it fits in ``room``."""
    ids = tuple(g.id for g in inventory.gpus)
    if not ids or config.gpu_layers == 0:
        cpu = replace(config, gpu_layers=0) if ids else config
        return cpu, _estimate(want, cpu, (), None)
    assert want.shape is not None
    n_layers = want.shape.n_layer + 1
    if config.main_gpu is not None and config.main_gpu < len(ids):
        only = {ids[config.main_gpu]: 1.0}
        return config, _estimate(want, config, ids, only)
    total_room = sum(room.get(i, 0) for i in ids) or 1
    spread_split = {i: room.get(i, 0) / total_room for i in ids}
    if config.gpu_layers is not None:  # the user's num_gpu, placed like an automatic one
        ngl = min(config.gpu_layers, n_layers)
        return _split_config(config, inventory, spread_split, ngl), _estimate(want, config, ids, spread_split)
    full = replace(config, gpu_layers=n_layers)
    if not spread:
        for gpu_id in sorted(ids, key=lambda i: -room.get(i, 0)):
            single = {gpu_id: 1.0}
            estimate = _estimate(want, full, ids, single)
            if _fits(estimate, room, gpus_only=True):
                return _split_config(config, inventory, single, n_layers), estimate
    estimate = _estimate(want, full, ids, spread_split)
    if _fits(estimate, room, gpus_only=True):
        return _split_config(config, inventory, spread_split, n_layers), estimate
    lo, hi = 0, n_layers - 1  # the most layers whose GPU part fits (binary search; 0 always "fits")
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(_estimate(want, replace(config, gpu_layers=mid), ids, spread_split), room, gpus_only=True):
            lo = mid
        else:
            hi = mid - 1
    partial = _split_config(config, inventory, spread_split, lo)
    return partial, _estimate(want, partial, ids, spread_split)


def context_candidates(want: Want, cap: int | None) -> list[int]:
    """Per-slot contexts to try, largest first: the requested one, then smaller automatic ones."""
    ctx = want.config.ctx_per_slot if cap is None else min(want.config.ctx_per_slot, cap)
    tiers = [t for t in SMALLER_CTX if t < ctx] if want.auto_ctx else []
    return [ctx, *tiers]


def place(want: Want, inventory: Inventory | None, residents: Sequence[Resident], limits: Limits) -> Placement:
    """Where the runner goes, which idle runners are unloaded first, or why it cannot load."""
    order = eviction_order(residents)
    busy = [r for r in residents if r.key not in order]
    notes: list[str] = []
    last: Placement | None = None
    for per_slot in context_candidates(want, limits.ctx_cap):
        config = replace(want.config, ctx_size=per_slot * want.config.parallel)
        if per_slot != want.config.ctx_per_slot:
            notes.append(f"context reduced from {want.config.ctx_per_slot} to {per_slot} to fit")
        for k in range(len(order) + 1):
            staying = [r for r in residents if r.key not in order[:k]]
            if len(staying) >= limits.max_loaded:
                continue
            candidate = _try(want, config, inventory, residents, staying, limits, tuple(order[:k]), tuple(notes))
            if candidate.error is None:
                return candidate
            last = candidate
        if busy or len(residents) >= limits.max_loaded:
            alone = _try(want, config, inventory, residents, [], limits, tuple(order), tuple(notes))
            if alone.error is None:
                return replace(alone, evict=tuple(order), wait=True)
            last = alone
    assert last is not None
    return last


def _try(
    want: Want,
    config: RunnerConfig,
    inventory: Inventory | None,
    residents: Sequence[Resident],
    staying: Sequence[Resident],
    limits: Limits,
    evict: tuple[str, ...],
    notes: tuple[str, ...],
) -> Placement:
    if want.shape is None or inventory is None:
        return Placement(config, None, {}, evict=evict, notes=notes)
    room = available(inventory, residents, staying, limits.gpu_overhead, limits.released)
    launched, estimate = _layout(want, config, inventory, room, limits.spread)
    layer_note: tuple[str, ...] = ()
    if inventory.gpus:
        layer_note = (f"{estimate.gpu_layers}/{estimate.total_layers} layers on GPU",)
    if _fits(estimate, room):
        return Placement(launched, estimate, room, evict=evict, notes=notes + layer_note)
    if config.gpu_layers is not None and estimate.host <= room.get(HOST, 0):  # the user's num_gpu is obeyed
        warning = f"num_gpu {config.gpu_layers} does not fit: " + does_not_fit(estimate, room, config)
        return Placement(launched, estimate, room, evict=evict, notes=notes + layer_note + (warning,))
    return Placement(launched, estimate, room, evict=evict, error=does_not_fit(estimate, room, config), notes=notes + layer_note)


def human_bytes(n: float) -> str:
    """Sizes as Ollama's ``format.HumanBytes2`` prints them (binary units, one decimal)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def does_not_fit(estimate: Estimate, room: Mapping[str, int], config: RunnerConfig) -> str:
    """What did not fit, where, and what it is made of."""
    parts = []
    for device, need in estimate.devices.items():
        have = room.get(device, 0)
        if need.total <= have:
            continue
        what = "system memory" if device == HOST else f"{device} memory"
        parts.append(
            f"model requires more {what} ({human_bytes(need.total)}) than is available ({human_bytes(have)}):"
            f" weights {human_bytes(need.model)}, KV cache {human_bytes(need.kv)}"
            f" ({config.ctx_per_slot} tokens x {config.parallel} slots), compute {human_bytes(need.compute + need.output)}"
            + (f", projector {human_bytes(need.projector)}" if need.projector else "")
        )
    return "; ".join(parts)


def suggest(want: Want, inventory: Inventory | None, limits: Limits) -> list[str]:
    """Changes that would make ``want`` fit on this machine with nothing else loaded."""
    if want.shape is None or inventory is None:
        return []
    config = want.config

    def fits(changed: RunnerConfig) -> bool:
        p = place(replace(want, config=changed, auto_ctx=False), inventory, [], limits)
        return p.fits and (p.estimate is None or _fits(p.estimate, p.available))

    out = []
    per_slot = config.ctx_per_slot // 2
    while per_slot >= 256:
        if fits(replace(config, ctx_size=per_slot * config.parallel)):
            out.append(f"num_ctx {per_slot} (a smaller context)")
            break
        per_slot //= 2
    for kv in ("q8_0", "q4_0"):
        if (config.kv_cache_type or "f16") in ("f16", "f32", "q8_0") and kv != config.kv_cache_type:
            if fits(replace(config, kv_cache_type=kv, flash_attention=True if config.flash_attention is None else config.flash_attention)):
                out.append(f"OLLAMA_KV_CACHE_TYPE={kv} (a quantized KV cache)")
                break
    if config.parallel > 1 and fits(replace(config, ctx_size=config.ctx_per_slot, parallel=1)):
        out.append("num_parallel 1 (fewer parallel slots)")
    if inventory.gpus and config.gpu_layers is not None and fits(replace(config, gpu_layers=None)):
        out.append("num_gpu unset (as many layers on GPU as fit, the rest on the CPU)")
    return out
