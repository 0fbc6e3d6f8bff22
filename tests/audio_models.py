"""A tiny random-weight audio projector (mmproj GGUF) and tiny WAV/MP3 clips, for tests.

`write_audio_projector` produces the smallest audio projector this repository's
``llama-server`` accepts with ``--mmproj`` next to a text model made by
`tests.models.write_model`: a ``glma`` projector (GLM-ASR's adapter) on a
one-layer Whisper encoder.  It is the simplest audio type clip.cpp has whose
output ends in a biased linear layer (the reserved dimension below needs a
bias) and that adds no begin/end *text* around the audio, so one clip is
exactly `audio_token_count` prompt tokens.  Weights come from a seeded numpy
RNG, so the same arguments always produce byte-identical files (see
`tests.projector_models` for the one LAPACK caveat).

What the loader (``tools/mtmd/clip.cpp``) needs
-----------------------------------------------
* ``general.architecture = "clip"``, ``general.type = "mmproj"``,
  ``clip.has_audio_encoder = true`` (and no vision encoder),
  ``clip.projector_type = "glma"``.
* uint32 ``clip.audio.{embedding_length, attention.head_count,
  feed_forward_length, block_count, projection_dim, num_mel_bins,
  projector.stack_factor}`` and float32
  ``clip.audio.attention.layer_norm_epsilon`` (exact types, as for vision).
* Whisper encoder tensors (numpy shapes; ggml's are reversed):
  ``a.conv1d.1.weight`` (n_embd, n_mel, 3) and ``a.conv1d.2.weight``
  (n_embd, n_embd, 3) with biases (n_embd, 1); ``a.position_embd.weight``
  (1500, n_embd) (one row per encoder position of a 30 s window); per layer
  ``a.blk.0.{ln1,ln2}.{weight,bias}``, ``attn_q`` and ``attn_v`` with biases,
  ``attn_k`` *without* one (the graph asserts both), ``attn_out``,
  ``ffn_up`` (n_ff, n_embd) and ``ffn_down``.
* The adapter: ``mm.a.norm_pre.{weight,bias}`` (a LayerNorm over each encoder
  frame), ``mm.a.mlp.1.{weight,bias}`` (n_hidden, n_embd * stack) and
  ``mm.a.mlp.2.{weight,bias}`` (text_n_embd, n_hidden), and the learned
  begin/end-of-audio embeddings ``v.boi`` / ``v.eoi`` (1, text_n_embd).
  ``mm.a.mlp.2``'s output size must equal the text model's ``n_embd``.

How many embeddings a clip becomes
----------------------------------
mtmd's Whisper preprocessing (``mtmd-audio.cpp``) appends 30 s of silence to
the 16 kHz samples and cuts the log-mel spectrogram (10 ms hop) into windows
of 3000 frames, dropping the last, partial one: a clip shorter than 30 s is
exactly one window.  The two convolutions halve a window to 1500 positions;
the adapter stacks ``stack_factor`` of them into one vector, and ``v.boi`` /
``v.eoi`` go around: ``1500 / stack_factor + 2`` embeddings per window
(`audio_token_count`; 32 by default).  ``stack_factor`` must divide 1500, or
the graph (which pads) and clip.cpp's token count (which rounds down) differ.

Keeping the text model's EOS guarantee
--------------------------------------
Audio embeddings enter the residual stream where token embeddings do, so they
obey the invariant `tests.projector_models` explains for images: the reserved
dimension ``k`` holds exactly ``C`` and the rest stays within
`audio_embedding_rest_bound` (half of what the text model's own token
embeddings reach).

* ``mm.a.mlp.2`` has row ``k`` zero and bias ``C`` there; ``v.boi`` and
  ``v.eoi`` hold ``C`` there and a random rest scaled under the bound.
* ``mm.a.norm_pre`` is a LayerNorm, so each frame is at most
  ``e = sqrt(n_embd) * max|gain| + |bias|`` long, a stack of ``s`` frames at
  most ``sqrt(s) * e``; ``|gelu(x)| <= |x|`` (erf GELU); hence
  ``|out_rest| <= s(W2_rest) * (s(W1) * sqrt(s) * e + |b1|)`` with ``s(.)``
  the spectral norm.  ``W1`` and ``W2`` are random orthogonal matrices and
  ``W2`` is scaled so the bound is met.

Clips
-----
`tiny_wav` is a sine tone as 16 kHz mono 16-bit PCM written with the stdlib
``wave`` module (what the preprocessor wants, so nothing is resampled).
`silent_mp3` is a few MPEG-1 Layer III frames whose side information is all
zero: every decoder reads them as silence, and no encoder is needed.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path

import numpy as np

from tests.projector_models import Array, _norm_pair, _orthogonal, _reserved_constant, _spectral_norm, _SLACK, clip_writer, finish_clip

__all__ = [
    "AUDIO_PROJECTOR_TYPE",
    "DEFAULT_STACK_FACTOR",
    "SAMPLE_RATE",
    "audio_embedding_rest_bound",
    "audio_token_count",
    "silent_mp3",
    "tiny_wav",
    "write_audio_projector",
]

AUDIO_PROJECTOR_TYPE = "glma"
SAMPLE_RATE = 16_000  # what Whisper-style preprocessing resamples everything to
DEFAULT_STACK_FACTOR = 50
N_MEL = 80

_ENCODER_POSITIONS = 1500  # a 3000-frame window after the stride-2 convolution
_WINDOW_FRAMES = 3000
_HOP = 160
_PADDING_SAMPLES = 30 * SAMPLE_RATE  # the silence mtmd appends before cutting windows
_LAYER_NORM_EPS = 1e-5


def audio_token_count(n_samples: int, stack_factor: int = DEFAULT_STACK_FACTOR) -> int:
    """How many embeddings (prompt tokens) a clip of ``n_samples`` 16 kHz samples becomes."""
    frames = (n_samples + _PADDING_SAMPLES) // _HOP + 1
    windows = frames // _WINDOW_FRAMES
    return windows * (_ENCODER_POSITIONS // stack_factor + 2)


def audio_embedding_rest_bound(text_n_embd: int) -> float:
    """Upper bound on an audio embedding's norm outside the reserved dimension."""
    return 0.5 * float(np.sqrt(text_n_embd - 1))


def _matrix(rng: np.random.Generator, rows: int, cols: int, scale: float = 1.0) -> Array:
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    w *= np.float32(scale / np.sqrt(cols))
    return w


def _conv(rng: np.random.Generator, out_ch: int, in_ch: int) -> Array:
    return (rng.standard_normal((out_ch, in_ch, 3), dtype=np.float32) * np.float32(1.0 / np.sqrt(3 * in_ch))).astype(np.float32)


def _small(rng: np.random.Generator, *shape: int) -> Array:
    return (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def write_audio_projector(
    path: Path,
    *,
    text_n_embd: int,
    seed: int = 0,
    stack_factor: int = DEFAULT_STACK_FACTOR,
    n_embd: int = 64,
    n_head: int = 1,
    n_ff: int = 128,
    n_hidden: int = 128,
    name: str = "tiny-audio-projector",
) -> Path:
    """Write a random-weight ``glma`` audio projector GGUF; returns ``path``.

    ``text_n_embd`` must be the text model's embedding size (128 for the ``tiny``
    preset of `tests.models`).  ``n_embd``/``n_head``/``n_ff`` size the one-layer
    Whisper encoder (head size 64 by default), ``n_hidden`` the adapter's MLP.
    A clip shorter than 30 s becomes ``audio_token_count(n, stack_factor)``
    prompt tokens (32 by default).  All tensors are F32.
    """
    if text_n_embd < 2:
        raise ValueError("text_n_embd must be at least 2")
    if stack_factor <= 0 or _ENCODER_POSITIONS % stack_factor != 0:
        raise ValueError(f"stack_factor must divide {_ENCODER_POSITIONS}")
    if n_head <= 0 or n_embd % n_head != 0:
        raise ValueError("n_embd must be a multiple of n_head")

    rng = np.random.default_rng(seed)
    k = text_n_embd - 1
    c = _reserved_constant(text_n_embd)
    target = audio_embedding_rest_bound(text_n_embd)
    tensors: dict[str, Array] = {
        # Whisper's stem: conv(k=3) + GELU, conv(k=3, stride 2) + GELU.  Biases are
        # (n_embd, 1) so that they broadcast over the frames.
        "a.conv1d.1.weight": _conv(rng, n_embd, N_MEL),
        "a.conv1d.1.bias": _small(rng, n_embd, 1),
        "a.conv1d.2.weight": _conv(rng, n_embd, n_embd),
        "a.conv1d.2.bias": _small(rng, n_embd, 1),
        "a.position_embd.weight": (0.1 * rng.standard_normal((_ENCODER_POSITIONS, n_embd), dtype=np.float32)).astype(np.float32),
    }
    ln1_w, ln1_b = _norm_pair(rng, n_embd)
    ln2_w, ln2_b = _norm_pair(rng, n_embd)
    tensors |= {
        "a.blk.0.ln1.weight": ln1_w,
        "a.blk.0.ln1.bias": ln1_b,
        "a.blk.0.attn_q.weight": _matrix(rng, n_embd, n_embd),
        "a.blk.0.attn_q.bias": _small(rng, n_embd),
        "a.blk.0.attn_k.weight": _matrix(rng, n_embd, n_embd),
        "a.blk.0.attn_v.weight": _matrix(rng, n_embd, n_embd),
        "a.blk.0.attn_v.bias": _small(rng, n_embd),
        "a.blk.0.attn_out.weight": _matrix(rng, n_embd, n_embd, 0.5),
        "a.blk.0.attn_out.bias": _small(rng, n_embd),
        "a.blk.0.ln2.weight": ln2_w,
        "a.blk.0.ln2.bias": ln2_b,
        "a.blk.0.ffn_up.weight": _matrix(rng, n_ff, n_embd),
        "a.blk.0.ffn_up.bias": _small(rng, n_ff),
        "a.blk.0.ffn_down.weight": _matrix(rng, n_embd, n_ff, 0.5),
        "a.blk.0.ffn_down.bias": _small(rng, n_embd),
    }

    # The adapter: LayerNorm per frame, stack, mlp.2(gelu(mlp.1(x))), then boi/eoi around.
    pre_w, pre_b = _norm_pair(rng, n_embd)
    stacked = n_embd * stack_factor
    w1 = _orthogonal(rng, n_hidden, stacked)
    b1 = (0.1 * rng.standard_normal(n_hidden, dtype=np.float32)).astype(np.float32)
    w2 = _orthogonal(rng, text_n_embd, n_hidden)
    w2[k, :] = 0.0
    b2 = np.zeros(text_n_embd, dtype=np.float32)
    b2[k] = c

    frame_bound = float(np.sqrt(n_embd)) * float(np.abs(pre_w).max()) + float(np.linalg.norm(pre_b))
    h_bound = (_spectral_norm(w1) * float(np.sqrt(stack_factor)) * frame_bound + float(np.linalg.norm(b1))) * _SLACK
    # An F16 scale just under the exact one: last-bit LAPACK differences do not reach the file.
    w2 *= np.float32(np.float16(0.999 * target / (_spectral_norm(w2) * h_bound)))

    def marker() -> Array:
        v = rng.standard_normal(text_n_embd, dtype=np.float32)
        v[k] = 0.0
        v *= np.float32(np.float16(0.5 * target / float(np.linalg.norm(v))))
        v[k] = c
        return v.reshape(1, text_n_embd)

    tensors |= {
        "mm.a.norm_pre.weight": pre_w,
        "mm.a.norm_pre.bias": pre_b,
        "mm.a.mlp.1.weight": w1,
        "mm.a.mlp.1.bias": b1,
        "mm.a.mlp.2.weight": w2,
        "mm.a.mlp.2.bias": b2,
        "v.boi": marker(),
        "v.eoi": marker(),
    }

    path = Path(path)
    writer = clip_writer(path, name, "audio", AUDIO_PROJECTOR_TYPE)
    writer.add_uint32("clip.audio.embedding_length", n_embd)
    writer.add_uint32("clip.audio.feed_forward_length", n_ff)
    writer.add_uint32("clip.audio.block_count", 1)
    writer.add_uint32("clip.audio.attention.head_count", n_head)
    writer.add_uint32("clip.audio.projection_dim", text_n_embd)
    writer.add_float32("clip.audio.attention.layer_norm_epsilon", _LAYER_NORM_EPS)
    writer.add_uint32("clip.audio.num_mel_bins", N_MEL)
    writer.add_uint32("clip.audio.projector.stack_factor", stack_factor)
    return finish_clip(writer, tensors, path)


def tiny_wav(n_samples: int = 4000, frequency: float = 440.0) -> bytes:
    """A sine tone as a 16 kHz mono 16-bit PCM WAV (0.25 s by default)."""
    if n_samples <= 0:
        raise ValueError("n_samples must be positive")
    frames = b"".join(
        struct.pack("<h", round(12_000 * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE))) for i in range(n_samples)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(frames)
    return out.getvalue()


# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no CRC, no padding, mono: 417-byte frames of 1152 samples.
_MP3_HEADER = b"\xff\xfb\x90\xc4"
_MP3_FRAME_BYTES = 417


def silent_mp3(n_frames: int = 8) -> bytes:
    """``n_frames`` MP3 frames of silence (all-zero side information and main data)."""
    return (_MP3_HEADER + bytes(_MP3_FRAME_BYTES - len(_MP3_HEADER))) * n_frames
