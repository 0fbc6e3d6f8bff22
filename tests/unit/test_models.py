"""The random-weight GGUF generator: valid files, real tokenizer, and the no-EOS guarantee.

Everything here reads the written file back with ``gguf.GGUFReader`` and
re-derives its properties independently of the generator's own bookkeeping,
so a bug in the generator's bound computation cannot hide itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt
import pytest

from tests.models import (
    BOS_TOKEN,
    DEFAULT_CHAT_TEMPLATE,
    IM_END,
    IM_START,
    LOGIT_MARGIN,
    PRESETS,
    build_vocab,
    write_embedding_model,
    write_model,
)

F64 = npt.NDArray[np.float64]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny.gguf", seed=7)


def _fields(reader: gguf.GGUFReader) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def _tensors(reader: gguf.GGUFReader) -> dict[str, F64]:
    return {t.name: np.asarray(t.data, dtype=np.float64) for t in reader.tensors}


def _gpt2_byte_alphabet() -> list[str]:
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _bpe_encode(text: str, merges: list[str]) -> list[str]:
    """Minimal rank-based BPE, the algorithm llama.cpp applies per pre-token."""
    ranks = {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}
    alphabet = _gpt2_byte_alphabet()
    out: list[str] = []
    for chunk in re.findall(r" ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]+|\s+", text):
        word = [alphabet[b] for b in chunk.encode()]
        while len(word) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            word[i : i + 2] = [word[i] + word[i + 1]]
        out.extend(word)
    return out


def _rms_norm(x: F64, g: F64, eps: float) -> F64:
    out: F64 = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g
    return out


def _forward(t: dict[str, F64], meta: dict[str, Any], tokens: list[int]) -> tuple[F64, F64]:
    """Reference llama forward pass: (final residual stream, logits) per position."""
    n_layer = meta["llama.block_count"]
    n_head = meta["llama.attention.head_count"]
    n_kv = meta["llama.attention.head_count_kv"]
    eps = meta["llama.attention.layer_norm_rms_epsilon"]
    n_tok = len(tokens)
    x = t["token_embd.weight"][tokens]
    hd = x.shape[1] // n_head
    pos = np.arange(n_tok)[:, None]
    theta = pos / 10000.0 ** (np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]

    def rope(v: F64) -> F64:
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    mask = np.triu(np.full((n_tok, n_tok), -np.inf), 1)
    for i in range(n_layer):
        p = f"blk.{i}."
        h = _rms_norm(x, t[p + "attn_norm.weight"], eps)
        q = rope((h @ t[p + "attn_q.weight"].T).reshape(n_tok, n_head, hd))
        k = rope((h @ t[p + "attn_k.weight"].T).reshape(n_tok, n_kv, hd))
        v = (h @ t[p + "attn_v.weight"].T).reshape(n_tok, n_kv, hd)
        k = np.repeat(k, n_head // n_kv, axis=1)
        v = np.repeat(v, n_head // n_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", a, v).reshape(n_tok, -1)
        x = x + o @ t[p + "attn_output.weight"].T
        h = _rms_norm(x, t[p + "ffn_norm.weight"], eps)
        g = h @ t[p + "ffn_gate.weight"].T
        up = h @ t[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * up) @ t[p + "ffn_down.weight"].T
    logits = _rms_norm(x, t["output_norm.weight"], eps) @ t["output.weight"].T
    return x, logits


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_file_is_valid_llama_gguf_with_metadata(tiny: Path) -> None:
    """The tiny model is a readable GGUF with llama hyper-parameters and a small size."""
    meta = _fields(gguf.GGUFReader(tiny))
    p = PRESETS["tiny"]
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "tiny-test"
    assert meta["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_F16)
    assert meta["llama.context_length"] == 4096
    assert meta["llama.embedding_length"] == p.n_embd
    assert meta["llama.block_count"] == p.n_layer
    assert meta["llama.attention.head_count"] == p.n_head
    assert meta["llama.attention.head_count_kv"] == p.n_head_kv
    assert meta["llama.rope.dimension_count"] == p.n_embd // p.n_head
    assert meta["tokenizer.chat_template"] == DEFAULT_CHAT_TEMPLATE
    assert tiny.stat().st_size < 4 * 1024 * 1024


def test_tensor_types_are_f16_matrices_and_f32_norms(tiny: Path) -> None:
    """Matrices are stored F16 and norm vectors F32, as converters do."""
    for t in gguf.GGUFReader(tiny).tensors:
        expected = gguf.GGMLQuantizationType.F32 if len(t.shape) == 1 else gguf.GGMLQuantizationType.F16
        assert t.tensor_type == expected, t.name


def test_f32_file_type_stores_f32_matrices(tmp_path: Path) -> None:
    """file_type="F32" writes every tensor as F32 and says so in general.file_type."""
    reader = gguf.GGUFReader(write_model(tmp_path / "m.gguf", file_type="F32"))
    assert _fields(reader)["general.file_type"] == int(gguf.LlamaFileType.ALL_F32)
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}


def test_tokenizer_is_byte_level_bpe_with_special_tokens(tiny: Path) -> None:
    """Vocab has all 256 GPT-2 byte tokens, hundreds of consistent merges and control specials."""
    meta = _fields(gguf.GGUFReader(tiny))
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta["tokenizer.ggml.token_type"]
    merges: list[str] = meta["tokenizer.ggml.merges"]
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    assert set(_gpt2_byte_alphabet()) <= set(tokens)
    assert len(tokens) == len(set(tokens)) == len(types) == meta["llama.vocab_size"]
    assert len(merges) >= 200
    vocab = set(tokens)
    for merge in merges:
        left, right = merge.split(" ")
        assert {left, right, left + right} <= vocab, merge
    ids = {tok: i for i, tok in enumerate(tokens)}
    assert meta["tokenizer.ggml.bos_token_id"] == ids[BOS_TOKEN]
    assert meta["tokenizer.ggml.eos_token_id"] == ids[IM_END]
    assert meta["tokenizer.ggml.add_bos_token"] is False
    for special in (BOS_TOKEN, IM_START, IM_END):
        assert types[ids[special]] == gguf.TokenType.CONTROL


def test_merges_compress_english_text(tiny: Path) -> None:
    """Applying the merges turns common English into far fewer tokens than bytes."""
    meta = _fields(gguf.GGUFReader(tiny))
    text = "Hello world, the quick brown fox jumps over the lazy dog."
    pieces = _bpe_encode(text, meta["tokenizer.ggml.merges"])
    assert "".join(pieces) == "".join(_gpt2_byte_alphabet()[b] for b in text.encode())
    assert set(pieces) <= set(meta["tokenizer.ggml.tokens"])
    assert len(pieces) < len(text) / 2


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    """Generation is deterministic per seed and the seed actually changes the weights."""
    a = write_model(tmp_path / "a.gguf", seed=3).read_bytes()
    b = write_model(tmp_path / "b.gguf", seed=3).read_bytes()
    c = write_model(tmp_path / "c.gguf", seed=4).read_bytes()
    assert a == b
    assert a != c


def test_options_reach_metadata(tmp_path: Path) -> None:
    """context_length and name are written, and chat_template=None omits the template key."""
    path = write_model(tmp_path / "m.gguf", context_length=1234, chat_template=None, name="other")
    meta = _fields(gguf.GGUFReader(path))
    assert meta["llama.context_length"] == 1234
    assert meta["general.name"] == "other"
    assert "tokenizer.chat_template" not in meta


def test_embedding_model_declares_mean_pooling(tmp_path: Path) -> None:
    """write_embedding_model marks the GGUF as an embedding model and has no template."""
    meta = _fields(gguf.GGUFReader(write_embedding_model(tmp_path / "e.gguf")))
    assert meta["llama.pooling_type"] == int(gguf.PoolingType.MEAN)
    assert "tokenizer.chat_template" not in meta


def test_unknown_preset_and_file_type_are_rejected(tmp_path: Path) -> None:
    """Typos in preset or file_type fail loudly instead of writing something else."""
    with pytest.raises(ValueError, match="preset"):
        write_model(tmp_path / "m.gguf", preset="huge")
    with pytest.raises(ValueError, match="file_type"):
        write_model(tmp_path / "m.gguf", file_type="Q4_0")


def test_bench_preset_is_a_few_hundred_megabytes() -> None:
    """The bench preset's F16 parameter count lands in the 250-400 MB range."""
    p = PRESETS["bench"]
    n_vocab = len(build_vocab().tokens)
    hd = p.n_embd // p.n_head
    per_layer = p.n_embd * hd * (2 * p.n_head + 2 * p.n_head_kv) + 3 * p.n_embd * p.n_ff
    params = p.n_layer * per_layer + 2 * n_vocab * p.n_embd
    assert 250e6 <= 2 * params <= 400e6


def test_reserved_dimension_is_structurally_isolated(tiny: Path) -> None:
    """Dim k is constant in every embedding, unread by input projections and unwritten by outputs."""
    t = _tensors(gguf.GGUFReader(tiny))
    embd = t["token_embd.weight"]
    k = embd.shape[1] - 1
    assert np.all(embd[:, k] == embd[0, k]) and embd[0, k] > 0
    for name, w in t.items():
        if name.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_gate.weight", "ffn_up.weight")):
            assert not w[:, k].any(), name
        if name.endswith(("attn_output.weight", "ffn_down.weight")):
            assert not w[k, :].any(), name
    assert t["output_norm.weight"][k] > 0


def test_banned_logits_are_bounded_below_every_allowed_logit(tiny: Path) -> None:
    """From spectral norms alone, every banned token's logit is LOGIT_MARGIN below every allowed one."""
    reader = gguf.GGUFReader(tiny)
    meta, t = _fields(reader), _tensors(reader)
    n_head = meta["llama.attention.head_count"]
    eps = meta["llama.attention.layer_norm_rms_epsilon"]
    embd = t["token_embd.weight"]
    n = embd.shape[1]
    k = n - 1
    c = embd[0, k]

    def spec(w: F64) -> float:
        return float(np.linalg.norm(w, 2))

    def normed_rest(r: float, g: F64) -> float:
        # max |(g * rmsnorm(x))_rest| when |x_rest| <= r and x_k == c
        return float(np.abs(np.delete(g, k)).max() * np.sqrt(n) * r / np.hypot(c, r))

    r = float(np.linalg.norm(np.delete(embd, k, axis=1), axis=1).max())
    for i in range(meta["llama.block_count"]):
        p = f"blk.{i}."
        u = normed_rest(r, t[p + "attn_norm.weight"])
        r += spec(t[p + "attn_output.weight"]) * np.sqrt(n_head) * spec(t[p + "attn_v.weight"]) * u
        u = normed_rest(r, t[p + "ffn_norm.weight"])
        gate_row = np.linalg.norm(t[p + "ffn_gate.weight"], axis=1).max()
        r += spec(t[p + "ffn_down.weight"]) * gate_row * spec(t[p + "ffn_up.weight"]) * u * u

    g_out = t["output_norm.weight"]
    reserved_min = g_out[k] * np.sqrt(n) * c / np.sqrt(c * c + r * r + n * eps)
    rest_max = normed_rest(r, g_out)

    out = t["output.weight"]
    vocab = build_vocab()
    banned = sorted(vocab.banned_ids)
    allowed = sorted(set(range(out.shape[0])) - vocab.banned_ids)
    assert {vocab.bos_id, vocab.im_start_id, vocab.im_end_id} <= set(banned)
    assert not out[allowed, k].any()
    assert not np.delete(out[banned], k, axis=1).any()
    worst_banned = float(out[banned, k].max()) * reserved_min  # all negative
    worst_allowed = -float(np.linalg.norm(out[allowed], axis=1).max()) * rest_max
    assert worst_banned <= worst_allowed - LOGIT_MARGIN


def test_reference_forward_never_prefers_a_banned_token(tiny: Path) -> None:
    """A float64 forward pass over prompts with special tokens keeps dim k and the logit gap."""
    reader = gguf.GGUFReader(tiny)
    meta, t = _fields(reader), _tensors(reader)
    vocab = build_vocab()
    banned = sorted(vocab.banned_ids)
    allowed = sorted(set(range(len(vocab.tokens))) - vocab.banned_ids)
    rng = np.random.default_rng(0)
    for _ in range(4):
        prompt = [vocab.im_start_id, *rng.integers(0, len(vocab.tokens), 40).tolist(), vocab.im_end_id]
        x, logits = _forward(t, meta, prompt)
        k = x.shape[1] - 1
        assert np.all(x[:, k] == t["token_embd.weight"][0, k])
        gap = logits[:, allowed].min(axis=1) - logits[:, banned].max(axis=1)
        assert np.all(gap >= LOGIT_MARGIN)
        # The allowed logits are spread out, so greedy choices are not float-rounding ties.
        assert np.all(logits[:, allowed].std(axis=1) > 1.0)
