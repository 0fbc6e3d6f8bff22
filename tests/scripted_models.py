"""Tiny GGUF models whose output is a chosen token sequence (a "script").

`write_scripted_model` writes a ``llama``-architecture GGUF that the stock
``llama-server`` loads.  Each key of ``scripts`` is a *trigger*: a string added
to the vocabulary as a control token, so a prompt that ends with it tokenizes
to that single token (llama-server parses special tokens in prompts).  After
a trigger the model emits the script's pieces, one vocabulary token per piece,
and then EOS (``<|im_end|>``)::

    write_scripted_model(path, {"<|go|>": ["<th", "ink>", "Hmm", "</think>", " Yes."]})
    # POST /completion {"prompt": "Q: <|go|>"}  ->  "<think>Hmm</think> Yes.", stop_type "eos"

Why the output is deterministic
-------------------------------
The model is a *bigram* model: the next token is a function of the current
token alone, and that function is the script.

* Every matrix inside the transformer block (``attn_q/k/v/output``,
  ``ffn_gate/up/down``) is exactly zero.  Attention then outputs
  ``softmax(0) . 0 = 0`` and the FFN ``silu(0) * 0 = 0``, exactly, in IEEE
  arithmetic, on any backend, whatever the position, the context, the batch
  or the KV cache.  The residual stream at the final norm is therefore
  exactly the current token's embedding.
* Every token that has a successor of its own (the triggers and the piece
  tokens) gets its own one-hot embedding direction ``e_d`` (d >= 1); every
  other token shares ``e_0``.  ``output_norm`` is all ones, so the final RMS
  norm maps ``e_d`` to ``c * e_d`` with ``c = 1 / sqrt(1/n_embd + eps)``, and
  the logits are ``c * output.weight[:, d]``: one fixed logit vector per
  direction.
* In column ``d`` of ``output.weight`` the successor's entry gives it the
  logit ``NOISE + LOGIT_MARGIN + 1``; the control tokens other than EOS (BOS,
  ``<|im_start|>``, the triggers) get ``-(NOISE + LOGIT_MARGIN + 1)`` in every
  column; every other entry is seeded noise in ``[-NOISE, NOISE]`` logits, so
  the distribution a sampler sees is not degenerate.  The successor of a
  script's last piece, and of every token outside the scripts, is EOS.
* So the successor's logit is at least `LOGIT_MARGIN` (200) above every other
  logit (the writer re-checks this on the stored values).  Greedy decoding
  picks it; top-k / top-p (< 1) / min-p keep only it; and at temperature
  ``T < ~1.9`` every other token's softmax weight ``exp(-200/T)`` underflows
  to exactly 0 in float32, so plain sampling picks it with probability 1.
  A repeat penalty (which divides a positive logit by the penalty) or small
  presence/frequency penalties leave a margin of well over 100.

Because each token has exactly one successor, every piece of every script
must be a distinct token; `write_scripted_model` raises `ValueError`
otherwise.

The tokenizer
-------------
A GPT-2 style byte-level BPE tokenizer: the 256 GPT-2 byte tokens (so any
prompt tokenizes), one merge that no text can trigger (a letter followed by a
digit never falls in one pre-token), ``<|endoftext|>`` (BOS), ``<|im_start|>``
and ``<|im_end|>`` (EOS/EOT), as in `tests.models`.  Then:

* ``extra_special`` strings become USER_DEFINED tokens, stored raw.  llama.cpp
  always renders those in output and always matches them in prompts, like
  Qwen's ``<think>`` / ``<tool_call>``.  A piece equal to one of them *is*
  that token.
* Triggers become CONTROL tokens, stored raw.  llama.cpp matches special
  tokens longest first, so a trigger may contain other specials and any text
  (e.g. `ASSISTANT_TRIGGER`, ``"<|im_start|>assistant\\n"``, which turns every
  ChatML generation prompt into a trigger).  CONTROL tokens are matched only
  where the prompt is tokenized with special-token parsing (llama-server's
  ``/completion``, ``/tokenize`` and chat endpoints do).
* Every other piece becomes a NORMAL token whose text is the GPT-2 byte
  encoding of its UTF-8 bytes (``" The"`` is stored as ``"ĠThe"``), so it
  detokenizes to exactly the piece.  With no merges to build them, such
  tokens never come out of tokenizing a prompt, except:
* a piece that is a single byte (``"\\n"``, ``"."``, ``" "``) *is* that byte
  token, which prompts do contain: a prompt ending in that byte continues the
  script from there (e.g. ChatML's ``"assistant\\n"`` ends in ``"\\n"``).

Every token outside the scripts is followed by EOS, so a prompt that does not
end in a trigger (or a piece) gets an empty completion.  `ValueError` is
raised for: a piece used twice (in one script or across scripts), an empty
trigger or piece, a piece that is a control token (a trigger, BOS,
``<|im_start|>``, ``<|im_end|>``), a trigger or extra special whose text is
already a token (e.g. a one-character trigger such as ``"x"``), and any text
llama.cpp would force to end generation (``"</s>"``, ``"<|endoftext|>"``...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from tests.models import (
    BOS_TOKEN,
    DEFAULT_CHAT_TEMPLATE,
    IM_END,
    IM_START,
    LOGIT_MARGIN,
    RMS_EPS,
    Preset,
    Vocab,
    gpt2_byte_table,
    write_llama_gguf,
)

__all__ = [
    "ASSISTANT_TRIGGER",
    "LOGIT_MARGIN",
    "NOISE",
    "ScriptPlan",
    "encode_piece",
    "plan_scripts",
    "write_scripted_model",
]

# The generation prompt of the default (ChatML) template: used as a trigger,
# every chat request's reply is that script.
ASSISTANT_TRIGGER = IM_START + "assistant\n"

# Amplitude (in logits, after the final norm) of the seeded noise on
# non-successor tokens.
NOISE = 4.0
_HIGH = NOISE + LOGIT_MARGIN + 1.0  # successor logit; 1 logit of slack for float rounding

_HEAD_DIM = 64  # keeps every backend's flash-attention kernels applicable

# The one merge the gpt2 tokenizer needs to load (llama.cpp refuses a BPE
# vocabulary without a merges key, and gguf-py drops empty arrays).  The
# gpt-2 pre-tokenizer never puts a letter and a digit in one chunk, so this
# merge never fires on real text.
_MERGE = ("a", "0")

# Texts llama.cpp (vendored 0c1e570, llama-vocab.cpp) turns into
# end-of-generation tokens whatever their declared type; a trigger or piece
# spelled like one would stop generation.
_LLAMA_CPP_EOG_TEXTS = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
        "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
        "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
        "<|fim_pad|>", "<fim-pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>",
        "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    }
)  # fmt: skip

_NORMAL = int(gguf.TokenType.NORMAL)
_CONTROL = int(gguf.TokenType.CONTROL)
_USER_DEFINED = int(gguf.TokenType.USER_DEFINED)

Array = npt.NDArray[np.float32]


def encode_piece(text: str) -> str:
    """The vocabulary spelling of a plain-text piece: GPT-2 byte encoding of its UTF-8."""
    table = gpt2_byte_table()
    return "".join(table[b] for b in text.encode("utf-8"))


@dataclass(frozen=True)
class ScriptPlan:
    """The vocabulary of a scripted model and its successor function."""

    # Its banned_ids are the control tokens other than EOS: pushed far below
    # everything else.
    vocab: Vocab
    trigger_ids: Mapping[str, int]
    # Piece text -> token id (a piece equal to an extra special is that token).
    piece_ids: Mapping[str, int]
    # Token id -> next token id, for the triggers and piece tokens; every
    # other token is followed by EOS.  Insertion order fixes the embedding
    # direction (1, 2, ...) of each token.
    successors: Mapping[int, int]

    def successor(self, token_id: int) -> int:
        return self.successors.get(token_id, self.vocab.eos_id)


def _check_text(what: str, text: object) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {text!r}")
    if not text:
        raise ValueError(f"{what} must not be empty")
    if text in _LLAMA_CPP_EOG_TEXTS:
        raise ValueError(f"{what} {text!r} is spelled like a token llama.cpp treats as end of generation")
    return text


def plan_scripts(scripts: Mapping[str, Sequence[str]], extra_special: Sequence[str] = ()) -> ScriptPlan:
    """Validate ``scripts`` and lay out the vocabulary; raises ValueError on conflicts."""
    if isinstance(extra_special, str):
        raise ValueError("extra_special must be a sequence of strings, not a string")
    tokens: list[str] = []
    types: list[int] = []
    index: dict[str, int] = {}  # stored text -> id; llama.cpp aborts on duplicate texts

    def add(text: str, ttype: int) -> int:
        tokens.append(text)
        types.append(ttype)
        index[text] = len(tokens) - 1
        return len(tokens) - 1

    for byte_token in gpt2_byte_table():
        add(byte_token, _NORMAL)
    add("".join(_MERGE), _NORMAL)
    bos_id = add(BOS_TOKEN, _CONTROL)
    im_start_id = add(IM_START, _CONTROL)
    eos_id = add(IM_END, _CONTROL)
    reserved = {BOS_TOKEN, IM_START, IM_END}

    def add_raw(what: str, text: str, ttype: int) -> int:
        if text in reserved:
            raise ValueError(f"{what} {text!r} is already a control token of the base vocabulary")
        if text in index:
            raise ValueError(f"{what} {text!r} clashes with the stored text of token {index[text]}")
        return add(text, ttype)

    special_ids: dict[str, int] = {}
    for text in extra_special:
        _check_text("extra special token", text)
        if text in special_ids:
            raise ValueError(f"extra special token {text!r} is listed twice")
        special_ids[text] = add_raw("extra special token", text, _USER_DEFINED)

    trigger_ids: dict[str, int] = {}
    for trigger in scripts:
        _check_text("trigger", trigger)
        trigger_ids[trigger] = add_raw("trigger", trigger, _CONTROL)

    piece_ids: dict[str, int] = {}
    owner: dict[str, str] = {}
    successors: dict[int, int] = {}
    for trigger, pieces in scripts.items():
        if isinstance(pieces, str):
            raise ValueError(f"the script of {trigger!r} must be a sequence of pieces, not a string")
        previous = trigger_ids[trigger]
        for piece in pieces:
            _check_text(f"piece of script {trigger!r}", piece)
            if piece in reserved or piece in trigger_ids:
                raise ValueError(f"piece {piece!r} of script {trigger!r} is a control token; the model cannot emit it")
            if piece in owner:
                where = "twice in that script" if owner[piece] == trigger else f"also in script {owner[piece]!r}"
                raise ValueError(
                    f"piece {piece!r} of script {trigger!r} appears {where}: in a bigram model every piece"
                    " must be a distinct token, because a token has exactly one successor"
                )
            owner[piece] = trigger
            if piece in special_ids:
                token_id = special_ids[piece]
            else:
                spelled = encode_piece(piece)
                if spelled not in index:
                    token_id = add(spelled, _NORMAL)
                elif types[index[spelled]] == _NORMAL:
                    token_id = index[spelled]  # a byte token (or the merge token)
                else:
                    raise ValueError(
                        f"piece {piece!r} of script {trigger!r} is spelled {spelled!r} in the vocabulary,"
                        f" which is the text of special token {index[spelled]}"
                    )
            piece_ids[piece] = token_id
            successors[previous] = token_id
            previous = token_id
        successors[previous] = eos_id

    banned = frozenset({bos_id, im_start_id, *trigger_ids.values()})
    vocab = Vocab(
        tokens=tuple(tokens), token_types=tuple(types), merges=(" ".join(_MERGE),),
        bos_id=bos_id, im_start_id=im_start_id, im_end_id=eos_id, banned_ids=banned,
    )  # fmt: skip
    return ScriptPlan(vocab=vocab, trigger_ids=trigger_ids, piece_ids=piece_ids, successors=successors)


def _shape(plan: ScriptPlan) -> Preset:
    """One block; a dimension per embedding direction, rounded up to whole ``_HEAD_DIM`` heads."""
    n_dirs = 1 + len(plan.successors)
    n_embd = _HEAD_DIM * max(1, math.ceil(n_dirs / _HEAD_DIM))
    n_head = n_embd // _HEAD_DIM
    return Preset(n_embd=n_embd, n_layer=1, n_head=n_head, n_head_kv=n_head, n_ff=_HEAD_DIM)


def _tensors(plan: ScriptPlan, shape: Preset, seed: int) -> dict[str, Array]:
    """All tensors (F32)."""
    n_vocab = len(plan.vocab.tokens)
    n_embd, n_ff = shape.n_embd, shape.n_ff

    direction = {t: d for d, t in enumerate(plan.successors, start=1)}
    embd = np.zeros((n_vocab, n_embd), dtype=np.float32)
    for t in range(n_vocab):
        embd[t, direction.get(t, 0)] = 1.0

    ones = np.ones(n_embd, dtype=np.float32)
    tensors: dict[str, Array] = {"token_embd.weight": embd}
    tensors |= {
        "blk.0.attn_norm.weight": ones,
        "blk.0.attn_q.weight": np.zeros((n_embd, n_embd), dtype=np.float32),
        "blk.0.attn_k.weight": np.zeros((n_embd, n_embd), dtype=np.float32),
        "blk.0.attn_v.weight": np.zeros((n_embd, n_embd), dtype=np.float32),
        "blk.0.attn_output.weight": np.zeros((n_embd, n_embd), dtype=np.float32),
        "blk.0.ffn_norm.weight": ones.copy(),
        "blk.0.ffn_gate.weight": np.zeros((n_ff, n_embd), dtype=np.float32),
        "blk.0.ffn_up.weight": np.zeros((n_ff, n_embd), dtype=np.float32),
        "blk.0.ffn_down.weight": np.zeros((n_embd, n_ff), dtype=np.float32),
        "output_norm.weight": ones.copy(),
    }

    c = 1.0 / math.sqrt(1.0 / n_embd + RMS_EPS)  # |rmsnorm(e_d)|, the gain on every logit
    rng = np.random.default_rng(seed)
    out = (rng.uniform(-NOISE, NOISE, size=(n_vocab, n_embd)) / c).astype(np.float32)
    out[plan.vocab.eos_id, 0] = _HIGH / c
    for t, d in direction.items():
        out[plan.successor(t), d] = _HIGH / c
    for t in plan.vocab.banned_ids:
        out[t, :] = -_HIGH / c
    tensors["output.weight"] = out
    _check_margin(plan, tensors)
    return tensors


def _check_margin(plan: ScriptPlan, tensors: Mapping[str, Array]) -> None:
    """Recompute every token's logits from the stored values (belt and braces)."""
    embd = tensors["token_embd.weight"].astype(np.float64)
    xn = embd / np.sqrt((embd * embd).mean(axis=1, keepdims=True) + RMS_EPS)
    xn *= tensors["output_norm.weight"].astype(np.float64)
    logits = xn @ tensors["output.weight"].astype(np.float64).T
    for t in range(len(plan.vocab.tokens)):
        row = logits[t]
        succ = plan.successor(t)
        others = np.delete(row, succ)
        if row[succ] - others.max() < LOGIT_MARGIN:
            raise AssertionError(f"token {t}: successor margin {row[succ] - others.max()} < {LOGIT_MARGIN}")


def write_scripted_model(
    path: Path,
    scripts: Mapping[str, Sequence[str]],
    *,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    extra_special: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Write a llama GGUF that answers each trigger with its script, then EOS; returns ``path``.

    ``scripts`` maps trigger strings to their output pieces (one token each).
    ``chat_template`` defaults to the ChatML template of `tests.models`;
    ``None`` omits the key.  ``extra_special`` adds USER_DEFINED tokens
    (e.g. ``"<think>"``) that pieces may use.  ``seed`` only moves the noise
    on non-successor logits; the output does not depend on it.  Raises
    ValueError for empty or duplicate pieces, a piece that is a control token,
    a trigger that clashes with another special token, and the like.
    """
    plan = plan_scripts(scripts, extra_special)
    shape = _shape(plan)
    return write_llama_gguf(
        path,
        preset=shape,
        vocab=plan.vocab,
        tensors=_tensors(plan, shape, seed),
        ftype=gguf.LlamaFileType.ALL_F32,
        name="scripted-test",
        context_length=4096,
        chat_template=chat_template,
    )
