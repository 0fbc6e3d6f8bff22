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
from typing import Any

import numpy as np
import structlog

from ..errors import BadRequest, ContextOverflow, LlamasupError, MissingCapability, ModelNotFound, RunnerHTTPError
from ..pool.hardware import cpu_flags, repack_is_safe
from ..pool.pool import UNSET, Runner, RunnerPool, RunnerSpec
from ..protocol import ollama as wire
from ..protocol.embed import Embedded, EmbedRequest, Ranked, RerankRequest, Vectors
from ..settings import Settings
from ..store.index import ModelIndex
from .calls import post
from .resolve import ResolvedModel, resolve_model, runner_spec

log = structlog.get_logger("supervisor.embedding")
# Architectures whose vectors Ollama's legacy /api/embeddings returns unnormalised (§2.5).
RAW_LEGACY = frozenset({"bert", "nomic-bert"})
TOO_LONG = "the input length exceeds the context length"
CANNOT_CUT = "input exceeds maximum context length and cannot be truncated further"


class EmbedService:
    def __init__(self, settings: Settings, models: ModelIndex, pool: RunnerPool, *, default_ctx: int | None = None) -> None:
        self.settings = settings
        self.models = models
        self.pool = pool
        self.repack = repack_is_safe(cpu_flags())
        self.default_ctx = default_ctx

    def _model(self, name: str) -> ResolvedModel:
        """The model, or Ollama's embed 404s (``model '' not found``; ``model "x" not found, try…``)."""
        try:
            return resolve_model(self.models, name)
        except ModelNotFound:
            if not name.strip():
                raise
            raise ModelNotFound(go_quote(name), template="model {name} not found, try pulling it first") from None

    def _spec(self, model: ResolvedModel, options: dict[str, Any]) -> RunnerSpec:
        resolved = wire.resolve_options(model.params, options)
        return runner_spec(model, resolved.runner, self.settings, repack=self.repack, default_ctx=self.default_ctx)

    # -- embeddings -----------------------------------------------------------------------------------
    async def embed(self, req: EmbedRequest) -> Embedded:
        start = time.monotonic_ns()
        model = self._model(req.model)
        keep_alive = wire.parse_keep_alive(req.keep_alive, UNSET)
        if "embedding" not in model.capabilities:
            raise MissingCapability(f'"{req.model}" does not support embeddings')
        spec = self._spec(model, req.options)
        async with self.pool.lease(spec, keep_alive) as runner:
            load_ns = time.monotonic_ns() - start
            if not req.inputs:
                return Embedded(np.zeros((0, 0), np.float32), 0, time.monotonic_ns() - start, load_ns)
            vectors, tokens = await self._vectors(runner, req.inputs, spec.config.ctx_per_slot, req.truncate)
        if not np.isfinite(vectors).all():
            raise LlamasupError("embedding contains NaN or Inf values")
        if req.normalize or model.family not in RAW_LEGACY:
            vectors = l2_normalize(vectors)
            if 0 < req.dimensions < vectors.shape[1]:
                vectors = l2_normalize(vectors[:, : req.dimensions])
        return Embedded(vectors, tokens, time.monotonic_ns() - start, load_ns)

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
        start = time.monotonic_ns()
        model = self._model(req.model)
        keep_alive = wire.parse_keep_alive(req.keep_alive, UNSET)
        if "rerank" not in model.capabilities:
            raise MissingCapability(f'"{req.model}" does not support rerank')
        spec = self._spec(model, req.options)
        async with self.pool.lease(spec, keep_alive) as runner:
            load_ns = time.monotonic_ns() - start
            if not req.documents:
                return Ranked([], 0, time.monotonic_ns() - start, load_ns)
            body = {"query": req.query, "documents": req.documents, "top_n": req.top_n or len(req.documents)}
            try:
                data = await post(runner, "/rerank", body)
            except RunnerHTTPError as e:
                if _too_long(e):
                    raise BadRequest(TOO_LONG) from None
                raise
        results = [(int(r["index"]), float(r["relevance_score"])) for r in data["results"]]
        results.sort(key=lambda r: -r[1])  # llama-server sorts already; the order is the contract
        tokens = int((data.get("usage") or {}).get("prompt_tokens", 0))
        return Ranked(results, tokens, time.monotonic_ns() - start, load_ns)


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


def go_quote(text: str) -> str:
    """Go's ``%q`` for ordinary text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
