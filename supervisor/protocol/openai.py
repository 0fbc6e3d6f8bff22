"""OpenAI-shaped requests and replies, translated to and from the Ollama use cases (pure).

``/v1/models`` (reference/ollama-api.md §14.4), ``/v1/embeddings`` as Ollama's compatibility layer
takes it (§14.3), and
``/v1/rerank`` in the shape Jina's and Cohere's clients send (a reply that carries both APIs'
fields: Jina's ``model``/``usage``, Cohere's ``id``/``meta``; each client reads its own). Errors are
``{"error": {"message", "type", "param", "code"}}`` with the type by status (§14).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from ..errors import BadRequest, InvalidJSON
from ..store.index import ModelRef
from .embed import Embedded, EmbedRequest, Ranked, RerankRequest, ranked

ENCODINGS = ("float", "base64")


def error_body(message: str, status: int) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def model_object(ref: ModelRef) -> dict[str, Any]:
    """A model as ``/v1/models`` lists it: the id is the name with its tag (and namespace, host)."""
    return {"id": ref.name.display, "object": "model", "created": int(ref.modified_at.timestamp()), "owned_by": ref.name.namespace}


def models_reply(refs: list[ModelRef]) -> dict[str, Any]:
    """``GET /v1/models``; with no models ``data`` is null, as Ollama writes it."""
    return {"object": "list", "data": [model_object(ref) for ref in refs] or None}


def model_field(data: dict[str, Any]) -> str:
    """The body's ``model`` (a non-string is ``invalid model``)."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidJSON("invalid model")
    return model or ""


def embeddings_request(data: dict[str, Any]) -> tuple[EmbedRequest, str]:
    """The embed request and the encoding (``float``/``base64``) of a ``/v1/embeddings`` body."""
    value = data.get("input")
    if isinstance(value, str):
        inputs = [value]  # "" is one (empty) input here, not a load request
    elif isinstance(value, list) and value:
        if not all(isinstance(v, str) for v in value):
            raise BadRequest("invalid input type")
        inputs = list(value)
    elif value is None or value == []:
        raise BadRequest("invalid input")
    else:
        raise BadRequest("invalid input type")
    encoding = data.get("encoding_format") or "float"
    if not isinstance(encoding, str) or encoding.lower() not in ENCODINGS:
        raise BadRequest(f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', 'base64'].")
    dimensions = data.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int)):
        raise BadRequest("invalid dimensions")
    return EmbedRequest(model=model_field(data), inputs=inputs, dimensions=dimensions or 0), encoding.lower()


def embeddings_reply(model: str, result: Embedded, encoding: str) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(result.vectors):
        embedding: Any = vector
        if encoding == "base64":
            embedding = base64.b64encode(vector.astype("<f4").tobytes()).decode()
        data.append({"object": "embedding", "embedding": embedding, "index": i})
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def rerank_request(data: dict[str, Any]) -> RerankRequest:
    """A Jina or Cohere rerank body (``documents`` as strings or ``{"text"}``; the documents come
    back only when ``return_documents`` asks)."""
    model_field(data)  # a model that is not a string: "invalid model", as for embeddings
    query = data.get("query")
    if not isinstance(query, str):
        raise BadRequest("query is required" if query is None else "query must be a string")
    req = RerankRequest.from_json(data)  # the same field checks as /api/rerank
    if not req.documents:
        raise BadRequest("documents is required")
    return req


def rerank_reply(req: RerankRequest, result: Ranked) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "model": req.model,
        "results": ranked(req, result, lambda text: {"text": text}),
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
    }
