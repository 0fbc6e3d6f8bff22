"""How much memory a runner will take, per device, before it starts (pure).

``shape_of`` reduces a GGUF header to what sizing needs (``ModelShape``); ``estimate_memory`` turns a
shape and launch parameters into ``DeviceBytes`` per device, the same fields ``runner.memlog`` parses
from llama-server's load log, so an estimate and a measurement compare field by field.

What llama.cpp allocates (pinned build, reference/llama-server.md §6.1; read from its sources):

* model: the tensors themselves. ``token_embd`` (the "input layer") always stays on the host; layer
  ``i`` lives where layer ``i`` is assigned; ``output``/``output_norm`` go with the "output layer",
  which is offloaded first (``-ngl 1`` offloads only it). A model with tied embeddings gets a copy of
  ``token_embd`` on the output layer's GPU.
* KV: ``n_ctx`` is padded to 256; without a unified cache each of the ``n_seq`` streams gets
  ``pad(n_ctx / n_seq, 256)`` cells. Per layer K is ``cells x row(kv type, n_head_kv x head_dim_k)``
  bytes and V the same with ``head_dim_v``; sliding-window layers get
  ``pad(min(cells, n_swa + n_ubatch), 256)`` cells per stream; recurrent layers hold one f32 state per
  sequence instead. KV lives on the device of its layer.
* output: logits for one token per slot, ``n_seq x n_vocab x 4`` bytes (plus ``n_embd`` per slot for
  embedding models), in host memory.
* compute: the graph allocator's peak for a worst-case ubatch (``n_ubatch`` tokens against a full
  cache). ``compute_bytes`` is an empirical fit of that peak (see its docstring), calibrated on the CPU
  backend of this build; GPU backends are assumed to need the same for the layers they run.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gguf

from ..runner.memlog import HOST, DeviceBytes, MeasuredMemory, is_gpu
from ..store.gguf_info import GGUFInfo

CTX_PAD = 256  # llama.cpp pads n_ctx, n_ctx_seq and the SWA cache to this
_F32 = 4
_LAYER = re.compile(r"^blk\.(\d+)\.")
_OUTPUT_PREFIXES = ("output.", "output_norm.", "cls.", "cls_out.")

# Architectures whose models keep no KV cache (non-causal encoders; llama-model.cpp create_memory).
_NO_KV_ARCHS = frozenset({
    "bert", "jina-bert-v2", "jina-bert-v3", "nomic-bert", "nomic-bert-moe", "neo-bert", "eurobert",
    "modern-bert", "gemma-embedding", "wavtokenizer-dec", "dream", "llada", "llada-moe", "rnd1",
})  # fmt: skip
# Every layer is recurrent (llm_arch_is_recurrent).
_RECURRENT_ARCHS = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
# Some layers are recurrent (llm_arch_is_hybrid): those with no KV heads, or all but every
# ``full_attention_interval``-th.
_HYBRID_ARCHS = frozenset({
    "jamba", "falcon-h1", "plamo2", "granitehybrid", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe",
    "qwen3next", "qwen35", "qwen35moe",
})  # fmt: skip
# Default sliding-window layer pattern (period, dense first) when the GGUF has none; a layer is SWA
# when ``il % period < period - 1`` (``il % period != 0`` when dense first): llama_hparams::set_swa_pattern.
_SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "cohere2": (4, False),
    "gpt-oss": (2, False),
    "exaone4": (4, False),
}


@dataclass(frozen=True)
class ModelShape:
    """Everything the estimate needs from a GGUF."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int  # the largest over layers
    head_dim_k: int
    head_dim_v: int
    n_ff: int  # FFN width one token activates (MoE: used experts x expert width, plus shared experts)
    n_vocab: int
    n_ctx_train: int
    layer_bytes: tuple[int, ...]  # bytes of the tensors of blk.i.*
    input_bytes: int  # token_embd and other non-layer tensors (kept on the host by llama.cpp)
    output_bytes: int  # output.weight, output_norm (go with the output layer)
    layer_kv_heads: tuple[int, ...] = ()  # per layer; 0 = no KV (recurrent layer, encoder model)
    tied_output_bytes: int = 0  # token_embd, copied to the output layer's GPU when output.weight is absent
    swa_window: int = 0
    swa_layers: tuple[bool, ...] = ()  # per layer: uses the sliding-window cache
    layer_state_bytes: tuple[int, ...] = ()  # per layer, per sequence: recurrent state (f32)
    embedding_only: bool = False  # the GGUF declares a pooling type

    @property
    def recurrent(self) -> bool:
        return any(self.layer_state_bytes)

    @property
    def weight_bytes(self) -> int:
        return sum(self.layer_bytes) + self.input_bytes + self.output_bytes

    def kv_heads(self, il: int) -> int:
        return self.layer_kv_heads[il] if self.layer_kv_heads else self.n_head_kv

    def is_swa(self, il: int) -> bool:
        return self.swa_window > 0 and bool(self.swa_layers) and self.swa_layers[il]


@dataclass(frozen=True)
class Estimate:
    """Bytes a runner will allocate, per device (``CPU`` = host memory), as llama-server reports them."""

    devices: dict[str, DeviceBytes]
    gpu_layers: int  # layers offloaded, counted as llama.cpp does (n_layer + 1 = all, output layer included)
    total_layers: int  # n_layer + 1
    n_ctx: int  # cells as llama.cpp sizes them: padded total context and per-sequence context
    n_ctx_seq: int

    @property
    def total(self) -> int:
        return sum(d.total for d in self.devices.values())

    @property
    def host(self) -> int:
        return self.devices[HOST].total if HOST in self.devices else 0

    @property
    def gpu(self) -> int:
        return sum(d.total for name, d in self.devices.items() if is_gpu(name))


# -- GGUF -> shape ------------------------------------------------------------------------------


def tensor_bytes(type_name: str, n_elements: int) -> int:
    """Bytes of ``n_elements`` of ggml type ``type_name`` (``F16``, ``Q8_0``, ``q4_k``, ...)."""
    block, size = gguf.GGML_QUANT_SIZES[_ggml_type(type_name)]
    return int(-(-n_elements // block) * size)


def _ggml_type(name: str) -> Any:
    try:
        return gguf.GGMLQuantizationType[name.upper()]
    except KeyError:
        raise ValueError(f"unknown ggml type {name!r}") from None


def shape_of(info: GGUFInfo) -> ModelShape:
    """The sizing facts of a parsed GGUF."""
    arch = info.architecture
    md = info.metadata

    def key_int(suffix: str, default: int = 0) -> int:
        value = info.get_int(f"{arch}.{suffix}")
        return default if value is None else value

    n_embd = info.embedding_length or 0
    n_head = info.head_count or 0
    n_layer = info.block_count or _count_layers(info)
    layer_bytes = [0] * n_layer
    input_bytes = output_bytes = 0
    names = set()
    for t in info.tensors:
        names.add(t.name)
        n = tensor_bytes(t.type, t.n_elements)
        m = _LAYER.match(t.name)
        if m and int(m.group(1)) < n_layer:
            layer_bytes[int(m.group(1))] += n
        elif m or t.name.startswith(_OUTPUT_PREFIXES):
            output_bytes += n
        else:
            input_bytes += n
    embd = next((t for t in info.tensors if t.name == "token_embd.weight"), None)
    tied = embd is not None and "output.weight" not in names and not info.has_pooling_type

    head_dim = n_embd // n_head if n_head else 0
    kv_heads = _per_layer(md.get(f"{arch}.attention.head_count_kv"), n_layer, n_head)
    state = _recurrent_state(info, n_layer, n_embd)
    if arch in _RECURRENT_ARCHS:
        kv_heads = [0] * n_layer
    elif arch in _HYBRID_ARCHS:
        interval = key_int("full_attention_interval")
        if interval > 0:
            kv_heads = [h if (il + 1) % interval == 0 else 0 for il, h in enumerate(kv_heads)]
        state = [s if kv_heads[il] == 0 else 0 for il, s in enumerate(state)]
    else:
        state = [0] * n_layer
    if arch in _NO_KV_ARCHS:
        kv_heads = [0] * n_layer

    swa_window = key_int("attention.sliding_window")
    swa_layers = _swa_layers(md.get(f"{arch}.attention.sliding_window_pattern"), arch, n_layer) if swa_window else ()

    return ModelShape(
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=max(kv_heads, default=0),
        head_dim_k=key_int("attention.key_length", head_dim),
        head_dim_v=key_int("attention.value_length", head_dim),
        n_ff=_active_ff(info),
        n_vocab=_n_vocab(info, embd.shape if embd else ()),
        n_ctx_train=info.context_length or 0,
        layer_bytes=tuple(layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        layer_kv_heads=tuple(kv_heads),
        tied_output_bytes=tensor_bytes(embd.type, embd.n_elements) if tied and embd else 0,
        swa_window=swa_window if any(swa_layers) else 0,
        swa_layers=swa_layers if any(swa_layers) else (),
        layer_state_bytes=tuple(state) if any(state) else (),
        embedding_only=info.has_pooling_type,
    )


def _count_layers(info: GGUFInfo) -> int:
    found = [int(m.group(1)) for t in info.tensors if (m := _LAYER.match(t.name))]
    return max(found) + 1 if found else 0


def _per_layer(value: Any, n_layer: int, default: int) -> list[int]:
    """A per-layer hyperparameter (an int for all layers, or one per layer)."""
    if isinstance(value, tuple) and len(value) == n_layer and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n_layer
    return [default] * n_layer


def _swa_layers(pattern: Any, arch: str, n_layer: int) -> tuple[bool, ...]:
    if isinstance(pattern, tuple) and len(pattern) == n_layer:
        return tuple(bool(v) for v in pattern)
    if isinstance(pattern, int) and not isinstance(pattern, bool):
        period, dense_first = pattern, False
    elif arch in _SWA_PATTERNS:
        period, dense_first = _SWA_PATTERNS[arch]
    else:
        return ()  # unknown pattern: size every layer as a full cache (the safe side)
    if period == 0:
        return (True,) * n_layer
    if dense_first:
        return tuple(il % period != 0 for il in range(n_layer))
    return tuple(il % period < period - 1 for il in range(n_layer))


def _active_ff(info: GGUFInfo) -> int:
    arch = info.architecture
    n_ff = info.get_int(f"{arch}.feed_forward_length") or 0
    experts = info.get_int(f"{arch}.expert_count") or 0
    if experts <= 0:
        return n_ff
    expert_ff = info.get_int(f"{arch}.expert_feed_forward_length") or n_ff
    used = info.get_int(f"{arch}.expert_used_count") or 1
    shared = info.get_int(f"{arch}.expert_shared_count") or 0
    shared_ff = info.get_int(f"{arch}.expert_shared_feed_forward_length") or expert_ff
    return used * expert_ff + shared * shared_ff


def _n_vocab(info: GGUFInfo, embd_shape: tuple[int, ...]) -> int:
    tokens = info.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, tuple) and tokens:
        return len(tokens)
    size = info.get_int(f"{info.architecture}.vocab_size")
    if size:
        return size
    return embd_shape[1] if len(embd_shape) > 1 else 0


def _recurrent_state(info: GGUFInfo, n_layer: int, n_embd: int) -> list[int]:
    """Per-layer, per-sequence f32 state of a recurrent layer (llama_hparams::n_embd_r + n_embd_s)."""
    arch = info.architecture

    def get(suffix: str) -> int:
        return info.get_int(f"{arch}.{suffix}") or 0

    if head_size := get("wkv.head_size"):  # RWKV
        r, s = (get("token_shift_count") or 2) * n_embd, n_embd * head_size
    elif l_cache := get("shortconv.l_cache"):  # LFM2
        r, s = n_embd * (l_cache - 1), 0
    else:  # Mamba and relatives
        d_conv, d_inner, d_state = get("ssm.conv_kernel"), get("ssm.inner_size"), get("ssm.state_size")
        r = max(d_conv - 1, 0) * (d_inner + 2 * get("ssm.group_count") * d_state)
        s = d_state * d_inner
    return [(r + s) * _F32] * n_layer


# -- estimate -----------------------------------------------------------------------------------


def context_cells(n_ctx: int, n_seq: int, *, kv_unified: bool = False, n_ctx_train: int = 0) -> tuple[int, int]:
    """``(n_ctx, n_ctx_seq)`` as llama.cpp sizes them from ``-c`` and ``-np`` (``0`` = training context)."""
    n_seq = max(n_seq, 1)
    ctx = n_ctx if n_ctx > 0 else n_ctx_train
    ctx = _pad(max(ctx, 1), CTX_PAD)
    if kv_unified:
        return ctx, ctx
    per_seq = _pad(ctx // n_seq, CTX_PAD) if ctx // n_seq else CTX_PAD
    return per_seq * n_seq, per_seq


def kv_row_bytes(kv_type: str, n_elements: int) -> int:
    """Bytes of one cache row (one token of one layer's K or V) of ``n_elements`` values."""
    return tensor_bytes(_kv_type(kv_type), n_elements)


def _kv_type(kv_type: str) -> str:
    return kv_type.upper() if kv_type else "F16"


def layer_devices(
    n_layer: int, gpu_layers: int, gpus: tuple[str, ...], split: Mapping[str, float] | None = None
) -> tuple[str, ...]:
    """The device of each repeating layer and, last, of the output layer, as llama.cpp assigns them.

    The last ``gpu_layers`` of the ``n_layer + 1`` (counting the output layer last) are offloaded;
    ``gpu_layers < 0`` means all. They are spread over ``gpus`` in order by the cumulative fractions
    of ``split`` (llama.cpp's ``--tensor-split``); without a split, all go to the first GPU.
    """
    total = n_layer + 1
    devices = gpus or tuple(split or ())
    if not devices or gpu_layers == 0:
        return (HOST,) * total
    n_gpu = total if gpu_layers < 0 else min(gpu_layers, total)
    start = total - n_gpu
    weights = [split.get(d, 0.0) for d in devices] if split else [1.0] + [0.0] * (len(devices) - 1)
    if sum(weights) <= 0:
        weights = [1.0] + [0.0] * (len(devices) - 1)
    cumulative: list[float] = []
    running = _f32(0.0)
    for w in weights:
        running = _f32(running + _f32(w))
        cumulative.append(running)
    cumulative = [_f32(c / running) for c in cumulative]
    result: list[str] = []
    for il in range(total):
        if il < start:
            result.append(HOST)
        else:
            index = bisect.bisect_right(cumulative, _f32((il - start) / n_gpu))
            result.append(devices[min(index, len(devices) - 1)])
    return tuple(result)


def estimate_memory(
    shape: ModelShape,
    *,
    n_ctx: int,
    n_seq: int,
    kv_type: str = "f16",
    flash_attention: bool | None = None,
    n_batch: int = 2048,
    n_ubatch: int = 512,
    gpu_layers: int = 0,
    split: Mapping[str, float] | None = None,
    gpus: tuple[str, ...] = (),
    projector_bytes: int = 0,
    projector_compute: int = 0,
    mmap: bool = True,
    kv_unified: bool = False,
) -> Estimate:
    """What llama-server started with ``-c n_ctx -np n_seq`` and these options will allocate.

    ``flash_attention=None`` is llama.cpp's ``auto``, which enables it (every backend of this build
    supports it for the usual head sizes); a quantized V cache requires it anyway. ``gpus`` names the
    devices in llama.cpp's order (``CUDA0``, ...); ``split`` weighs them (``-ts``). ``mmap`` does not
    change any size: mapped (``CPU_Mapped``) and loaded (``CPU``) host weights are reported alike, and
    whether mapped pages count against free RAM is the caller's policy. The projector (``--mmproj``)
    goes to the first GPU when any layer is offloaded, else to the host.
    """
    del mmap
    n_seq = max(n_seq, 1)
    ctx, ctx_seq = context_cells(n_ctx, n_seq, kv_unified=kv_unified, n_ctx_train=shape.n_ctx_train)
    placement = layer_devices(shape.n_layer, gpu_layers, gpus, split)
    out_dev = placement[-1]
    acc: dict[str, DeviceBytes] = {HOST: DeviceBytes()}

    def add(device: str, kind: str, n: int) -> None:
        if n:
            acc[device] = acc.get(device, DeviceBytes()).plus(kind, n)

    # weights
    add(HOST, "model", shape.input_bytes)
    for il, n in enumerate(shape.layer_bytes):
        add(placement[il], "model", n)
    add(out_dev, "model", shape.output_bytes)
    if is_gpu(out_dev):
        add(out_dev, "model", shape.tied_output_bytes)

    # KV cache and recurrent state
    n_stream = 1 if kv_unified else n_seq
    ubatch = _ubatch(n_ctx=ctx, n_batch=n_batch, n_ubatch=n_ubatch)
    swa_cells = swa_cache_cells(shape.swa_window, ctx_seq, n_seq=n_seq, n_ubatch=ubatch, kv_unified=kv_unified)
    for il in range(shape.n_layer):
        heads = shape.kv_heads(il)
        if heads:
            cells = (swa_cells if shape.is_swa(il) else ctx_seq) * n_stream
            row = kv_row_bytes(kv_type, heads * shape.head_dim_k) + kv_row_bytes(kv_type, heads * shape.head_dim_v)
            add(placement[il], "kv", cells * row)
        if shape.layer_state_bytes:
            add(placement[il], "kv", shape.layer_state_bytes[il] * n_seq)

    # logits (and embeddings) for one output per sequence, in host memory
    add(HOST, "output", n_seq * (shape.n_vocab + (shape.n_embd if shape.embedding_only else 0)) * _F32)

    # compute buffers
    fa = True if flash_attention is None else flash_attention
    peak = compute_bytes(
        shape, n_ctx_seq=ctx if kv_unified else ctx_seq, n_seq=n_seq, n_ubatch=ubatch, flash_attention=fa,
        kv_type=kv_type, swa_cells=swa_cells,
    )  # fmt: skip
    runs = set(placement)
    for device in sorted(runs - {HOST}):
        add(device, "compute", peak)
    if HOST in runs:
        add(HOST, "compute", peak)
    else:  # fully offloaded: the host only embeds the batch and stages the inputs
        add(HOST, "compute", ubatch * shape.n_embd * _F32 + _mask_bytes(ctx_seq, swa_cells, ubatch, fa))
    gpu_devices = [d for d in placement if is_gpu(d)]
    if gpu_devices and HOST in placement[:-1] and ubatch >= 32:
        # op offload: big batches run host layers' matmuls on the first GPU, which then holds a copy
        # of one host layer's weights in its compute buffer (not measured here; no GPU)
        host_layers = [n for il, n in enumerate(shape.layer_bytes) if placement[il] == HOST]
        add(gpu_devices[0], "compute", max(host_layers, default=0))

    projector_dev = gpu_devices[0] if gpu_devices else HOST
    add(projector_dev, "projector", projector_bytes + projector_compute)

    n_gpu = sum(1 for d in placement if is_gpu(d))
    return Estimate(acc, gpu_layers=n_gpu, total_layers=shape.n_layer + 1, n_ctx=ctx, n_ctx_seq=ctx_seq)


def swa_cache_cells(window: int, ctx_seq: int, *, n_seq: int, n_ubatch: int, kv_unified: bool = False) -> int:
    """Cells per stream of the sliding-window cache (llama_kv_cache_iswa); 0 without SWA."""
    if window <= 0:
        return 0
    return _pad(min(ctx_seq, window * (n_seq if kv_unified else 1) + n_ubatch), CTX_PAD)


def compute_bytes(
    shape: ModelShape,
    *,
    n_ctx_seq: int,
    n_seq: int,
    n_ubatch: int,
    flash_attention: bool,
    kv_type: str = "f16",
    swa_cells: int = 0,
) -> int:
    """The graph allocator's peak for one worst-case ubatch (empirical fit, bytes).

    With ``U`` tokens (``n_ubatch`` rounded up to a multiple of ``n_seq``), ``E = n_embd``,
    ``Eq = n_head x head_dim_k``, ``Ek``/``Ev`` the K/V width and ``F`` the active FFN width::

        mask      = U x n_kv x (2 with flash attention, else 4)     (+ the same for an SWA cache)
        attention = 4U (5 max(E, Eq) + (Ek + Ev)/2)                with flash attention
                    4U (5 max(E, Eq) + Ek + Ev) + 4 U n_kv n_head  without (the KQ matrix)
        ffn       = 4U (3F + kE), k = 4 with flash attention and an f16 cache, 3 with a quantized
                    cache, 5 without flash attention               (only n_seq tokens in a 1-layer model)
        output    = 4U (2E) + 4 n_seq n_vocab                      (logits of one token per sequence)
        compute   = mask + max(attention, ffn, output) + 20U

    ``n_kv`` is the cache a sequence sees (``n_ctx_seq``; ``n_ctx`` when unified). Fitted on the CPU
    backend of the pinned build with llama-architecture models (n_embd 256-4096, n_ff/n_embd 1-5.4,
    MHA and GQA, head sizes 32-128, contexts 256-16384, ubatch 128-1024, 1-8 slots, f16/q8_0/q4_0/f32
    caches, flash attention on and off). Checked on 80 random such shapes: exact to the log's 0.01 MiB
    for most, never more than 3% under, and up to ~20% over where n_ff < 2 n_embd (the allocator
    then reuses freed blocks better than the formula assumes). Weight types do not matter: the CPU
    backend converts activations in its own work buffer, not the compute buffer. Other architectures
    (biases, fused QKV, MoE routing, vision towers) are sized as if they were llama-shaped.
    """
    u = _pad(max(n_ubatch, 1), max(n_seq, 1))
    e, eq = shape.n_embd, shape.n_head * shape.head_dim_k
    ek, ev = shape.n_head_kv * shape.head_dim_k, shape.n_head_kv * shape.head_dim_v
    width = max(e, eq)
    mask = _mask_bytes(n_ctx_seq, swa_cells, u, flash_attention)
    if flash_attention:
        attention = 4 * u * (5 * width + (ek + ev) // 2)
        if _kv_type(kv_type) == "F32":  # K/V are converted to f16 for the kernel
            attention += 4 * u * (ek + ev)
    else:
        n_kv = max(n_ctx_seq, swa_cells)
        attention = 4 * u * (5 * width + ek + ev) + 4 * u * n_kv * shape.n_head
    ffn_tokens = u if shape.n_layer > 1 else n_seq
    if not flash_attention:
        ffn_embd = 5
    elif _kv_type(kv_type) in ("F16", "BF16", "F32"):
        ffn_embd = 4
    else:  # quantized cache: the allocator packs this graph a little tighter
        ffn_embd = 3
    ffn = 4 * ffn_tokens * (3 * shape.n_ff + ffn_embd * e)
    n_out = u if shape.embedding_only else n_seq
    output = 4 * u * 2 * e + 4 * n_out * shape.n_vocab
    return mask + max(attention, ffn, output) + 20 * u


def _mask_bytes(n_kv: int, swa_cells: int, n_tokens: int, flash_attention: bool) -> int:
    return n_tokens * (n_kv + swa_cells) * (2 if flash_attention else 4)


def _ubatch(*, n_ctx: int, n_batch: int, n_ubatch: int) -> int:
    """The ubatch llama.cpp reserves for: at most the batch, and (causal models) at most the context."""
    batch = min(n_ctx, n_batch) if n_batch > 0 else n_ctx
    return min(batch, n_ubatch) if n_ubatch > 0 else batch


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def _f32(x: float) -> float:
    """``x`` rounded to float32, as llama.cpp's split arithmetic is."""
    result: float = struct.unpack("f", struct.pack("f", x))[0]
    return result


def estimate_error(estimate: Estimate | None, measured: MeasuredMemory | None) -> float | None:
    """(estimated - measured) / measured bytes, to four places; None until both are known."""
    if estimate is None or measured is None or not measured.measured or not measured.total:
        return None
    return round((estimate.total - measured.total) / measured.total, 4)
