"""The BERT GGUF generators: what llama.cpp's bert loader reads is there, as intended.

Every test reads the written file back with ``gguf.GGUFReader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from tests.bert_models import (
    BERT_PRESET,
    CLS_TOKEN,
    LAYER_NORM_EPS,
    MASK_TOKEN,
    N_TOKEN_TYPES,
    PAD_TOKEN,
    RERANK_LABEL,
    SEP_TOKEN,
    UNK_TOKEN,
    build_wordpiece_vocab,
    write_bert_embedding_model,
    write_bert_reranker_model,
)

P = BERT_PRESET
CLS_HEAD = ("cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias")


@pytest.fixture(scope="module")
def embedding(tmp_path_factory: pytest.TempPathFactory) -> gguf.GGUFReader:
    return gguf.GGUFReader(write_bert_embedding_model(tmp_path_factory.mktemp("bert") / "embed.gguf"))


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> gguf.GGUFReader:
    return gguf.GGUFReader(write_bert_reranker_model(tmp_path_factory.mktemp("bert") / "rerank.gguf"))


def _fields(reader: gguf.GGUFReader) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def _shapes(reader: gguf.GGUFReader) -> dict[str, tuple[int, ...]]:
    """numpy shapes (rows first; ggml's ``ne`` reversed)."""
    return {t.name: tuple(int(d) for d in t.data.shape) for t in reader.tensors}


def _expected_shapes(context_length: int) -> dict[str, tuple[int, ...]]:
    n, ff, n_vocab = P.n_embd, P.n_ff, len(build_wordpiece_vocab().pieces)
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (n_vocab, n),
        "token_types.weight": (N_TOKEN_TYPES, n),
        "position_embd.weight": (context_length, n),
        "token_embd_norm.weight": (n,),
        "token_embd_norm.bias": (n,),
    }
    for i in range(P.n_layer):
        for proj in ("attn_q", "attn_k", "attn_v", "attn_output"):
            shapes[f"blk.{i}.{proj}.weight"] = (n, n)
            shapes[f"blk.{i}.{proj}.bias"] = (n,)
        for norm in ("attn_output_norm", "layer_output_norm"):
            shapes[f"blk.{i}.{norm}.weight"] = (n,)
            shapes[f"blk.{i}.{norm}.bias"] = (n,)
        shapes[f"blk.{i}.ffn_up.weight"] = (ff, n)
        shapes[f"blk.{i}.ffn_up.bias"] = (ff,)
        shapes[f"blk.{i}.ffn_down.weight"] = (n, ff)
        shapes[f"blk.{i}.ffn_down.bias"] = (n,)
    return shapes


def test_embedding_model_declares_a_mean_pooled_non_causal_bert(embedding: gguf.GGUFReader) -> None:
    f = _fields(embedding)
    assert f["general.architecture"] == "bert"
    assert f["general.name"] == "tiny-bert"
    assert f["general.file_type"] == int(gguf.LlamaFileType.ALL_F32)
    assert f["bert.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert f["bert.attention.causal"] is False
    assert f["bert.attention.layer_norm_epsilon"] == pytest.approx(LAYER_NORM_EPS)
    assert f["bert.context_length"] == 512
    assert (f["bert.embedding_length"], f["bert.block_count"]) == (P.n_embd, P.n_layer)
    assert (f["bert.attention.head_count"], f["bert.feed_forward_length"]) == (P.n_head, P.n_ff)
    assert "bert.classifier.output_labels" not in f
    assert "tokenizer.chat_template" not in f


def test_embedding_model_has_the_bert_tensors_and_no_classification_head(embedding: gguf.GGUFReader) -> None:
    assert _shapes(embedding) == _expected_shapes(512)


def test_reranker_declares_rank_pooling_with_one_label(reranker: gguf.GGUFReader) -> None:
    f = _fields(reranker)
    assert f["general.architecture"] == "bert"
    assert f["general.name"] == "tiny-reranker"
    assert f["bert.pooling_type"] == int(gguf.PoolingType.RANK)
    assert f["bert.attention.causal"] is False
    assert f["bert.classifier.output_labels"] == [RERANK_LABEL]


def test_reranker_has_the_classification_head(reranker: gguf.GGUFReader) -> None:
    shapes = _shapes(reranker)
    n = P.n_embd
    assert {name: shapes[name] for name in CLS_HEAD} == {
        "cls.weight": (n, n),
        "cls.bias": (n,),
        "cls.output.weight": (1, n),  # ggml {n_embd, n_cls_out}: one score
        "cls.output.bias": (1,),
    }
    assert {k: v for k, v in shapes.items() if k not in CLS_HEAD} == _expected_shapes(512)


@pytest.mark.parametrize("which", ["embedding", "reranker"])
def test_weights_are_finite_f32_and_not_constant(which: str, request: pytest.FixtureRequest) -> None:
    reader: gguf.GGUFReader = request.getfixturevalue(which)
    for t in reader.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        data = np.asarray(t.data)
        assert np.isfinite(data).all(), t.name
        if data.size > 1:
            assert data.std() > 0, t.name


def test_pooling_and_context_length_are_parameters(tmp_path: Path) -> None:
    reader = gguf.GGUFReader(
        write_bert_embedding_model(tmp_path / "cls.gguf", pooling=gguf.PoolingType.CLS, context_length=128, name="x")
    )
    f = _fields(reader)
    assert (f["bert.pooling_type"], f["bert.context_length"], f["general.name"]) == (int(gguf.PoolingType.CLS), 128, "x")
    assert _shapes(reader)["position_embd.weight"] == (128, P.n_embd)


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_bert_reranker_model(tmp_path / "a.gguf", seed=3).read_bytes()
    b = write_bert_reranker_model(tmp_path / "b.gguf", seed=3).read_bytes()
    c = write_bert_reranker_model(tmp_path / "c.gguf", seed=4).read_bytes()
    assert a == b
    assert len(a) == len(c) and a != c


def test_tokenizer_is_wordpiece_with_bert_special_tokens(embedding: gguf.GGUFReader) -> None:
    f = _fields(embedding)
    tokens: list[str] = f["tokenizer.ggml.tokens"]
    types: list[int] = f["tokenizer.ggml.token_type"]
    assert f["tokenizer.ggml.model"] == "bert"
    assert f["tokenizer.ggml.token_type_count"] == N_TOKEN_TYPES
    assert len(tokens) == len(set(tokens)) == len(types)
    # [CLS] text [SEP] for one text, [CLS] query [SEP] document [SEP] for a rerank pair.
    assert tokens[f["tokenizer.ggml.bos_token_id"]] == CLS_TOKEN
    assert tokens[f["tokenizer.ggml.eos_token_id"]] == SEP_TOKEN
    assert tokens[f["tokenizer.ggml.seperator_token_id"]] == SEP_TOKEN  # gguf's spelling
    assert tokens[f["tokenizer.ggml.unknown_token_id"]] == UNK_TOKEN
    assert tokens[f["tokenizer.ggml.padding_token_id"]] == PAD_TOKEN
    assert tokens[f["tokenizer.ggml.mask_token_id"]] == MASK_TOKEN
    assert (f["tokenizer.ggml.add_bos_token"], f["tokenizer.ggml.add_eos_token"]) == (True, True)
    assert f["tokenizer.ggml.add_sep_token"] is False
    by_type = {tok: typ for tok, typ in zip(tokens, types)}
    assert by_type[UNK_TOKEN] == gguf.TokenType.UNKNOWN
    for special in (PAD_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN):
        assert by_type[special] == gguf.TokenType.CONTROL
    assert {typ for tok, typ in by_type.items() if not tok.startswith("[")} == {gguf.TokenType.NORMAL}


def test_vocabulary_is_in_llama_cpp_phantom_space_form(embedding: gguf.GGUFReader) -> None:
    """Word starts carry U+2581, ``##`` continuations are stored bare; every letter exists both
    ways, so any lowercase ASCII word has a WordPiece split without ``[UNK]``."""
    tokens = set(_fields(embedding)["tokenizer.ggml.tokens"])
    assert not any(t.startswith("##") for t in tokens)
    for c in "abcdefghijklmnopqrstuvwxyz0123456789":
        assert "\u2581" + c in tokens and c in tokens
    for word in ("hello", "world", "the", "quick", "brown", "fox", "water"):
        assert "\u2581" + word in tokens
    for suffix in ("ing", "ed", "ly"):
        assert suffix in tokens
    hf = build_wordpiece_vocab().pieces
    assert "##ing" in hf and "fox" in hf  # the HuggingFace spelling, before conversion
