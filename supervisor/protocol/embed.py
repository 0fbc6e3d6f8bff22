"""Embedding and rerank requests as Ollama's routes take them, and their replies (pure).

``/api/embed`` (reference/ollama-api.md §2.4), the legacy ``/api/embeddings`` (§2.5), and
``/api/rerank``, which Ollama lacks (#3368): a query and documents in, documents by relevance out,
with scores as llama-server computes them. The OpenAI, Jina and Cohere shapes of the same use cases
are in ``protocol/openai.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BadRequest
from .ollama import check_types, go_type_error

Vectors = npt.NDArray[np.float32]  # one row per input


@dataclass
class EmbedRequest:
    model: str
    inputs: list[str]  # empty: load the model only
    truncate: bool = True
    dimensions: int = 0  # 0 < d < length: cut, then normalised again
    keep_alive: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    normalize: bool = True  # L2; False (the legacy route): only for architectures Ollama normalises there

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmbedRequest:
        check_types("EmbedRequest", data)
        dimensions = data.get("dimensions")
        if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
            raise go_type_error("EmbedRequest", "dimensions", "int", dimensions)
        truncate = data.get("truncate")
        return cls(
            model=data.get("model") or "",
            inputs=embed_inputs(data.get("input")),
            truncate=True if truncate is None else truncate,
            dimensions=dimensions or 0,
            keep_alive=data.get("keep_alive"),
            options=data.get("options") or {},
        )

    @classmethod
    def legacy(cls, data: dict[str, Any]) -> EmbedRequest:
        """``/api/embeddings``: one ``prompt``; an empty one loads the model only."""
        check_types("EmbeddingRequest", data)
        prompt = data.get("prompt") or ""
        return cls(
            model=data.get("model") or "",
            inputs=[prompt] if prompt else [],
            keep_alive=data.get("keep_alive"),
            options=data.get("options") or {},
            normalize=False,
        )


def embed_inputs(value: Any) -> list[str]:
    """``input`` as a list: a string (``""`` loads only), or an array of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BadRequest("invalid input type")


@dataclass
class Embedded:
    """What ``EmbedService.embed`` returns: vectors (final: normalised and cut), and the metrics."""

    vectors: Vectors
    prompt_tokens: int
    total_ns: int
    load_ns: int


def embed_reply(model: str, result: Embedded) -> dict[str, Any]:
    """``/api/embed``'s reply; float32 values as Go prints them, zero metrics left out."""
    return {"model": model, "embeddings": list(result.vectors)} | _metrics(result)


def legacy_reply(result: Embedded) -> dict[str, Any]:
    """``/api/embeddings``: one vector of float64 (Ollama's ``[]float64``)."""
    return {"embedding": result.vectors[0].astype(np.float64).tolist() if len(result.vectors) else []}


@dataclass
class RerankRequest:
    model: str
    query: str
    documents: list[str]  # empty: load the model only
    top_n: int = 0  # 0: all
    return_documents: bool = False
    keep_alive: Any = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RerankRequest:
        check_types("RerankRequest", data)
        return cls(
            model=data.get("model") or "",
            query=_query(data.get("query"), bool(data.get("documents"))),
            documents=rerank_documents(data.get("documents")),
            top_n=_top_n(data.get("top_n")),
            return_documents=_flag(data.get("return_documents"), "return_documents"),
            keep_alive=data.get("keep_alive"),
            options=data.get("options") or {},
        )


def _query(value: Any, needed: bool) -> str:
    if value is None:
        if needed:
            raise BadRequest("query is required")
        return ""
    if not isinstance(value, str):
        raise BadRequest("query must be a string")
    return value


def rerank_documents(value: Any) -> list[str]:
    """Documents as strings, or as ``{"text": ...}`` objects (Jina, Cohere)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("documents must be an array of strings")
    out = []
    for doc in value:
        if isinstance(doc, dict) and isinstance(doc.get("text"), str):
            doc = doc["text"]
        if not isinstance(doc, str):
            raise BadRequest("documents must be an array of strings")
        out.append(doc)
    return out


def _top_n(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest("top_n must be a non-negative integer")
    return value


def _flag(value: Any, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be a boolean")
    return value


@dataclass
class Ranked:
    """What ``EmbedService.rerank`` returns: (document index, score), best first."""

    results: list[tuple[int, float]]
    prompt_tokens: int
    total_ns: int
    load_ns: int


def ranked(req: RerankRequest, result: Ranked, document: Callable[[str], Any]) -> list[dict[str, Any]]:
    """The results as every rerank API lists them; ``document`` shapes the text when it is asked for."""
    results = []
    for index, score in result.results:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if req.return_documents:
            item["document"] = document(req.documents[index])
        results.append(item)
    return results


def rerank_reply(req: RerankRequest, result: Ranked) -> dict[str, Any]:
    """``/api/rerank``'s reply: ``results`` with ``index``, ``relevance_score`` (and ``document``)."""
    return {"model": req.model, "results": ranked(req, result, str)} | _metrics(result)


def _metrics(result: Embedded | Ranked) -> dict[str, int]:
    metrics = {"total_duration": result.total_ns, "load_duration": result.load_ns, "prompt_eval_count": result.prompt_tokens}
    return {k: v for k, v in metrics.items() if v}  # Go's omitempty
