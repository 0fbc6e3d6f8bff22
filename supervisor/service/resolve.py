"""A requested model name → everything a request needs to run it.

``resolve_model`` reads the manifest's layers (or the in-place GGUF) and the GGUF header (and the
projector's, whose encoders give ``vision`` and ``audio``) once per request (each kept while
unchanged: manifests, layer files, headers; a header not parsed before is parsed in a thread); the
Go TEMPLATE is parsed once per distinct text (``go_template``), since every
request for a model renders with the same tree.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LlamasupError, ModelNotFound, StoreError
from ..pool.memory import ModelShape, shape_of
from ..pool.placement import RunnerOptions, plan_runner
from ..pool.pool import RunnerSpec
from ..settings import Settings
from ..store import ModelName, read_gguf_info
from ..store.gguf_info import GGUFInfo, cached_gguf_info
from ..store.index import ModelIndex
from ..templates import TemplateSet, TemplateSyntaxError, parse_ollama_template
from ..templates.capabilities import model_capabilities


@functools.lru_cache(maxsize=64)
def go_template(source: str) -> TemplateSet:
    """A TEMPLATE parsed as Ollama parses it; a stored template that does not parse is a 500."""
    try:
        return parse_ollama_template(source)
    except TemplateSyntaxError as e:
        raise LlamasupError(f"template error: {e}") from None


@dataclass(frozen=True)
class ResolvedModel:
    """A model found by name, with its layers read."""

    name: ModelName
    path: Path
    info: GGUFInfo
    params: dict[str, Any]
    system: str | None
    template: str | None  # the Go TEMPLATE layer; None: llama-server renders the GGUF's template
    messages: list[dict[str, Any]] = field(default_factory=list)
    projector: Path | None = None
    adapters: tuple[Path, ...] = ()
    capabilities: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return self.info.architecture or ""

    def missing(self, *needed: str) -> list[str]:
        return [c for c in needed if c not in self.capabilities]


async def resolve_model(models: ModelIndex, requested: str) -> ResolvedModel:
    """The model ``requested`` names, or Ollama's 404 (``model '<x>' not found``).

    The store lookups are quick (parsed manifests are kept); a GGUF header not parsed before is
    parsed in a thread, since a large vocabulary takes seconds and would stall every stream."""
    if not requested.strip():
        raise ModelNotFound("")
    ref = models.find(ModelName.parse(requested))
    if ref is None:
        raise ModelNotFound(requested)
    files = models.files(ref)
    info = cached_gguf_info(files.weights)
    if info is None:
        info = await asyncio.to_thread(read_gguf_info, files.weights)
    projector = await _projector_info(files.projectors[0]) if files.projectors else None
    caps = model_capabilities(info, has_projector=bool(files.projectors), go_template=files.template, projector=projector)
    return ResolvedModel(
        name=ref.name,
        path=files.weights,
        info=info,
        params=files.params,
        system=files.system,
        template=files.template,
        messages=files.messages,
        projector=files.projectors[0] if files.projectors else None,
        adapters=files.adapters,
        capabilities=tuple(caps),
    )


async def _projector_info(path: Path) -> GGUFInfo | None:
    """A projector's header (which media it encodes); None when it cannot be read, which the runner
    reports when it loads."""
    try:
        return cached_gguf_info(path) or await asyncio.to_thread(read_gguf_info, path)
    except StoreError:
        return None


@functools.lru_cache(maxsize=64)
def _shape(info: GGUFInfo) -> ModelShape:
    return shape_of(info)


def slots_for(model: ResolvedModel, options: RunnerOptions, settings: Settings) -> int:
    """Parallel slots: the operator's per-model setting, else the model's ``num_parallel`` parameter,
    else ``OLLAMA_NUM_PARALLEL``; always 1 for embedding models, as Ollama does (and rerankers)."""
    if "embedding" in model.capabilities or "rerank" in model.capabilities:
        return 1
    for name, n in settings.model_parallel:
        parsed = ModelName.try_parse(name)
        if parsed is not None and parsed.display == model.name.display:
            return n
    if options.num_parallel and options.num_parallel > 0:
        return options.num_parallel
    return settings.num_parallel


def runner_mode(model: ResolvedModel) -> str:
    """How the model's runner is started: ``embed``, ``rerank`` or ``generate``."""
    if "rerank" in model.capabilities:
        return "rerank"
    return "embed" if "embedding" in model.capabilities else "generate"


def runner_spec(
    model: ResolvedModel, options: RunnerOptions, settings: Settings, *, repack: bool, default_ctx: int | None
) -> RunnerSpec:
    """What to run for ``model`` with the request's runner options (reads the projector's size)."""
    config = plan_runner(
        model_path=model.path,
        alias=model.name.display,
        train_ctx=model.info.context_length,
        options=options,
        settings=settings,
        projector=model.projector,
        adapters=model.adapters,
        repack=repack,
        default_ctx=default_ctx,
        parallel=slots_for(model, options, settings),
        mode=runner_mode(model),
    )
    auto_ctx = not (options.num_ctx and options.num_ctx > 0) and not settings.context_length
    projector_bytes = model.projector.stat().st_size if model.projector is not None else 0
    return RunnerSpec(
        model_key=str(model.path),
        name=model.name.display,
        config=config,
        shape=_shape(model.info),
        auto_ctx=auto_ctx,
        projector_bytes=projector_bytes,
    )
