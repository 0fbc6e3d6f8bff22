"""Tiny random-weight GGUF models for tests that must never download anything.

`write_model` produces a ``llama``-architecture GGUF that the stock
``llama-server`` loads, with a real byte-level BPE tokenizer (GPT-2 byte
alphabet plus a few hundred merges learned from a built-in English text) and
a ChatML chat template.  Weights are drawn from a seeded numpy RNG, so the
same arguments always produce byte-identical files.

The EOS guarantee
-----------------
Tests want exactly ``n_predict`` tokens of plain text, so the model must never
sample an end-of-generation token (or any other control token, or a byte that
is not printable ASCII).  That is made a structural property of the weights
instead of a matter of luck:

* Hidden dimension ``k`` (the last one) is reserved.  Every row of
  ``token_embd`` holds the constant ``C`` there.
* Every projection that reads the residual stream (``attn_q/k/v``,
  ``ffn_gate/up``) has column ``k`` zeroed, and every projection that writes
  it (``attn_output``, ``ffn_down``) has row ``k`` zeroed.  The residual
  stream therefore carries exactly ``C`` in dimension ``k`` at every layer and
  position, and the layers never see it.
* ``output_norm`` has weight 1 in dimension ``k``.  After the final RMS norm,
  ``xn[k] = sqrt(n) * C / sqrt(C^2 + |x_rest|^2 + n*eps)``, which is strictly
  positive and, given an upper bound ``R`` on ``|x_rest|``, at least
  ``L = sqrt(n) * C / sqrt(C^2 + R^2 + n*eps)``.
* ``R`` is computed when the file is written, from spectral norms of the
  (already F16-rounded) weights: attention outputs are convex combinations of
  values, and ``|silu(a) * b| <= |a|_inf * |b|``, so each layer's update is
  bounded by a function of the bound on its input.
* In ``output.weight``, every banned token row is zero except ``-B`` in
  column ``k``, and every allowed token row has 0 in column ``k``.  So a
  banned logit is at most ``-B * L`` while an allowed logit is at least
  ``-|w_i| * U`` (``U`` bounds the norm of the rest of the normed state).
  ``B`` is chosen so that every banned logit sits at least `LOGIT_MARGIN`
  below *every* allowed logit: greedy decoding can never pick one, any top-k
  sampler drops them, and at temperature <= 1 their probability underflows
  to exactly zero in float32.

The unit tests re-derive that bound independently from the written file.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

__all__ = [
    "BANNED_BYTES",
    "BOS_TOKEN",
    "DEFAULT_CHAT_TEMPLATE",
    "IM_END",
    "IM_START",
    "LOGIT_MARGIN",
    "PRESETS",
    "RMS_EPS",
    "Preset",
    "Vocab",
    "build_vocab",
    "gpt2_byte_table",
    "write_embedding_model",
    "write_llama_gguf",
    "write_model",
]

BOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Classic ChatML: llama.cpp recognises it both through its Jinja engine and
# through its built-in template detection (it contains "<|im_start|>").  A
# system message, when present, renders like any other turn.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# Minimum gap (in logits) between every banned token and every allowed one.
# 200 is past float32's exp underflow (~104), so at temperature <= 1 a banned
# token's softmax probability is exactly 0.
LOGIT_MARGIN = 200.0

# Byte tokens the model may never emit: everything but printable ASCII, tab and
# newline, so generated text is always valid, printable UTF-8.
BANNED_BYTES: frozenset[int] = frozenset(
    b for b in range(256) if not (0x20 <= b <= 0x7E or b in (0x09, 0x0A))
)

RMS_EPS = 1e-5
_F16_MAX = float(np.finfo(np.float16).max)

# Safety factor on numerically computed spectral norms (eigvalsh in float64 of
# a float32 Gram matrix is accurate to ~1e-6 relative; this leaves headroom).
_NORM_SLACK = 1.001


@dataclass(frozen=True)
class Preset:
    """Model dimensions; ``layer_scale`` is the weight std times sqrt(fan_in)."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    layer_scale: float = 0.5
    # Target std of allowed-token logits: large enough that greedy decoding is
    # not decided by float rounding, small enough that text is not one token.
    logit_std: float = 3.0


PRESETS: dict[str, Preset] = {
    # ~1 MB: loads in milliseconds, for functional tests.  head_dim 64 keeps
    # every backend's flash-attention kernels applicable.
    "tiny": Preset(n_embd=128, n_layer=2, n_head=2, n_head_kv=2, n_ff=384),
    # ~330 MB in F16 (~165M parameters): big enough that decode speed is
    # memory-bandwidth bound like a real model; GQA like modern models.
    "bench": Preset(n_embd=1024, n_layer=14, n_head=16, n_head_kv=4, n_ff=3072),
}


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

# Plain English so that frequent words and word pieces become single tokens.
# Only printable ASCII and newlines: the learned merges must never produce a
# banned byte.
_TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog was not amused, and the
fox ran back into the forest before the sun went down.

Once upon a time there was a small town by the sea. The people of the town
were fishers and farmers, and every morning they would walk down to the water
to see what the night had brought. Some days the boats came home full, and
some days they came home with nothing at all. The children played on the
beach while their parents worked, and in the evening everyone gathered in the
square to share food and tell stories about the old days.

A computer is a machine that can be programmed to carry out sequences of
operations automatically. Modern computers can run many different programs,
and they are used in almost every part of our lives. A program is a set of
instructions that tells the computer what to do. When you write a program,
you think about the problem, you design a solution, and then you test it to
make sure that it works the way you expect.

Hello world! How are you today? I am fine, thank you. What would you like to
talk about? We could talk about the weather, the news, or the book you are
reading. It is a good day to learn something new, and there is always more
to learn than there is time to learn it.

The model reads the prompt, one token at a time, and then it writes an
answer. Each new token depends on the tokens that came before it. If the
answer is too long, the server stops it when the limit is reached. The user
can ask another question, and the assistant will try to answer it as well as
it can. This is how a chat with a language model works.

Water is the most common liquid on the surface of the earth. It covers more
than two thirds of the planet, and all known forms of life need it. When water
is cold enough it turns into ice, and when it is hot enough it turns into
steam. The rain that falls on the mountains flows down into the rivers, and
the rivers carry it back to the sea, where the sun warms it and lifts it into
the sky again.

She said that she would come back in the afternoon, but she did not say when.
He waited for her at the station for a long time, reading the same page of
his book over and over again. When the last train came in and she was not on
it, he walked home slowly through the rain, thinking about what he should
have said to her the day before.

There are many ways to solve a problem. Some people like to start with a plan
and follow it step by step. Other people like to try things and see what
happens. Both ways can work, and the best way often depends on the problem
itself. What matters most is that you keep going, that you learn from what
did not work, and that you are not afraid to ask for help when you need it.

The numbers one, two, three, four, five, six, seven, eight, nine and ten are
the first numbers that most children learn. Later they learn that 1 + 2 = 3,
that 10 - 4 = 6, and that 3 * 4 = 12. These simple facts are the start of a
long journey into mathematics, a subject that has fascinated people for
thousands of years.
"""

# GPT-2 pre-tokenizer ("gpt-2" in llama.cpp), with \\p{L} / \\p{N} spelled in
# Python's re dialect.  Merges only need to be learned on the same kind of
# chunks llama.cpp produces; exact agreement outside ASCII is irrelevant.
_PRETOKENIZE = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"
)

# gguf token types (mirrors gguf.TokenType, spelled out to keep the file
# self-describing).
_TOKEN_NORMAL = int(gguf.TokenType.NORMAL)
_TOKEN_CONTROL = int(gguf.TokenType.CONTROL)


def gpt2_byte_table() -> list[str]:
    """GPT-2's byte-to-printable-unicode table, indexed by byte value."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


@dataclass(frozen=True)
class Vocab:
    """A GPT-2 style byte-level BPE vocabulary, ready to write to GGUF."""

    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    merges: tuple[str, ...]
    bos_id: int
    im_start_id: int
    im_end_id: int
    # Tokens the model must never emit (in `build_vocab`'s: the control tokens
    # and BANNED_BYTES).
    banned_ids: frozenset[int]

    @property
    def eos_id(self) -> int:
        return self.im_end_id


def _learn_merges(text: str, n_merges: int) -> list[tuple[str, str]]:
    """Classic BPE training; ties broken by pair order so the result is stable."""
    byte_map = gpt2_byte_table()
    words: Counter[tuple[str, ...]] = Counter(
        tuple(byte_map[b] for b in chunk.encode("utf-8"))
        for chunk in _PRETOKENIZE.findall(text)
    )
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += freq
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < 2:
            break
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, freq in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


@functools.cache
def build_vocab(n_merges: int = 400) -> Vocab:
    """The tokenizer shared by every preset (it does not depend on the seed)."""
    byte_map = gpt2_byte_table()
    tokens: list[str] = list(byte_map)
    seen = set(tokens)
    merges = _learn_merges(_TRAINING_TEXT, n_merges)
    for left, right in merges:
        # Two merges can in principle spell the same string; a token may only
        # appear once in the vocabulary.
        if left + right not in seen:
            seen.add(left + right)
            tokens.append(left + right)
    token_types = [_TOKEN_NORMAL] * len(tokens)
    specials = {}
    for special in (BOS_TOKEN, IM_START, IM_END):
        specials[special] = len(tokens)
        tokens.append(special)
        token_types.append(_TOKEN_CONTROL)
    banned = set(specials.values()) | set(BANNED_BYTES)
    return Vocab(
        tokens=tuple(tokens),
        token_types=tuple(token_types),
        merges=tuple(f"{a} {b}" for a, b in merges),
        bos_id=specials[BOS_TOKEN],
        im_start_id=specials[IM_START],
        im_end_id=specials[IM_END],
        banned_ids=frozenset(banned),
    )


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------

Array = npt.NDArray[np.float32]


def _spectral_norm(w: npt.NDArray[np.floating]) -> float:
    """Upper bound on the largest singular value (via the smaller Gram matrix)."""
    m = w.astype(np.float32)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    top = float(np.linalg.eigvalsh(gram.astype(np.float64))[-1])
    return float(np.sqrt(max(top, 0.0))) * _NORM_SLACK


def _normed_rest(r: float, c: float, n: int) -> float:
    """Max |rmsnorm(x)| over the non-reserved dims, given |x_rest| <= r, x_k = c."""
    return float(np.sqrt(n) * r / np.sqrt(c * c + r * r))


class _Weights:
    """Draws tensors from one seeded RNG; callers fix the draw order, hence the bytes."""

    def __init__(self, preset: Preset, seed: int, dtype: type[np.floating]) -> None:
        self.p = preset
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.k = preset.n_embd - 1
        # Embedding rows have unit-variance components, so |x_rest| ~ sqrt(n)
        # and C = sqrt(n) gives the reserved dim about the same weight as the
        # rest: the other dims still carry most of the signal after norming.
        self.c = float(np.float16(np.sqrt(preset.n_embd)))

    def store(self, a: Array) -> npt.NDArray[np.floating]:
        """Convert to the storage dtype now, so bounds describe what is written."""
        return a.astype(self.dtype)

    def matrix(self, rows: int, cols: int, *, scale: float) -> Array:
        w = self.rng.standard_normal((rows, cols), dtype=np.float32)
        w *= scale / np.sqrt(cols)
        return w

    def norm_weight(self) -> Array:
        # Gains near 1 like a trained model; positive, and exactly 1 on the
        # reserved dim so its sign (and the EOS bound) survives every norm.
        g: Array = np.abs(1.0 + 0.1 * self.rng.standard_normal(self.p.n_embd, dtype=np.float32))
        g[self.k] = 1.0
        return g

    def reads_residual(self, rows: int) -> npt.NDArray[np.floating]:
        w = self.matrix(rows, self.p.n_embd, scale=self.p.layer_scale)
        w[:, self.k] = 0.0
        return self.store(w)

    def writes_residual(self, cols: int) -> npt.NDArray[np.floating]:
        w = self.matrix(self.p.n_embd, cols, scale=self.p.layer_scale)
        w[self.k, :] = 0.0
        return self.store(w)


@dataclass(frozen=True)
class _Bound:
    """What the writer proved about the banned-token logits (for debugging)."""

    residual_rest: float  # R: bound on |x_rest| at the final norm
    reserved_min: float  # L: lower bound on the normed reserved dim
    banned_weight: float  # B


def _generate(
    preset: Preset, vocab: Vocab, seed: int, dtype: type[np.floating]
) -> tuple[dict[str, npt.NDArray[np.floating]], _Bound]:
    """All tensors (matrices already in ``dtype``, norms F32) and the proven bound."""
    p = preset
    gen = _Weights(p, seed, dtype)
    n, k, c = p.n_embd, gen.k, gen.c
    head_dim = n // p.n_head
    n_vocab = len(vocab.tokens)
    tensors: dict[str, npt.NDArray[np.floating]] = {}

    embd = gen.rng.standard_normal((n_vocab, n), dtype=np.float32)
    embd[:, k] = c
    tensors["token_embd.weight"] = gen.store(embd)
    embd = tensors["token_embd.weight"].astype(np.float32)
    r = float(np.linalg.norm(np.delete(embd, k, axis=1), axis=1).max())
    del embd

    def rest_gain(g: Array) -> float:
        return float(np.abs(np.delete(g, k)).max())

    for i in range(p.n_layer):
        attn_norm = gen.norm_weight()
        wq = gen.reads_residual(p.n_head * head_dim)
        wk = gen.reads_residual(p.n_head_kv * head_dim)
        wv = gen.reads_residual(p.n_head_kv * head_dim)
        wo = gen.writes_residual(p.n_head * head_dim)
        ffn_norm = gen.norm_weight()
        w_gate = gen.reads_residual(p.n_ff)
        w_up = gen.reads_residual(p.n_ff)
        w_down = gen.writes_residual(p.n_ff)
        tensors |= {
            f"blk.{i}.attn_norm.weight": attn_norm,
            f"blk.{i}.attn_q.weight": wq,
            f"blk.{i}.attn_k.weight": wk,
            f"blk.{i}.attn_v.weight": wv,
            f"blk.{i}.attn_output.weight": wo,
            f"blk.{i}.ffn_norm.weight": ffn_norm,
            f"blk.{i}.ffn_gate.weight": w_gate,
            f"blk.{i}.ffn_up.weight": w_up,
            f"blk.{i}.ffn_down.weight": w_down,
        }
        # Attention: each head's output is a convex combination of value
        # vectors, so |concat(heads)| <= sqrt(n_head) * |Wv| * u.
        u = rest_gain(attn_norm) * _normed_rest(r, c, n)
        r += _spectral_norm(wo) * np.sqrt(p.n_head) * _spectral_norm(wv) * u
        # FFN: |silu(a) * b| <= |a|_inf |b|, |a|_inf <= max row norm of Wgate * u.
        u = rest_gain(ffn_norm) * _normed_rest(r, c, n)
        gate_rows = float(np.linalg.norm(w_gate.astype(np.float32), axis=1).max()) * _NORM_SLACK
        r += _spectral_norm(w_down) * gate_rows * _spectral_norm(w_up) * u * u

    out_norm = gen.norm_weight()
    tensors["output_norm.weight"] = out_norm
    # u_final bounds |(g * xn)_rest| (worst case, for the proof); `typical` is
    # its size for an unperturbed embedding (what sets the logit spread).
    u_final = rest_gain(out_norm) * _normed_rest(r, c, n)
    typical = np.sqrt(n - 1) * np.sqrt(n) / np.sqrt(c * c + n - 1)
    out = gen.rng.standard_normal((n_vocab, n), dtype=np.float32)
    out *= p.logit_std / typical
    out[:, k] = 0.0
    allowed = np.array(sorted(set(range(n_vocab)) - vocab.banned_ids))
    out = out.astype(dtype).astype(np.float32)
    worst_allowed = float(np.linalg.norm(out[allowed], axis=1).max()) * u_final
    reserved_min = float(np.sqrt(n) * c / np.sqrt(c * c + r * r + n * RMS_EPS))
    # Scale to a round-ish F16 value with headroom so F16 rounding of B itself
    # cannot eat into the margin.
    banned_weight = float(np.float16((worst_allowed + LOGIT_MARGIN) / reserved_min * 1.01))
    if not np.isfinite(banned_weight) or banned_weight > _F16_MAX:
        raise ValueError(
            f"preset cannot guarantee the EOS bound in F16 (needs B={banned_weight})"
        )
    for t in vocab.banned_ids:
        out[t, :] = 0.0
        out[t, k] = -banned_weight
    tensors["output.weight"] = gen.store(out)
    return tensors, _Bound(float(r), reserved_min, banned_weight)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

_FILE_TYPES: dict[str, tuple[type[np.floating], gguf.LlamaFileType]] = {
    "F16": (np.float16, gguf.LlamaFileType.MOSTLY_F16),
    "F32": (np.float32, gguf.LlamaFileType.ALL_F32),
}


def write_llama_gguf(
    path: Path,
    *,
    preset: Preset,
    vocab: Vocab,
    tensors: Mapping[str, npt.NDArray[np.floating]],
    ftype: gguf.LlamaFileType,
    name: str,
    context_length: int,
    chat_template: str | None,
    pooling: gguf.PoolingType | None = None,
) -> Path:
    """Write a ``llama`` GGUF with a GPT-2 byte-level BPE tokenizer, as the stock llama-server
    loads it; returns ``path``.  Shared by every test model whose tensors and vocabulary are
    made elsewhere (`write_model` here, `tests.scripted_models`)."""
    p = preset
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arch = "llama"
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_file_type(int(ftype))
    writer.add_context_length(context_length)
    writer.add_embedding_length(p.n_embd)
    writer.add_block_count(p.n_layer)
    writer.add_feed_forward_length(p.n_ff)
    writer.add_head_count(p.n_head)
    writer.add_head_count_kv(p.n_head_kv)
    writer.add_rope_dimension_count(p.n_embd // p.n_head)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(len(vocab.tokens))
    if pooling is not None:
        writer.add_pooling_type(pooling)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.token_types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_eot_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.bos_id)
    # ChatML models (Qwen et al.) do not prepend BOS; the template carries
    # all the structure.
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    return finish_gguf(writer, tensors, path)


def finish_gguf(writer: gguf.GGUFWriter, tensors: dict[str, npt.NDArray[np.floating]], path: Path) -> Path:
    """Add ``tensors`` and write the file ``writer`` was opened on (``path``)."""
    for tname, arr in tensors.items():
        writer.add_tensor(tname, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_header_gguf(path: Path, arch: str) -> Path:
    """A GGUF that holds only its header and ``general.architecture`` (for checks that read no more)."""
    return finish_gguf(gguf.GGUFWriter(path, arch), {}, path)


def _random_weights(
    preset: str, seed: int, file_type: str
) -> tuple[Preset, dict[str, npt.NDArray[np.floating]], gguf.LlamaFileType]:
    """The preset's dimensions, its tensors for ``build_vocab()`` and the GGUF file type."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if file_type not in _FILE_TYPES:
        raise ValueError(f"unsupported file_type {file_type!r}; choose from {sorted(_FILE_TYPES)}")
    p = PRESETS[preset]
    dtype, ftype = _FILE_TYPES[file_type]
    # Norm vectors stay F32 (as every converter does); matrices take the
    # requested storage type.
    tensors, _ = _generate(p, build_vocab(), seed, dtype)
    return p, tensors, ftype


def write_model(
    path: Path,
    *,
    preset: str = "tiny",
    seed: int = 0,
    context_length: int = 4096,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    name: str = "tiny-test",
    file_type: str = "F16",
) -> Path:
    """Write a random-weight llama GGUF that can never emit EOS; returns ``path``.

    ``context_length`` becomes ``llama.context_length`` (what servers use as
    the trained context).  ``chat_template=None`` omits the template key so
    tests can exercise the "no template" code paths.
    """
    p, tensors, ftype = _random_weights(preset, seed, file_type)
    return write_llama_gguf(
        path, preset=p, vocab=build_vocab(), tensors=tensors, ftype=ftype, name=name,
        context_length=context_length, chat_template=chat_template,
    )  # fmt: skip


def write_embedding_model(
    path: Path,
    *,
    preset: str = "tiny",
    seed: int = 0,
    context_length: int = 4096,
    name: str = "tiny-embed",
    file_type: str = "F16",
) -> Path:
    """Like `write_model`, but declares mean pooling and has no chat template.

    ``llama.pooling_type`` is what marks a GGUF as an embedding model (for
    Ollama's capability detection and for llama-server's default pooling).
    """
    p, tensors, ftype = _random_weights(preset, seed, file_type)
    return write_llama_gguf(
        path, preset=p, vocab=build_vocab(), tensors=tensors, ftype=ftype, name=name,
        context_length=context_length, chat_template=None, pooling=gguf.PoolingType.MEAN,
    )  # fmt: skip


def _zeros(*shape: int) -> npt.NDArray[np.floating]:
    """A read-only all-zero F16 array that costs no memory."""
    return np.broadcast_to(np.zeros((), np.float16), shape)


def write_zero_model(path: Path, *, preset: Preset, vocab: Vocab | None = None, name: str | None = None,
                     context_length: int = 32768) -> Path:
    """A llama GGUF of ``preset``'s shape with all-zero F16 weights (norms one): quick to write at any
    size, for measuring memory (buffer sizes do not depend on the values)."""
    p, vocab = preset, vocab or build_vocab()
    e, hd, n_vocab = p.n_embd, p.n_embd // p.n_head, len(vocab.tokens)
    tensors: dict[str, npt.NDArray[np.floating]] = {"token_embd.weight": _zeros(n_vocab, e)}
    for i in range(p.n_layer):
        tensors |= {
            f"blk.{i}.attn_norm.weight": np.ones(e, np.float32),
            f"blk.{i}.attn_q.weight": _zeros(p.n_head * hd, e),
            f"blk.{i}.attn_k.weight": _zeros(p.n_head_kv * hd, e),
            f"blk.{i}.attn_v.weight": _zeros(p.n_head_kv * hd, e),
            f"blk.{i}.attn_output.weight": _zeros(e, p.n_head * hd),
            f"blk.{i}.ffn_norm.weight": np.ones(e, np.float32),
            f"blk.{i}.ffn_gate.weight": _zeros(p.n_ff, e),
            f"blk.{i}.ffn_up.weight": _zeros(p.n_ff, e),
            f"blk.{i}.ffn_down.weight": _zeros(e, p.n_ff),
        }
    tensors |= {"output_norm.weight": np.ones(e, np.float32), "output.weight": _zeros(n_vocab, e)}
    return write_llama_gguf(
        path, preset=p, vocab=vocab, tensors=tensors, ftype=gguf.LlamaFileType.MOSTLY_F16, name=name or Path(path).stem,
        context_length=context_length, chat_template=None,
    )  # fmt: skip
