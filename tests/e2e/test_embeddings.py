"""Embeddings and rerank through llamasup with the real llama-server and generated BERT models.

Every vector and score is compared with what the very runner llamasup started answers when it is
called directly (its own ``/v1/embeddings``, ``/tokenize``, ``/rerank``), so the tests show that
llamasup passes on llama-server's numbers: normalised, cut and sorted as Ollama's API says.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import ollama
import openai
import pytest
from aiohttp.test_utils import TestServer

from supervisor.api.keys import POOL
from supervisor.runner.process import RunnerProcess
from tests.bert_models import BERT_PRESET, write_bert_embedding_model, write_bert_reranker_model
from tests.conftest import ServerFactory, base_url
from tests.store_helpers import install_gguf

TEXTS = ["the quick brown fox jumps over the lazy dog", "hello world", "models are converted to gguf"]
LONG = " ".join(["the children played happily on the beach, singing loudly"] * 12)  # ~130 tokens
DOCS = ["the fox jumps over the dog", "a recipe for bread and butter", "the lazy dog sleeps all day", "hello world"]


@pytest.fixture
async def server(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, tmp_path: Path) -> TestServer:
    install_gguf(models_dir, "bert", write_bert_embedding_model(tmp_path / "bert.gguf"))
    install_gguf(models_dir, "rr", write_bert_reranker_model(tmp_path / "rr.gguf"))
    return await start_server(llama_server_bin)


async def post(server: TestServer, path: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as session, session.post(base_url(server) + path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def runner(server: TestServer) -> RunnerProcess:
    (entry,) = server.app[POOL]._entries.values()  # noqa: SLF001
    assert entry.process is not None
    return entry.process


async def direct(server: TestServer, path: str, body: Any) -> Any:
    """The runner llamasup started, called on its own socket."""
    process = runner(server)
    assert process.session is not None
    async with process.session.post(process.base_url + path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def direct_vectors(server: TestServer, inputs: list[Any], normalize: int = 2) -> np.ndarray:
    data = await direct(server, "/v1/embeddings", {"input": inputs, "embd_normalize": normalize})
    return np.array([d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])], dtype=np.float32)


async def test_embed_returns_the_runners_vectors_normalised(server: TestServer) -> None:
    reply = await post(server, "/api/embed", {"model": "bert", "input": TEXTS})
    vectors = np.array(reply["embeddings"], dtype=np.float32)
    assert vectors.shape == (3, BERT_PRESET.n_embd)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, await direct_vectors(server, TEXTS), atol=1e-6)
    tokens = [len((await direct(server, "/tokenize", {"content": t, "add_special": True}))["tokens"]) for t in TEXTS]
    assert reply["prompt_eval_count"] == sum(tokens)
    assert reply["model"] == "bert" and reply["total_duration"] >= reply["load_duration"] > 0
    argv = runner(server).argv
    assert "--embeddings" in argv and argv[argv.index("--ubatch-size") + 1] == argv[argv.index("--ctx-size") + 1]


async def test_a_string_input_and_dimensions(server: TestServer) -> None:
    """A string is one input; ``dimensions`` cuts the vector and normalises it again."""
    full = np.array((await post(server, "/api/embed", {"model": "bert", "input": [TEXTS[0]]}))["embeddings"][0])
    one = (await post(server, "/api/embed", {"model": "bert", "input": TEXTS[0]}))["embeddings"]
    np.testing.assert_allclose(one, [full], atol=1e-7)
    cut = np.array((await post(server, "/api/embed", {"model": "bert", "input": TEXTS[0], "dimensions": 16}))["embeddings"][0])
    assert cut.shape == (16,)
    np.testing.assert_allclose(cut, full[:16] / np.linalg.norm(full[:16]), atol=1e-6)


async def test_long_inputs_are_truncated_to_the_context_or_refused(server: TestServer) -> None:
    """With ``num_ctx`` 32 a long input is cut to 32 tokens, [CLS] and [SEP] kept; with
    ``truncate: false`` Ollama's 400."""
    options = {"num_ctx": 32}
    reply = await post(server, "/api/embed", {"model": "bert", "input": [LONG, "hello world"], "options": options})
    assert reply["prompt_eval_count"] == 32 + 4  # [CLS] hello world [SEP]
    tokens = (await direct(server, "/tokenize", {"content": LONG, "add_special": True}))["tokens"]
    assert len(tokens) > 100
    cut = tokens[:31] + tokens[-1:]
    expected = await direct_vectors(server, [cut, "hello world"])
    np.testing.assert_allclose(np.array(reply["embeddings"], dtype=np.float32), expected, atol=1e-6)
    async with aiohttp.ClientSession() as session:
        body = {"model": "bert", "input": [LONG], "truncate": False, "options": options}
        async with session.post(base_url(server) + "/api/embed", json=body) as r:
            assert (r.status, await r.json()) == (400, {"error": "the input length exceeds the context length"})


async def test_legacy_embeddings_return_the_raw_vector_for_bert(server: TestServer) -> None:
    """``/api/embeddings``: one prompt, one float64 vector, unnormalised for bert as in Ollama."""
    reply = await post(server, "/api/embeddings", {"model": "bert", "prompt": TEXTS[1]})
    raw = await direct_vectors(server, [TEXTS[1]], normalize=-1)
    np.testing.assert_allclose(reply["embedding"], raw[0], rtol=1e-6, atol=1e-7)
    assert abs(np.linalg.norm(reply["embedding"]) - 1.0) > 1e-3  # not normalised


async def test_the_ollama_client(server: TestServer) -> None:
    client = ollama.AsyncClient(host=base_url(server))
    embedded = await client.embed(model="bert", input=TEXTS)
    assert len(embedded.embeddings) == 3 and embedded.prompt_eval_count
    np.testing.assert_allclose(embedded.embeddings, await direct_vectors(server, TEXTS), atol=1e-6)
    legacy = await client.embeddings(model="bert", prompt=TEXTS[0])
    assert len(legacy.embedding) == BERT_PRESET.n_embd


async def test_the_openai_client_in_float_and_base64(server: TestServer) -> None:
    client = openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused")
    as_float = await client.embeddings.create(model="bert", input=TEXTS, encoding_format="float")
    expected = await direct_vectors(server, TEXTS)
    assert [d.index for d in as_float.data] == [0, 1, 2] and as_float.model == "bert"
    np.testing.assert_allclose([d.embedding for d in as_float.data], expected, atol=1e-6)
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens > 0
    as_default = await client.embeddings.create(model="bert", input=TEXTS[0])  # the SDK asks for base64
    np.testing.assert_allclose(as_default.data[0].embedding, expected[0], atol=1e-6)
    async with aiohttp.ClientSession() as session:
        body = {"model": "bert", "input": TEXTS[0], "encoding_format": "base64"}
        async with session.post(base_url(server) + "/v1/embeddings", json=body) as r:
            raw = (await r.json())["data"][0]["embedding"]
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(raw), "<f4"), expected[0], atol=1e-6)
    with pytest.raises(openai.NotFoundError) as info:
        await client.embeddings.create(model="missing", input="x")
    assert info.value.body == {"message": 'model "missing" not found, try pulling it first', "type": "not_found_error", "param": None, "code": None}  # fmt: skip


async def test_rerank_passes_on_the_runners_scores_sorted(server: TestServer) -> None:
    query = "the lazy dog"
    reply = await post(server, "/api/rerank", {"model": "rr", "query": query, "documents": DOCS})
    expected = (await direct(server, "/rerank", {"query": query, "documents": DOCS}))["results"]
    assert "--reranking" in runner(server).argv
    assert [(r["index"], r["relevance_score"]) for r in reply["results"]] == [(e["index"], e["relevance_score"]) for e in expected]  # fmt: skip
    scores = [r["relevance_score"] for r in reply["results"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(DOCS)
    assert reply["prompt_eval_count"] > 0 and "document" not in reply["results"][0]
    top = await post(server, "/api/rerank", {"model": "rr", "query": query, "documents": DOCS, "top_n": 2, "return_documents": True})  # fmt: skip
    assert top["results"] == [r | {"document": DOCS[r["index"]]} for r in reply["results"][:2]]


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
async def test_rerank_in_the_jina_and_cohere_shape(server: TestServer, path: str) -> None:
    query = "the lazy dog"
    ours = (await post(server, "/api/rerank", {"model": "rr", "query": query, "documents": DOCS}))["results"]
    documents = [{"text": d} for d in DOCS[:2]] + DOCS[2:]  # both spellings in one request
    reply = await post(server, path, {"model": "rr", "query": query, "documents": documents, "top_n": 3, "return_documents": True})  # fmt: skip
    assert reply["results"] == [r | {"document": {"text": DOCS[r["index"]]}} for r in ours[:3]]
    assert reply["model"] == "rr" and reply["usage"]["total_tokens"] > 0 and reply["id"]
    assert reply["meta"]["billed_units"] == {"search_units": 1}
