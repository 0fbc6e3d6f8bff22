"""Embeddings and rerank: resolve the model, check what it can do, lease its runner, one request.

A batch of inputs goes to llama-server in one request (``/v1/embeddings``, which also counts the
tokens), raw (``embd_normalize: -1``): llamasup normalises, as Ollama does, so that ``dimensions``
can cut a vector and normalise it again, and the legacy route can keep raw vectors where Ollama
does. Inputs are only tokenized when llama-server says one is too long for the slot context: then,
with ``truncate`` (the default), each is cut to fit (its special tokens kept) and the batch is sent
again as tokens; without it the request is refused with Ollama's message.

Rerank models (GGUF pooling type rank) run with ``--reranking``; ``/rerank`` scores every
(query, document) pair and sorts them, and llamasup passes its scores through unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from ..errors import BadRequest, ContextOverflow, LlamasupError, MissingCapability, ModelNotFound, RunnerHTTPError
from ..pool.pool import UNSET, Runner, RunnerPool
from ..protocol import ollama as wire
from ..protocol.embed import Embedded, EmbedRequest, Ranked, RerankRequest, Vectors
from ..settings import Settings
from ..store.index import ModelIndex
from ..templates.gostrconv import quote
from .calls import post
from .resolve import ResolvedModel, resolve_model, runner_spec

log = structlog.get_logger("supervisor.embedding")
# Architectures whose vectors Ollama's legacy /api/embeddings returns unnormalised (§2.5).
RAW_LEGACY = frozenset({"bert", "nomic-bert"})
TOO_LONG = "the input length exceeds the context length"
CANNOT_CUT = "input exceeds maximum context length and cannot be truncated further"
_VERBS = {"embedding": "embeddings", "rerank": "rerank"}


@dataclass(frozen=True)
class _Leased:
    runner: Runner
    model: ResolvedModel
    n_ctx: int  # the slot context: the longest input
    start: int  # monotonic ns when the request began
    load_ns: int

    def elapsed(self) -> int:
        return time.monotonic_ns() - self.start


class EmbedService:
    def __init__(self, settings: Settings, models: ModelIndex, pool: RunnerPool, *, repack: bool, default_ctx: int | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.models = models
        self.pool = pool
        self.repack = repack  # False: runners get --no-repack (pool.hardware.repack_is_safe)
        self.default_ctx = default_ctx

    async def _model(self, name: str) -> ResolvedModel:
        """The model, or Ollama's embed 404s (``model '' not found``; ``model "x" not found, try…``)."""
        try:
            return await resolve_model(self.models, name)
        except ModelNotFound:
            if not name.strip():
                raise
            raise ModelNotFound(quote(name), template="model {name} not found, try pulling it first") from None  # Go's %q

    @asynccontextmanager
    async def _lease(self, name: str, capability: str, options: dict[str, Any], keep_alive: Any) -> AsyncIterator[_Leased]:
        """The model's runner, leased, once the model is found and can do ``capability``."""
        start = time.monotonic_ns()
        model = await self._model(name)
        seconds = wire.parse_keep_alive(keep_alive, UNSET)
        if capability not in model.capabilities:
            raise MissingCapability(f'"{name}" does not support {_VERBS[capability]}')
        resolved = wire.resolve_options(model.params, options)
        spec = runner_spec(model, resolved.runner, self.settings, repack=self.repack, default_ctx=self.default_ctx)
        async with self.pool.lease(spec, seconds) as runner:
            yield _Leased(runner, model, spec.config.ctx_per_slot, start, time.monotonic_ns() - start)

    # -- embeddings -----------------------------------------------------------------------------------
    async def embed(self, req: EmbedRequest) -> Embedded:
        async with self._lease(req.model, "embedding", req.options, req.keep_alive) as leased:
            if not req.inputs:
                return Embedded(np.zeros((0, 0), np.float32), 0, leased.elapsed(), leased.load_ns)
            vectors, tokens = await self._vectors(leased.runner, req.inputs, leased.n_ctx, req.truncate)
        if not np.isfinite(vectors).all():
            raise LlamasupError("embedding contains NaN or Inf values")
        if req.normalize or leased.model.family not in RAW_LEGACY:
            vectors = l2_normalize(vectors)
            if 0 < req.dimensions < vectors.shape[1]:
                vectors = l2_normalize(vectors[:, : req.dimensions])
        return Embedded(vectors, tokens, leased.elapsed(), leased.load_ns)

    async def _vectors(self, runner: Runner, inputs: list[str], n_ctx: int, truncate: bool) -> tuple[Vectors, int]:
        """Raw vectors of ``inputs`` (one request), and the tokens they took."""
        body: dict[str, Any] = {"input": inputs, "encoding_format": "float", "embd_normalize": -1}
        try:
            data = await post(runner, "/v1/embeddings", body)
        except RunnerHTTPError as e:
            if not _too_long(e):
                raise
            if not truncate:
                raise BadRequest(TOO_LONG) from None
            body["input"] = await asyncio.gather(*(_fit(runner, text, n_ctx) for text in inputs))
            data = await post(runner, "/v1/embeddings", body)
        rows = sorted(data["data"], key=lambda d: int(d["index"]))
        return _matrix([row["embedding"] for row in rows]), int((data.get("usage") or {}).get("prompt_tokens", 0))

    # -- rerank ---------------------------------------------------------------------------------------
    async def rerank(self, req: RerankRequest) -> Ranked:
        async with self._lease(req.model, "rerank", req.options, req.keep_alive) as leased:
            if not req.documents:
                return Ranked([], 0, leased.elapsed(), leased.load_ns)
            body = {"query": req.query, "documents": req.documents, "top_n": req.top_n or len(req.documents)}
            try:
                data = await post(leased.runner, "/rerank", body)
            except RunnerHTTPError as e:
                if _too_long(e):
                    raise BadRequest(TOO_LONG) from None
                raise
        results = [(int(r["index"]), float(r["relevance_score"])) for r in data["results"]]
        results.sort(key=lambda r: -r[1])  # llama-server sorts already; the order is the contract
        tokens = int((data.get("usage") or {}).get("prompt_tokens", 0))
        return Ranked(results, tokens, leased.elapsed(), leased.load_ns)


def l2_normalize(vectors: Vectors) -> Vectors:
    """Each row divided by its Euclidean norm (a zero row stays zero), as Ollama normalises."""
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    out: Vectors = (vectors * scale[:, None]).astype(np.float32)
    return out


def _matrix(rows: list[list[float | None]]) -> Vectors:
    """The vectors as float32 rows; llama-server writes NaN and Inf as JSON ``null``."""
    try:
        return np.array(rows, dtype=np.float32)
    except TypeError:
        return np.array([[np.nan if x is None else x for x in row] for row in rows], dtype=np.float32)


def _too_long(error: RunnerHTTPError) -> bool:
    """llama-server's two ways of saying an input does not fit: the slot context, or the batch."""
    return isinstance(error, ContextOverflow) or "too large to process" in error.message


async def _fit(runner: Runner, text: str, n_ctx: int) -> list[int]:
    """``text`` as llama-server tokenizes an embedding input, cut to ``n_ctx`` tokens with the
    special tokens it starts and ends with (BOS/CLS, EOS/SEP) kept."""
    tokens: list[int] = (await post(runner, "/tokenize", {"content": text, "add_special": True, "parse_special": True}))["tokens"]  # fmt: skip
    if len(tokens) <= n_ctx:
        return tokens
    plain: list[int] = (await post(runner, "/tokenize", {"content": text, "add_special": False, "parse_special": True}))["tokens"]  # fmt: skip
    head = next((i for i in range(len(tokens) - len(plain) + 1) if tokens[i : i + len(plain)] == plain), None)
    if head is None:  # the specials change the text's tokens: keep the start
        return tokens[:n_ctx]
    prefix, suffix = tokens[:head], tokens[head + len(plain) :]
    room = n_ctx - len(prefix) - len(suffix)
    if room <= 0:
        raise BadRequest(CANNOT_CUT)
    log.info("truncating input which exceeds context length", tokens=len(tokens), kept=n_ctx)
    return prefix + plain[:room] + suffix
