"""The tiny BERT models of tests/bert_models.py against the real llama-server (no llamasup).

Facts these tests pin down (this llama-server build):
* ``--embeddings`` on the mean-pooled model: ``POST /embeddings`` with a list ``content`` answers
  one ``{"index", "embedding": [vector]}`` per text (the pooled vector wrapped in a list),
  L2-normalised by default;
* the WordPiece tokenizer lowercases, splits punctuation off as words of its own, and, for
  ``add_special``, frames a text as ``[CLS] text [SEP]``;
* ``--reranking`` on the rank-pooled model: ``POST /rerank`` scores each document on its own as
  ``[CLS] query [SEP] document [SEP]`` (``usage.prompt_tokens`` counts exactly those tokens) and
  answers the raw head output as ``relevance_score`` (no sigmoid), sorted best first.

Embedding and rerank inputs must fit one micro-batch, hence ``-b 512 -ub 512`` (the helper sets
``-c 512``, which is also the models' trained context).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bert_models import BERT_PRESET, build_wordpiece_vocab, write_bert_embedding_model, write_bert_reranker_model
from tests.processes import LlamaServer, llama_server

pytestmark = pytest.mark.e2e

BATCH_ARGS = ["-b", "512", "-ub", "512"]
VOCAB = build_wordpiece_vocab()
# llama-server's score for a sequence whose embeddings it could not read.
RERANK_FAILURE_SCORE = -1e6

QUERY = "what covers the surface of the earth"
DOCUMENTS = [
    "water covers more than two thirds of the planet",
    "the quick brown fox jumps over the lazy dog",
    "a computer is a machine that can be programmed",
]


def _serve(binary: Path, tmp: pytest.TempPathFactory, write: Callable[[Path], Path], flag: str) -> Iterator[LlamaServer]:
    root = tmp.mktemp("bert")
    with llama_server(binary, write(root / "model.gguf"), root, [flag, *BATCH_ARGS]) as server:
        yield server


@pytest.fixture(scope="module")
def embedding_server(llama_server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from _serve(llama_server_bin, tmp_path_factory, write_bert_embedding_model, "--embeddings")


@pytest.fixture(scope="module")
def reranker_server(llama_server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    yield from _serve(llama_server_bin, tmp_path_factory, write_bert_reranker_model, "--reranking")


def _ok(result: tuple[int, Any]) -> Any:
    status, body = result
    assert status == 200, body
    return body


def _tokenize(server: LlamaServer, text: str, *, add_special: bool = False) -> list[int]:
    ids = _ok(server.post("/tokenize", {"content": text, "add_special": add_special}))["tokens"]
    assert isinstance(ids, list)
    return [int(i) for i in ids]


def test_embeddings_are_finite_unit_vectors_that_differ_between_texts(embedding_server: LlamaServer) -> None:
    body = _ok(embedding_server.post("/embeddings", {"content": ["hello world", "the quick brown fox"]}))
    assert [item["index"] for item in body] == [0, 1]
    vectors: list[list[float]] = []
    for item in body:
        (vector,) = item["embedding"]  # pooled: one vector per text
        assert len(vector) == BERT_PRESET.n_embd
        assert all(math.isfinite(x) for x in vector)
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-4)
        vectors.append(vector)
    first, second = vectors
    assert max(abs(a - b) for a, b in zip(first, second)) > 1e-3


def test_ordinary_english_tokenizes_into_known_wordpieces(embedding_server: LlamaServer) -> None:
    sentence = "The children played happily on the beach, singing loudly!"
    body = _ok(embedding_server.post("/tokenize", {"content": sentence, "with_pieces": True}))
    ids = [t["id"] for t in body["tokens"]]
    pieces = [t["piece"] for t in body["tokens"]]
    assert VOCAB.unk_id not in ids
    # Lowercased, punctuation split off; "happily" and "singing" have no whole-word piece and
    # are spelled with continuation pieces.
    assert "".join(pieces) == " the children played happily on the beach , singing loudly !"
    assert len(ids) > len(sentence.split()) + 2


def test_text_outside_the_vocabulary_is_unk_and_specials_frame_the_text(embedding_server: LlamaServer) -> None:
    assert _tokenize(embedding_server, "hello \u65e5") == [VOCAB.id_of("hello"), VOCAB.unk_id]
    assert _tokenize(embedding_server, "hello world", add_special=True) == [
        VOCAB.cls_id, VOCAB.id_of("hello"), VOCAB.id_of("world"), VOCAB.sep_id,
    ]  # fmt: skip


def test_rerank_scores_are_finite_distinct_and_sorted(reranker_server: LlamaServer) -> None:
    body = _ok(reranker_server.post("/rerank", {"query": QUERY, "documents": DOCUMENTS}))
    results = body["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    scores = [float(r["relevance_score"]) for r in results]
    assert all(math.isfinite(s) and s != RERANK_FAILURE_SCORE for s in scores)
    assert len(set(scores)) == 3
    assert scores == sorted(scores, reverse=True)


def test_rerank_scores_each_pair_as_cls_query_sep_document_sep(reranker_server: LlamaServer) -> None:
    body = _ok(reranker_server.post("/rerank", {"query": QUERY, "documents": DOCUMENTS}))
    n_query = len(_tokenize(reranker_server, QUERY))
    expected = sum(n_query + len(_tokenize(reranker_server, doc)) + 3 for doc in DOCUMENTS)
    assert body["usage"]["prompt_tokens"] == expected


def test_a_documents_score_depends_only_on_its_pair(reranker_server: LlamaServer) -> None:
    def scores(documents: list[str]) -> dict[str, float]:
        body = _ok(reranker_server.post("/rerank", {"query": QUERY, "documents": documents}))
        return {documents[r["index"]]: float(r["relevance_score"]) for r in body["results"]}

    together = scores(DOCUMENTS)
    reversed_order = scores(list(reversed(DOCUMENTS)))
    alone = {doc: scores([doc])[doc] for doc in DOCUMENTS}
    for doc in DOCUMENTS:
        assert reversed_order[doc] == pytest.approx(together[doc], rel=1e-4, abs=1e-5)
        assert alone[doc] == pytest.approx(together[doc], rel=1e-4, abs=1e-5)
