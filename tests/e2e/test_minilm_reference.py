"""all-MiniLM-L6-v2 converted by llamasup, served by llamasup (and by the stock llama-server), matches
a reference computed without llama.cpp.

The reference in ``tests.minilm`` runs the same safetensors weights through transformers (float32,
mean pooling, L2 normalisation); the GGUF comes from llamasup's own conversion (BERT with
``bert.pooling_type`` MEAN). Each of 42 texts must reach cosine >= 0.999, and every query must rank
the documents in the same order, both through ``/api/embed`` and from llama-server called directly
(which tells a conversion problem from a serving one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ollama
import pytest

from supervisor.store import read_gguf_info
from tests.minilm import (
    DOCUMENTS,
    EMBEDDING_LENGTH,
    QUERIES,
    RANK_MARGIN,
    SENTENCES,
    convert_minilm_gguf,
    cosine,
    rank,
    ranking_margin,
    reference_embeddings,
)
from tests.conftest import ServerFactory, base_url
from tests.processes import llama_server
from tests.store_helpers import install_gguf

MIN_COSINE = 0.999
POOLING_MEAN = 1  # llama.cpp's LLAMA_POOLING_TYPE_MEAN


@pytest.fixture(scope="module")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory, llama_server_bin: Path) -> Path:
    return convert_minilm_gguf(tmp_path_factory.mktemp("minilm") / "all-minilm-l6-v2-f32.gguf", llama_server_bin)


def test_conversion_keeps_what_embedding_needs(minilm_gguf: Path) -> None:
    """An F32 BERT GGUF with mean pooling, non-causal attention and the full WordPiece vocabulary."""
    info = read_gguf_info(minilm_gguf)
    assert info.architecture == "bert"
    assert info.file_type == "F32"
    assert info.embedding_length == EMBEDDING_LENGTH
    assert info.block_count == 6
    assert info.context_length == 512
    assert info.metadata["bert.pooling_type"] == POOLING_MEAN
    assert info.metadata["bert.attention.causal"] is False
    assert info.metadata["tokenizer.ggml.model"] == "bert"
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 30522


def _server_embeddings(response: object, count: int) -> np.ndarray:
    """llama-server's ``/embeddings`` answer (one ``{"index", "embedding": [[...]]}`` per input, with
    pooling the single pooled vector) as an array in input order."""
    assert isinstance(response, list) and len(response) == count, response
    by_index = sorted(response, key=lambda item: item["index"])
    assert [item["index"] for item in by_index] == list(range(count))
    vectors = []
    for item in by_index:
        embedding = item["embedding"]
        assert len(embedding) == 1, "a pooled model answers one vector per input"
        vectors.append(embedding[0])
    return np.asarray(vectors, dtype=np.float64)


def test_llama_server_matches_the_transformers_reference(minilm_gguf: Path, llama_server_bin: Path, tmp_path: Path) -> None:
    """Every sentence's llama-server embedding is within cosine 0.999 of the reference, and every
    query ranks the documents in the same order on both sides."""
    texts = [*SENTENCES, *QUERIES, *DOCUMENTS]
    with llama_server(llama_server_bin, minilm_gguf, tmp_path, ["--embeddings", "-b", "512", "-ub", "512"]) as server:
        status, body = server.post("/embeddings", {"content": texts})
    assert status == 200, body
    _matches_reference(_server_embeddings(body, len(texts)), texts)


async def test_api_embed_matches_the_transformers_reference(
    minilm_gguf: Path, llama_server_bin: Path, models_dir: Path, start_server: ServerFactory
) -> None:
    """The same through llamasup: the ``ollama`` client's ``embed`` on the converted model, one
    request for all texts."""
    install_gguf(models_dir, "all-minilm", minilm_gguf)
    server = await start_server(llama_server_bin)
    texts = [*SENTENCES, *QUERIES, *DOCUMENTS]
    reply = await ollama.AsyncClient(host=base_url(server)).embed(model="all-minilm", input=texts)
    assert reply.prompt_eval_count and reply.prompt_eval_count > len(texts)
    _matches_reference(np.asarray(reply.embeddings, dtype=np.float64), texts)


def _matches_reference(got: np.ndarray, texts: list[str]) -> None:
    expected = reference_embeddings(texts)
    assert got.shape == (len(texts), EMBEDDING_LENGTH)
    # Unit vectors: llama-server L2-normalises pooled embeddings by default (--embd-normalize 2), and
    # llamasup normalises as Ollama does; the model itself ends with a Normalize module.
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    similarities = [cosine(g, e) for g, e in zip(got, expected, strict=True)]
    low = [(round(s, 6), text[:60]) for s, text in zip(similarities, texts, strict=True) if s < MIN_COSINE]
    assert not low, f"cosine below {MIN_COSINE}: {low}"

    n_s, n_q = len(SENTENCES), len(QUERIES)
    got_queries, got_docs = got[n_s : n_s + n_q], got[n_s + n_q :]
    ref_queries, ref_docs = expected[n_s : n_s + n_q], expected[n_s + n_q :]
    # The data's own precondition: no two reference scores of a query are close enough to swap places.
    assert ranking_margin(ref_queries, ref_docs) >= RANK_MARGIN
    for i, query in enumerate(QUERIES):
        expected_rank = rank(ref_queries[i], ref_docs)
        assert expected_rank[0] == i, f"{query!r}: the reference does not rank its own document first"
        assert rank(got_queries[i], got_docs) == expected_rank, query
