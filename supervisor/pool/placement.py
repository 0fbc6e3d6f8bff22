"""Launch parameters for a model's runner (pure).

Ollama semantics (reference/ollama-api.md §6.3): ``num_ctx`` is the per-request (per-slot) context;
the runner gets ``-c num_ctx x num_parallel`` and ``-np num_parallel``. ``num_ctx`` defaults to
``OLLAMA_CONTEXT_LENGTH`` or 4096, is at least 4, and never exceeds the model's training context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runner.command import RunnerConfig
from ..settings import Settings

DEFAULT_NUM_CTX = 4096
MIN_NUM_CTX = 4


@dataclass(frozen=True)
class RunnerOptions:
    """The Ollama options that change how a runner is launched (a change means a reload)."""

    num_ctx: int | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    num_thread: int | None = None


def effective_num_ctx(requested: int | None, settings: Settings, train_ctx: int | None) -> int:
    n = requested if requested and requested > 0 else (settings.context_length or DEFAULT_NUM_CTX)
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
) -> RunnerConfig:
    num_ctx = effective_num_ctx(options.num_ctx, settings, train_ctx)
    parallel = max(settings.num_parallel, 1)
    return RunnerConfig(
        model_path=model_path,
        alias=alias,
        ctx_size=num_ctx * parallel,
        parallel=parallel,
        gpu_layers=options.num_gpu if options.num_gpu is not None and options.num_gpu >= 0 else None,
        threads=options.num_thread if options.num_thread and options.num_thread > 0 else settings.runner_threads,
        batch_size=options.num_batch if options.num_batch and options.num_batch > 0 else None,
        flash_attention=settings.flash_attention,
        kv_cache_type=settings.kv_cache_type,
        cache_ram_mib=settings.cache_ram_mib,
        projector=projector,
        adapters=adapters,
        repack=repack,
    )


DEFAULT_MAX_LOADED = 3  # Ollama's automatic OLLAMA_MAX_LOADED_MODELS per GPU, and on CPU


def max_loaded_models(setting: int, gpus: int = 0) -> int:
    """``OLLAMA_MAX_LOADED_MODELS``: the setting, or 3 per GPU (3 on a CPU-only host) when 0."""
    return setting if setting > 0 else DEFAULT_MAX_LOADED * max(gpus, 1)


@dataclass(frozen=True)
class Resident:
    """A loaded runner as eviction sees it."""

    key: str
    refs: int
    ready: bool
    keep_alive: float | None  # None = forever
    idle_since: float  # monotonic time of its last release (load time if never leased)


def eviction_victim(residents: list[Resident]) -> str | None:
    """Which runner to unload to make room, in Ollama's order: among idle, ready runners, the one
    with the shortest keep-alive (forever last), then the one idle longest. ``None``: every runner
    is busy or loading, so the load must wait for one to become idle."""
    idle = [r for r in residents if r.refs == 0 and r.ready]
    if not idle:
        return None
    forever = float("inf")
    return min(idle, key=lambda r: (forever if r.keep_alive is None else r.keep_alive, r.idle_since)).key
