"""Tiny random-weight vision projectors (mmproj GGUFs) and tiny PNG images, for tests.

`write_projector` produces the smallest projector this repository's
``llama-server`` accepts with ``--mmproj`` next to a text model made by
`tests.models.write_model`: a LLaVA-style ``mlp`` projector on a one-layer
CLIP ViT.  Weights come from a seeded numpy RNG, so the same arguments always
produce byte-identical files (the orthogonal projector matrices come from
LAPACK's QR in float64 and are stored in F32, so another BLAS could in principle
flip a last bit; on one machine the bytes never change).

What the loader (``tools/mtmd/clip.cpp``) needs
-----------------------------------------------
* ``general.architecture = "clip"`` (``general.type = "mmproj"``, which is
  also what llamasup uses to tell a projector layer from a model),
  ``clip.has_vision_encoder = true``, ``clip.projector_type = "mlp"``.
* uint32 ``clip.vision.{embedding_length, attention.head_count,
  feed_forward_length, block_count, projection_dim, image_size, patch_size}``
  and float32 ``clip.vision.attention.layer_norm_epsilon``: all required, and
  read with type assertions (a wrong GGUF type aborts the process).
* float32 arrays ``clip.vision.image_mean`` / ``image_std`` of length >= 3.
* Tensors (ggml shapes are the numpy shapes reversed):
  ``v.patch_embd.weight`` (n_embd, 3, patch, patch), ``v.position_embd.weight``
  (n_patches, n_embd), per layer ``v.blk.0.attn_{q,k,v,out}.weight`` and
  ``ffn_{up,down}.weight`` (up is (n_ff, n_embd); with n_ff == n_embd the
  loader would think they are swapped), and the projector ``mm.0.{weight,bias}``
  (text_n_embd, n_embd), ``mm.2.{weight,bias}`` (text_n_embd, text_n_embd).
  ``mm.2.weight``'s output size is the projector's embedding size, which must
  equal the text model's ``n_embd`` or loading fails with "mismatch between
  text model (n_embd = ...) and mmproj (n_embd = ...)".

LLaVA takes its features from the second-to-last ViT layer, so with one layer
no layer would run; ``clip.vision.feature_layer = [1]`` makes the graph run
the one layer and take its (post-layernorm) output.  Without
``clip.vision.image_grid_pinpoints`` every image is padded to a square,
resized to ``image_size`` and becomes ``(image_size / patch_size)^2``
embeddings (`image_token_count`), with no extra begin/end tokens.

Keeping the text model's EOS guarantee
--------------------------------------
`tests.models` reserves the text model's last hidden dimension ``k``: every
token embedding holds the constant ``C = f16(sqrt(n_embd))`` there, layers
never read it, and the proof that banned tokens are never sampled starts from
"every position has ``x_k = C`` and ``|x_rest| <= r0``", where ``r0`` is the
largest norm of a token embedding's other dimensions.  Image embeddings enter
the residual stream exactly where token embeddings do, so the projector obeys
the same invariant:

* ``mm.2`` has row ``k`` zero and bias ``C`` there, so every image embedding
  holds exactly ``C`` in dimension ``k``;
* the ViT ends in a LayerNorm, so its output ``e`` satisfies
  ``|e| <= sqrt(n_embd) * max|gain| + |bias|``; ``|gelu(x)| <= |x|``; hence
  ``|out_rest| <= s(W2_rest) * (s(W0) * |e| + |b0|)`` with ``s`` the spectral
  norm.  ``W0`` and ``W2`` are random orthogonal matrices (spectral norm 1, so
  typical outputs sit within a small factor of the bound), and ``W2`` is
  scaled so that the bound is at most `image_embedding_rest_bound`
  ``= 0.5 * sqrt(text_n_embd - 1)``.
  `tests.models` draws unit-variance embedding rows, so ``r0`` is about
  ``sqrt(n_embd - 1)``: twice this bound.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from tests.models import finish_gguf

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_PATCH_SIZE",
    "PROJECTOR_TYPE",
    "image_embedding_rest_bound",
    "image_token_count",
    "tiny_png",
    "write_projector",
]

PROJECTOR_TYPE = "mlp"
DEFAULT_IMAGE_SIZE = 32
DEFAULT_PATCH_SIZE = 8

_LAYER_NORM_EPS = 1e-6
# OpenAI CLIP's preprocessing constants (what real LLaVA projectors carry).
_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
# Headroom on numerically computed spectral norms and on ggml's F16 GELU table.
_SLACK = 1.01

Array = npt.NDArray[np.float32]


def image_token_count(image_size: int = DEFAULT_IMAGE_SIZE, patch_size: int = DEFAULT_PATCH_SIZE) -> int:
    """How many embeddings (prompt tokens) one image becomes, whatever its size."""
    return (image_size // patch_size) ** 2


def image_embedding_rest_bound(text_n_embd: int) -> float:
    """Upper bound on an image embedding's norm outside the reserved dimension."""
    return 0.5 * float(np.sqrt(text_n_embd - 1))


def _reserved_constant(text_n_embd: int) -> float:
    """The value `tests.models` puts in the reserved (last) dimension of every embedding."""
    return float(np.float16(np.sqrt(text_n_embd)))


def _spectral_norm(w: Array) -> float:
    m = w.astype(np.float64)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return float(np.sqrt(max(float(np.linalg.eigvalsh(gram)[-1]), 0.0))) * _SLACK


def _matrix(rng: np.random.Generator, rows: int, cols: int, scale: float = 1.0) -> Array:
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    w *= np.float32(scale / np.sqrt(cols))
    return w


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> Array:
    """A random matrix with orthonormal rows or columns: spectral norm 1, so it moves
    norms as little as a linear map can (typical outputs sit close to the bound)."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q *= np.sign(np.diag(r))  # a deterministic, uniformly distributed choice
    return np.ascontiguousarray(q if rows >= cols else q.T, dtype=np.float32)


def _norm_pair(rng: np.random.Generator, n: int) -> tuple[Array, Array]:
    gain = (1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
    bias = (0.02 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)
    return gain, bias


def write_projector(
    path: Path,
    *,
    text_n_embd: int,
    seed: int = 0,
    image_size: int = DEFAULT_IMAGE_SIZE,
    patch_size: int = DEFAULT_PATCH_SIZE,
    n_embd: int = 64,
    n_head: int = 1,
    n_ff: int = 128,
    name: str = "tiny-projector",
) -> Path:
    """Write a random-weight ``mlp`` (LLaVA) vision projector GGUF; returns ``path``.

    ``text_n_embd`` must be the text model's embedding size (128 for the
    ``tiny`` preset of `tests.models`).  ``n_embd``/``n_head``/``n_ff`` size the
    one-layer ViT (head size 64 by default, which every backend's
    flash-attention kernels handle).  One image becomes
    ``image_token_count(image_size, patch_size)`` prompt tokens (16 by default).
    All tensors are F32.
    """
    if text_n_embd < 2:
        raise ValueError("text_n_embd must be at least 2")
    if patch_size <= 0 or image_size % patch_size != 0:
        raise ValueError("image_size must be a positive multiple of patch_size")
    if n_head <= 0 or n_embd % n_head != 0:
        raise ValueError("n_embd must be a multiple of n_head")
    if n_ff == n_embd:
        raise ValueError("n_ff must differ from n_embd (clip.cpp would swap ffn_up and ffn_down)")

    rng = np.random.default_rng(seed)
    n_pos = image_token_count(image_size, patch_size)
    k = text_n_embd - 1
    tensors: dict[str, Array] = {}

    # Patch embedding: a conv with kernel = stride = patch_size, no bias (as CLIP).
    tensors["v.patch_embd.weight"] = (
        rng.standard_normal((n_embd, 3, patch_size, patch_size), dtype=np.float32)
        * np.float32(1.0 / np.sqrt(3 * patch_size * patch_size))
    ).astype(np.float32)
    tensors["v.position_embd.weight"] = (0.1 * rng.standard_normal((n_pos, n_embd), dtype=np.float32)).astype(np.float32)

    ln1_w, ln1_b = _norm_pair(rng, n_embd)
    ln2_w, ln2_b = _norm_pair(rng, n_embd)
    tensors |= {
        "v.blk.0.ln1.weight": ln1_w,
        "v.blk.0.ln1.bias": ln1_b,
        "v.blk.0.attn_q.weight": _matrix(rng, n_embd, n_embd),
        "v.blk.0.attn_k.weight": _matrix(rng, n_embd, n_embd),
        "v.blk.0.attn_v.weight": _matrix(rng, n_embd, n_embd),
        "v.blk.0.attn_out.weight": _matrix(rng, n_embd, n_embd, 0.5),
        "v.blk.0.ln2.weight": ln2_w,
        "v.blk.0.ln2.bias": ln2_b,
        "v.blk.0.ffn_up.weight": _matrix(rng, n_ff, n_embd),
        "v.blk.0.ffn_down.weight": _matrix(rng, n_embd, n_ff, 0.5),
    }
    post_w, post_b = _norm_pair(rng, n_embd)
    tensors["v.post_ln.weight"] = post_w
    tensors["v.post_ln.bias"] = post_b

    # LLaVA MLP: mm.2(gelu(mm.0(e))).
    w0 = _orthogonal(rng, text_n_embd, n_embd)
    b0 = (0.1 * rng.standard_normal(text_n_embd, dtype=np.float32)).astype(np.float32)
    w2 = _orthogonal(rng, text_n_embd, text_n_embd)
    w2[k, :] = 0.0
    b2 = np.zeros(text_n_embd, dtype=np.float32)
    b2[k] = _reserved_constant(text_n_embd)

    # |e| after the final LayerNorm (normalised part has norm <= sqrt(n)).
    e_bound = float(np.sqrt(n_embd)) * float(np.abs(post_w).max()) + float(np.linalg.norm(post_b))
    h_bound = (_spectral_norm(w0) * e_bound + float(np.linalg.norm(b0))) * _SLACK
    target = image_embedding_rest_bound(text_n_embd)
    # The scale is an F16 value (0.999 keeps it below the exact one after rounding),
    # so last-bit differences in the LAPACK-computed norms do not reach the file.
    w2 *= np.float32(np.float16(0.999 * target / (_spectral_norm(w2) * h_bound)))
    tensors |= {"mm.0.weight": w0, "mm.0.bias": b0, "mm.2.weight": w2, "mm.2.bias": b2}

    path = Path(path)
    writer = clip_writer(path, name, "vision", PROJECTOR_TYPE)
    # clip.cpp reads these with exact-type accessors: uint32 / float32 only.
    writer.add_uint32("clip.vision.image_size", image_size)
    writer.add_uint32("clip.vision.patch_size", patch_size)
    writer.add_uint32("clip.vision.embedding_length", n_embd)
    writer.add_uint32("clip.vision.feed_forward_length", n_ff)
    writer.add_uint32("clip.vision.block_count", 1)
    writer.add_uint32("clip.vision.attention.head_count", n_head)
    writer.add_uint32("clip.vision.projection_dim", text_n_embd)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", _LAYER_NORM_EPS)
    writer.add_array("clip.vision.image_mean", [float(x) for x in _IMAGE_MEAN])
    writer.add_array("clip.vision.image_std", [float(x) for x in _IMAGE_STD])
    # Run the single layer (LLaVA would otherwise stop one layer short).
    writer.add_array("clip.vision.feature_layer", [1])
    return finish_clip(writer, tensors, path)


def clip_writer(path: Path, name: str, encoder: str, projector_type: str) -> gguf.GGUFWriter:
    """A ``clip`` GGUF writer for an F32 projector with a ``vision`` or ``audio`` encoder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "clip")
    writer.add_type("mmproj")
    writer.add_name(name)
    writer.add_uint32("general.file_type", int(gguf.LlamaFileType.ALL_F32))
    writer.add_bool(f"clip.has_{encoder}_encoder", True)
    writer.add_string("clip.projector_type", projector_type)
    return writer


def finish_clip(writer: gguf.GGUFWriter, tensors: dict[str, Array], path: Path) -> Path:
    """Write the projector with its tensors as contiguous F32 arrays."""
    return finish_gguf(writer, {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in tensors.items()}, path)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(width: int = 16, height: int = 16, seed: int = 0) -> bytes:
    """A valid 8-bit RGB PNG of random pixels (seeded), written with zlib/struct only."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    # Filter type 0 (None) in front of every scanline.
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour, deflate, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )
