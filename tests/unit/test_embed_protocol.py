"""Embedding and rerank requests and replies (protocol/embed.py, protocol/openai.py) and the pure
helpers of service/embedding.py."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from supervisor.errors import BadRequest, InvalidJSON
from supervisor.protocol.embed import Embedded, EmbedRequest, Ranked, RerankRequest, embed_inputs, embed_reply, legacy_reply, rerank_reply
from supervisor.protocol.ollama import dumps
from supervisor.protocol.openai import embeddings_reply, embeddings_request, error_body, rerank_request
from supervisor.protocol.openai import rerank_reply as openai_rerank_reply
from supervisor.service.embedding import l2_normalize


@pytest.mark.parametrize(
    ("value", "inputs"),
    [(None, []), ("", []), ([], []), ("a", ["a"]), (["a", ""], ["a", ""])],
)
def test_embed_inputs(value: Any, inputs: list[str]) -> None:
    """A string is one input, ``""``/``[]``/absent mean load only."""
    assert embed_inputs(value) == inputs


@pytest.mark.parametrize("value", [5, True, {"a": 1}, ["a", 1], [["a"]]])
def test_embed_inputs_of_other_types_are_refused(value: Any) -> None:
    with pytest.raises(BadRequest, match="^invalid input type$"):
        embed_inputs(value)


def test_embed_request_fields_and_go_type_errors() -> None:
    req = EmbedRequest.from_json({"model": "m", "input": ["a"], "truncate": False, "dimensions": 8, "keep_alive": "5m", "options": {"num_ctx": 64}})  # fmt: skip
    assert (req.model, req.inputs, req.truncate, req.dimensions, req.keep_alive, req.options, req.normalize) == ("m", ["a"], False, 8, "5m", {"num_ctx": 64}, True)  # fmt: skip
    with pytest.raises(InvalidJSON, match="EmbedRequest.dimensions of type int"):
        EmbedRequest.from_json({"model": "m", "dimensions": 1.5})
    legacy = EmbedRequest.legacy({"model": "m", "prompt": "p"})
    assert (legacy.inputs, legacy.normalize) == (["p"], False)


def test_replies_print_float32_as_go_does() -> None:
    """``/api/embed`` prints ``[]float32`` (shortest float32 digits), the legacy route ``[]float64``."""
    vectors = np.array([[0.1, 1 / 3]], dtype=np.float32)
    reply = embed_reply("m", Embedded(vectors, 3, 10, 0))
    assert dumps(reply) == b'{"model":"m","embeddings":[[0.1,0.33333334]],"total_duration":10,"prompt_eval_count":3}'
    assert dumps(legacy_reply(Embedded(vectors, 3, 10, 0))) == b'{"embedding":[0.10000000149011612,0.3333333432674408]}'
    assert embed_reply("m", Embedded(np.zeros((0, 0), np.float32), 0, 0, 0)) == {"model": "m", "embeddings": []}


def test_l2_normalize_keeps_zero_rows_zero() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_openai_embeddings_request_and_reply() -> None:
    req, encoding = embeddings_request({"model": "m", "input": "", "encoding_format": "BASE64", "dimensions": 4})
    assert (req.inputs, req.dimensions, encoding) == ([""], 4, "base64")  # "" is one input here
    vectors = np.array([[1.0, -0.5]], dtype=np.float32)
    reply = embeddings_reply("m", Embedded(vectors, 7, 0, 0), "base64")
    assert np.frombuffer(base64.b64decode(reply["data"][0]["embedding"]), "<f4").tolist() == [1.0, -0.5]
    assert reply["usage"] == {"prompt_tokens": 7, "total_tokens": 7} and reply["object"] == "list"
    assert orjson.loads(dumps(embeddings_reply("m", Embedded(vectors, 7, 0, 0), "float")))["data"] == [
        {"object": "embedding", "embedding": [1.0, -0.5], "index": 0}
    ]


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (404, "not_found_error"), (500, "api_error"), (503, "api_error")])
def test_openai_error_type_by_status(status: int, kind: str) -> None:
    assert error_body("x", status) == {"error": {"message": "x", "type": kind, "param": None, "code": None}}


def test_rerank_requests_and_replies() -> None:
    req = RerankRequest.from_json({"model": "r", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1, "return_documents": True})  # fmt: skip
    assert (req.documents, req.top_n, req.return_documents) == (["a", "b"], 1, True)
    ranked = Ranked([(1, 2.5), (0, -1.0)], 9, 5, 1)
    assert rerank_reply(req, ranked) == {
        "model": "r",
        "results": [{"index": 1, "relevance_score": 2.5, "document": "b"}, {"index": 0, "relevance_score": -1.0, "document": "a"}],
        "total_duration": 5, "load_duration": 1, "prompt_eval_count": 9,
    }  # fmt: skip
    cohere = openai_rerank_reply(rerank_request({"model": "r", "query": "q", "documents": ["a", "b"], "return_documents": True}), ranked)  # fmt: skip
    assert cohere["results"][0] == {"index": 1, "relevance_score": 2.5, "document": {"text": "b"}}
    assert RerankRequest.from_json({"model": "r"}).documents == []  # load only
    with pytest.raises(BadRequest, match="query is required"):
        RerankRequest.from_json({"model": "r", "documents": ["a"]})


class _Tokenizer:
    """A runner stand-in for ``/tokenize``: one token per word, wrapped in [CLS]=1 … [SEP]=2."""

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        assert path == "/tokenize"
        words = [10 + len(w) for w in body["content"].split()]
        return {"tokens": [1, *words, 2] if body["add_special"] else words}


class _Runner:
    client = _Tokenizer()


async def test_inputs_are_cut_with_their_special_tokens_kept() -> None:
    from supervisor.service.embedding import _fit

    runner: Any = _Runner()
    assert await _fit(runner, "a bb ccc", 8) == [1, 11, 12, 13, 2]  # fits: as tokenized
    assert await _fit(runner, "a bb ccc dddd", 4) == [1, 11, 12, 2]
    with pytest.raises(BadRequest, match="^input exceeds maximum context length and cannot be truncated further$"):
        await _fit(runner, "a bb ccc", 2)
