"""The llama-server command line and environment for one runner (pure).

Every parameter that decides memory use is explicit (``-c``, ``-np``, ``-ngl``, ``--tensor-split``,
``--cache-ram``) and llama.cpp's own fitting is off (``--fit off``), so what runs is what the pool's
planner chose (``pool/placement.py``); ``-ngl auto`` with fitting off means every layer. Logging
is set to verbosity 4 so the buffer-size lines
(reference/llama-server.md §6.1) reach the supervisor, with level prefixes to map onto structlog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Variables that would silently reconfigure a child (reference/llama-server.md §0.9-0.10).
_SCRUB_PREFIXES = ("LLAMA_ARG_",)
_SCRUB_NAMES = frozenset({"LLAMA_SERVER_ROUTER_PORT", "LLAMA_API_KEY", "LLAMA_MEDIA_MARKER"})
OWNER_ENV = "LLAMASUP_RUNNER_OWNER"  # "<pid>:<create time>" of the supervisor; finds strays later


@dataclass(frozen=True)
class RunnerConfig:
    """Launch parameters of one llama-server; two equal configs can share a process."""

    model_path: Path
    alias: str
    ctx_size: int  # total context (-c) = per-slot context x parallel
    parallel: int = 1
    gpu_layers: int | None = None  # None = "auto" (all layers: fitting is off)
    tensor_split: tuple[float, ...] = ()  # share of the offloaded layers per GPU, in device order
    main_gpu: int | None = None  # Ollama's main_gpu: the whole model on that GPU (--split-mode none)
    mmap: bool | None = None  # Ollama's use_mmap; False: --load-mode none
    threads: int = 0  # 0 = llama-server's default
    batch_size: int | None = None
    flash_attention: bool | None = None
    kv_cache_type: str = ""
    cache_ram_mib: int = 1024
    projector: Path | None = None  # --mmproj (a projector layer, or mmproj*.gguf beside an in-place model)
    adapters: tuple[Path, ...] = ()  # --lora, each
    repack: bool = True  # False: --no-repack (CPUs where repacking crashes; pool/hardware.py)
    mode: str = "generate"  # "embed": --embeddings; "rerank": --reranking (both with the model's pooling)

    @property
    def ctx_per_slot(self) -> int:
        return self.ctx_size // max(self.parallel, 1)


def build_argv(binary: Path, config: RunnerConfig, socket_path: Path) -> list[str]:
    """The command line; the runner listens on ``socket_path`` (llama-server treats ``*.sock`` as Unix)."""
    argv = [
        str(binary),
        "--model", str(config.model_path),
        "--alias", config.alias,
        "--host", str(socket_path),
        "--ctx-size", str(config.ctx_size),
        "--parallel", str(config.parallel),
        "--n-gpu-layers", "auto" if config.gpu_layers is None or config.gpu_layers < 0 else str(config.gpu_layers),
        "--fit", "off",
        "--cache-ram", str(config.cache_ram_mib),
        "--no-webui",
        "--offline",
        "--jinja",
        "--metrics",
        "--log-verbosity", "4",
        "--log-prefix",
        "--log-colors", "off",
    ]  # fmt: skip
    if config.tensor_split:
        argv += ["--tensor-split", ",".join(f"{share:g}" for share in config.tensor_split)]
    if config.main_gpu is not None:
        argv += ["--split-mode", "none", "--main-gpu", str(config.main_gpu)]
    if config.mmap is False:
        argv += ["--load-mode", "none"]
    if config.projector is not None:
        argv += ["--mmproj", str(config.projector)]
    for adapter in config.adapters:
        argv += ["--lora", str(adapter)]
    if not config.repack:
        argv.append("--no-repack")
    if config.threads > 0:
        argv += ["--threads", str(config.threads)]
    if config.mode == "embed":
        argv.append("--embeddings")
    elif config.mode == "rerank":
        argv.append("--reranking")
    if config.batch_size:
        argv += ["--batch-size", str(config.batch_size), "--ubatch-size", str(config.batch_size)]
    if config.flash_attention is not None:
        argv += ["--flash-attn", "on" if config.flash_attention else "off"]
    if config.kv_cache_type:
        argv += ["--cache-type-k", config.kv_cache_type, "--cache-type-v", config.kv_cache_type]
    return argv


def media_marker(token: str) -> str:
    """The text that stands for one image in a prompt sent to ``/completion``.

    It is random per supervisor process (``token``), so text a user types can never be taken for an
    image, and fixed for every runner it starts, so prompts can be built before a runner exists.
    """
    return f"<__llamasup_media_{token}__>"


def child_env(parent: Mapping[str, str], *, owner: str, config_home: Path, marker: str) -> dict[str, str]:
    """The parent's environment without llama.cpp overrides, marked with the owning supervisor.

    ``XDG_CONFIG_HOME`` points at a llamasup-owned directory so a user-level
    ``~/.config/llama.cpp/config.ini`` cannot change how runners behave; ``LLAMA_MEDIA_MARKER`` is
    the supervisor's image marker (``media_marker``).
    """
    env = {k: v for k, v in parent.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES}
    env[OWNER_ENV] = owner
    env["XDG_CONFIG_HOME"] = str(config_home)
    env["LLAMA_MEDIA_MARKER"] = marker
    return env
