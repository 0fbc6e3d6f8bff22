"""Tiny Hugging Face-layout llama models for converter tests that must never download anything.

``write_hf_llama`` writes what ``ollama create`` uploads for a safetensors model: ``config.json``
(``LlamaForCausalLM``), ``model.safetensors`` with seeded random float16 weights, and a tokenizer.

The tokenizer is a SentencePiece ``tokenizer.model`` trained in-process on a few sentences. That choice
is what makes the converter work offline: for llama it tries SentencePiece first, which writes
``tokenizer.ggml.pre = default`` without looking at the tokenizer any further, whereas a BPE
``tokenizer.json`` goes through a pre-tokenizer fingerprint that only known, published tokenizers
pass. ``byte_fallback`` gives the 256 ``<0xNN>`` pieces that llama.cpp's SPM tokenizer expects.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["HFLlamaShape", "TINY_HF", "expected_gguf_tensor_count", "write_hf_llama"]

_TEXT = (
    "the quick brown fox jumps over the lazy dog",
    "a tiny model for tests learns nothing at all",
    "hello world, hello llama, hello ollama",
    "models are converted from safetensors to gguf",
    "every test runs offline and finishes in seconds",
)

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<s>' + message['role'] + ': ' + message['content'] + '</s>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<s>assistant: ' }}{% endif %}"
)


@dataclass(frozen=True)
class HFLlamaShape:
    """The dimensions of a generated model (``vocab_size`` must exceed the 259 byte/control pieces)."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    vocab_size: int = 320
    max_position_embeddings: int = 256


TINY_HF = HFLlamaShape()


def expected_gguf_tensor_count(shape: HFLlamaShape = TINY_HF) -> int:
    """token_embd, output_norm, output, plus nine tensors per layer (q, k, v, o, gate, up, down, 2 norms)."""
    return 3 + 9 * shape.num_hidden_layers


def _tokenizer_model(vocab_size: int) -> bytes:
    # Imported here so that importing this module does not need the convert extra.
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TEXT * 4),
        model_writer=out,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return out.getvalue()


def _weights(shape: HFLlamaShape, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, f, v = shape.hidden_size, shape.intermediate_size, shape.vocab_size
    head_dim = h // shape.num_attention_heads
    kv = head_dim * shape.num_key_value_heads

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float16)

    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": mat(v, h),
        "model.norm.weight": np.ones(h, dtype=np.float16),
        "lm_head.weight": mat(v, h),
    }
    for i in range(shape.num_hidden_layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": mat(h, h),
            p + "self_attn.k_proj.weight": mat(kv, h),
            p + "self_attn.v_proj.weight": mat(kv, h),
            p + "self_attn.o_proj.weight": mat(h, h),
            p + "mlp.gate_proj.weight": mat(f, h),
            p + "mlp.up_proj.weight": mat(f, h),
            p + "mlp.down_proj.weight": mat(h, f),
            p + "input_layernorm.weight": np.ones(h, dtype=np.float16),
            p + "post_attention_layernorm.weight": np.ones(h, dtype=np.float16),
        }
    return tensors


def write_hf_llama(directory: Path, shape: HFLlamaShape = TINY_HF, *, seed: int = 0) -> Path:
    """Write a tiny ``LlamaForCausalLM`` checkpoint into ``directory`` (created) and return it."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": shape.max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float16",
    }
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": shape.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (directory / "tokenizer.model").write_bytes(_tokenizer_model(shape.vocab_size))
    save_file(_weights(shape, seed), str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
