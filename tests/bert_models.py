"""Tiny random-weight BERT GGUFs: an embedding model and a cross-encoder reranker.

Why BERT: it is the architecture of the real embedding models people pull
(all-MiniLM, bge, nomic's ancestors) and of the classic cross-encoder
rerankers (ms-marco-MiniLM, bge-reranker-base), and llama.cpp runs it through
a code path of its own: bidirectional attention, no KV cache, learned
position embeddings, post-layer-norm blocks, a WordPiece ("WPM") tokenizer,
and for reranking a classification head read from the ``[CLS]`` token.  The
llama-architecture `tests.models.write_embedding_model` exercises none of
that, so tests of ``/api/embed`` and of reranking need these files too.

The files carry what llama.cpp's ``bert`` loader reads, as its converter
would write them for a HuggingFace ``BertModel`` / ``BertForSequenceClassification``:

* ``bert.*`` hyper-parameters, including ``bert.attention.layer_norm_epsilon``
  (required), ``bert.attention.causal = false`` and ``bert.pooling_type``;
* ``tokenizer.ggml.model = "bert"`` with ``tokenizer.ggml.token_type_count``
  (required: the loader refuses a BERT without it) and the vocabulary in
  llama.cpp's "phantom space" form: a word-initial piece ``fox`` is stored as
  ``"\\u2581fox"``, a continuation ``##ing`` as ``"ing"``, control tokens as is;
* ``[CLS]`` as BOS and ``[SEP]`` as EOS and SEP, with add-BOS and add-EOS set
  and add-SEP not: a text becomes ``[CLS] text [SEP]`` and a rerank pair
  ``[CLS] query [SEP] document [SEP]``, BERT's own pair layout;
* tensors ``token_embd``, ``token_types``, ``position_embd`` (one row per
  trained position), ``token_embd_norm``, and per block separate Q/K/V and
  output projections with biases, ``attn_output_norm``, a GELU ``ffn_up`` /
  ``ffn_down`` pair with biases and ``layer_output_norm``;
* for the reranker (``pooling_type = RANK``) the head ``cls`` (n_embd x n_embd,
  tanh) and ``cls.output`` (one label), as in
  ``score = cls.output(tanh(cls(h_[CLS])))``.

Weights are drawn from a seeded numpy RNG at fan-in scale and stored as F32
(the files are a few hundred kB): every block ends in a LayerNorm, so
activations stay O(1) and no input can produce a NaN or an infinity.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from tests.models import _TRAINING_TEXT, Preset, finish_gguf

__all__ = [
    "BERT_PRESET",
    "CLS_TOKEN",
    "LAYER_NORM_EPS",
    "MASK_TOKEN",
    "N_TOKEN_TYPES",
    "PAD_TOKEN",
    "RERANK_LABEL",
    "SEP_TOKEN",
    "UNK_TOKEN",
    "WordPieceVocab",
    "build_wordpiece_vocab",
    "write_bert_embedding_model",
    "write_bert_reranker_model",
]

# 2 blocks of 4 heads of 16: the smallest shape that still has several heads
# and layers, so nothing in the graph degenerates.
BERT_PRESET = Preset(n_embd=64, n_layer=2, n_head=4, n_head_kv=4, n_ff=128)

LAYER_NORM_EPS = 1e-12  # BERT's
N_TOKEN_TYPES = 2  # "sentence A" / "sentence B", as in every BERT
RERANK_LABEL = "LABEL_0"  # what a one-label HF cross-encoder's id2label holds

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
_SPECIALS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)

# Common English suffixes, as continuation pieces (on top of single letters).
_SUFFIXES = ("es", "ed", "er", "ers", "est", "ing", "ly", "tion", "ness", "ment", "ful", "able")

_PHANTOM_SPACE = "\u2581"

Array = npt.NDArray[np.float32]


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WordPieceVocab:
    """A WordPiece vocabulary in HuggingFace spelling (``##`` marks a continuation)."""

    pieces: tuple[str, ...]

    def id_of(self, piece: str) -> int:
        return self.pieces.index(piece)

    @property
    def pad_id(self) -> int:
        return self.id_of(PAD_TOKEN)

    @property
    def unk_id(self) -> int:
        return self.id_of(UNK_TOKEN)

    @property
    def cls_id(self) -> int:
        return self.id_of(CLS_TOKEN)

    @property
    def sep_id(self) -> int:
        return self.id_of(SEP_TOKEN)

    @property
    def mask_id(self) -> int:
        return self.id_of(MASK_TOKEN)

    def gguf_tokens(self) -> list[str]:
        """The pieces as llama.cpp's WPM tokenizer looks them up: word starts behind U+2581,
        continuations without ``##``, control tokens unchanged."""
        out: list[str] = []
        for piece in self.pieces:
            if piece in _SPECIALS:
                out.append(piece)
            elif piece.startswith("##"):
                out.append(piece[2:])
            else:
                out.append(_PHANTOM_SPACE + piece)
        return out

    def gguf_token_types(self) -> list[int]:
        types = {UNK_TOKEN: gguf.TokenType.UNKNOWN}
        return [
            int(types.get(p, gguf.TokenType.CONTROL if p in _SPECIALS else gguf.TokenType.NORMAL))
            for p in self.pieces
        ]


@functools.cache
def build_wordpiece_vocab() -> WordPieceVocab:
    """Specials, then every lowercase letter, digit and ASCII punctuation mark as a word,
    every letter and digit and a few suffixes as ``##`` continuations, then the words of
    `tests.models`' English training text.

    Single letters both ways make every lowercase ASCII word tokenizable (llama.cpp's WPM
    tokenizer lowercases its input), so ordinary English never becomes ``[UNK]``; the whole
    words keep common text to about one piece per word, like a real vocabulary.
    """
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punctuation = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    continuations = [f"##{s}" for s in (*letters, *digits, *_SUFFIXES)]
    words = sorted(set(re.findall(r"[a-z]+", _TRAINING_TEXT.lower())) - set(letters))
    pieces = (*_SPECIALS, *letters, *digits, *punctuation, *continuations, *words)
    assert len(set(pieces)) == len(pieces), "a piece may appear only once"
    return WordPieceVocab(pieces=pieces)


# --------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------


class _Draw:
    """Seeded draws; the call order fixes the bytes of the file."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape: int, std: float) -> Array:
        a: Array = self.rng.standard_normal(shape, dtype=np.float32)
        a *= np.float32(std)
        return a

    def matrix(self, rows: int, cols: int) -> Array:
        """A ``rows x cols`` numpy matrix (ggml ``{cols, rows}``) at fan-in scale."""
        return self.normal(rows, cols, std=1.0 / np.sqrt(cols))

    def bias(self, n: int) -> Array:
        return self.normal(n, std=0.02)

    def gain(self, n: int) -> Array:
        g: Array = (1.0 + self.normal(n, std=0.1)).astype(np.float32)
        return g


def _bert_tensors(draw: _Draw, p: Preset, n_vocab: int, context_length: int) -> dict[str, Array]:
    n, ff = p.n_embd, p.n_ff
    tensors: dict[str, Array] = {
        "token_embd.weight": draw.normal(n_vocab, n, std=1.0),
        "token_types.weight": draw.normal(N_TOKEN_TYPES, n, std=0.1),
        "position_embd.weight": draw.normal(context_length, n, std=0.3),
        "token_embd_norm.weight": draw.gain(n),
        "token_embd_norm.bias": draw.bias(n),
    }
    for i in range(p.n_layer):
        blk = f"blk.{i}"
        tensors |= {
            f"{blk}.attn_q.weight": draw.matrix(n, n),
            f"{blk}.attn_q.bias": draw.bias(n),
            f"{blk}.attn_k.weight": draw.matrix(n, n),
            f"{blk}.attn_k.bias": draw.bias(n),
            f"{blk}.attn_v.weight": draw.matrix(n, n),
            f"{blk}.attn_v.bias": draw.bias(n),
            f"{blk}.attn_output.weight": draw.matrix(n, n),
            f"{blk}.attn_output.bias": draw.bias(n),
            f"{blk}.attn_output_norm.weight": draw.gain(n),
            f"{blk}.attn_output_norm.bias": draw.bias(n),
            f"{blk}.ffn_up.weight": draw.matrix(ff, n),
            f"{blk}.ffn_up.bias": draw.bias(ff),
            f"{blk}.ffn_down.weight": draw.matrix(n, ff),
            f"{blk}.ffn_down.bias": draw.bias(n),
            f"{blk}.layer_output_norm.weight": draw.gain(n),
            f"{blk}.layer_output_norm.bias": draw.bias(n),
        }
    return tensors


def _rank_head(draw: _Draw, p: Preset) -> dict[str, Array]:
    """``cls`` (dense + tanh) and ``cls.output`` (one label): a BertForSequenceClassification-style
    head.  The final hidden state is layer-normed (components ~1), so fan-in scale puts the
    tanh input and the score itself at O(1)."""
    n = p.n_embd
    return {
        "cls.weight": draw.matrix(n, n),
        "cls.bias": draw.bias(n),
        "cls.output.weight": draw.matrix(1, n),
        "cls.output.bias": draw.bias(1),
    }


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _write_bert_gguf(
    path: Path,
    *,
    seed: int,
    pooling: gguf.PoolingType,
    context_length: int,
    name: str,
    rank_head: bool,
) -> Path:
    p = BERT_PRESET
    vocab = build_wordpiece_vocab()
    draw = _Draw(seed)
    tensors = _bert_tensors(draw, p, len(vocab.pieces), context_length)
    if rank_head:
        tensors |= _rank_head(draw, p)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "bert")
    writer.add_name(name)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_context_length(context_length)
    writer.add_embedding_length(p.n_embd)
    writer.add_block_count(p.n_layer)
    writer.add_feed_forward_length(p.n_ff)
    writer.add_head_count(p.n_head)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling)
    if rank_head:
        writer.add_classifier_output_labels([RERANK_LABEL])

    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_type_count(N_TOKEN_TYPES)
    writer.add_token_list(vocab.gguf_tokens())
    writer.add_token_types(vocab.gguf_token_types())
    writer.add_bos_token_id(vocab.cls_id)
    writer.add_eos_token_id(vocab.sep_id)
    writer.add_sep_token_id(vocab.sep_id)
    writer.add_unk_token_id(vocab.unk_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_mask_token_id(vocab.mask_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    writer.add_add_sep_token(False)
    return finish_gguf(writer, tensors, path)


def write_bert_embedding_model(
    path: Path,
    *,
    seed: int = 0,
    pooling: gguf.PoolingType = gguf.PoolingType.MEAN,
    context_length: int = 512,
    name: str = "tiny-bert",
) -> Path:
    """Write a random-weight BERT sentence-embedding GGUF (`BERT_PRESET`); returns ``path``.

    ``pooling`` becomes ``bert.pooling_type`` (what llama-server pools with by default and what
    marks the file as an embedding model); ``context_length`` is ``bert.context_length`` and the
    number of rows of ``position_embd``, so it bounds the context a server may use.
    """
    return _write_bert_gguf(
        path, seed=seed, pooling=pooling, context_length=context_length, name=name, rank_head=False
    )


def write_bert_reranker_model(path: Path, *, seed: int = 0, name: str = "tiny-reranker") -> Path:
    """Write a random-weight BERT cross-encoder GGUF (rank pooling, one-label head); returns ``path``.

    llama-server with ``--reranking`` scores ``[CLS] query [SEP] document [SEP]`` as
    ``cls.output(tanh(cls(h_[CLS])))``: a finite number that differs between documents.
    """
    return _write_bert_gguf(
        path, seed=seed, pooling=gguf.PoolingType.RANK, context_length=512, name=name, rank_head=True
    )
