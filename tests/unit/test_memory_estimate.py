"""The memory estimate: GGUF shape, tensor and KV arithmetic, layer placement, and agreement with the
buffers a real llama-server allocates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from supervisor.pool.memory import (
    ModelShape,
    context_cells,
    estimate_memory,
    kv_row_bytes,
    layer_devices,
    shape_of,
    swa_cache_cells,
    tensor_bytes,
)
from supervisor.runner.memlog import HOST, DeviceBytes, parse_memory_log
from supervisor.store.gguf_info import TensorInfo, info_from_metadata, read_gguf_info
from tests.models import Preset, build_vocab, write_model, write_zero_model
from tests.processes import llama_server

MIB = 1 << 20


# -- tensor and KV arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "n", "expected"),
    [
        ("F32", 10, 40),
        ("F16", 10, 20),
        ("BF16", 3, 6),
        ("Q8_0", 64, 68),  # 32 values in 34 bytes
        ("q8_0", 64, 68),
        ("Q4_0", 64, 36),  # 32 values in 18 bytes
        ("Q4_K", 512, 288),  # 256 values in 144 bytes
        ("Q6_K", 256, 210),
    ],
)
def test_tensor_bytes(type_name: str, n: int, expected: int) -> None:
    """Bytes follow ggml's block sizes, whatever the case of the type name."""
    assert tensor_bytes(type_name, n) == expected


def test_tensor_bytes_unknown_type() -> None:
    """An unknown type is a ValueError naming it."""
    with pytest.raises(ValueError, match="Q9_9"):
        tensor_bytes("Q9_9", 32)


@pytest.mark.parametrize(
    ("n_ctx", "n_seq", "unified", "expected"),
    [
        (4096, 1, False, (4096, 4096)),
        (1000, 1, False, (1024, 1024)),  # padded to 256
        (4096, 4, False, (4096, 1024)),
        (1000, 3, False, (1536, 512)),  # 1024 / 3 = 341 -> 512 per sequence
        (8192, 4, True, (8192, 8192)),  # unified: every sequence sees the whole cache
        (0, 1, False, (2048, 2048)),  # 0 = training context
    ],
)
def test_context_cells(n_ctx: int, n_seq: int, unified: bool, expected: tuple[int, int]) -> None:
    """n_ctx and n_ctx_seq are padded and split as llama.cpp does."""
    assert context_cells(n_ctx, n_seq, kv_unified=unified, n_ctx_train=2048) == expected


def _shape(**overrides: Any) -> ModelShape:
    """A llama-like 4-layer shape: 8 heads of 128, 2 KV heads, 1 MiB per layer."""
    fields: dict[str, Any] = dict(
        architecture="llama", n_layer=4, n_embd=1024, n_head=8, n_head_kv=2, head_dim_k=128, head_dim_v=128,
        n_ff=2816, n_vocab=32000, n_ctx_train=8192, layer_bytes=(MIB,) * 4, input_bytes=3 * MIB,
        output_bytes=2 * MIB,
    )  # fmt: skip
    fields.update(overrides)
    return ModelShape(**fields)


@pytest.mark.parametrize(
    ("kv_type", "row"),
    [("f16", 256 * 2), ("", 256 * 2), ("f32", 256 * 4), ("q8_0", 256 // 32 * 34), ("q4_0", 256 // 32 * 18)],
)
def test_kv_size(kv_type: str, row: int) -> None:
    """KV = layers x cells x (K row + V row), rows in the cache type's size; all on the host at ngl 0."""
    assert kv_row_bytes(kv_type, 256) == row
    est = estimate_memory(_shape(), n_ctx=4096, n_seq=1, kv_type=kv_type)
    assert est.devices[HOST].kv == 4 * 4096 * 2 * row
    assert est.n_ctx == est.n_ctx_seq == 4096


def test_kv_size_counts_padded_cells_of_every_stream() -> None:
    """-c 1000 -np 3 allocates 3 streams of 512 cells."""
    est = estimate_memory(_shape(), n_ctx=1000, n_seq=3)
    assert (est.n_ctx, est.n_ctx_seq) == (1536, 512)
    assert est.devices[HOST].kv == 4 * 1536 * 2 * 256 * 2


def test_sliding_window_layers_get_a_small_cache() -> None:
    """SWA layers hold pad(n_swa + n_ubatch, 256) cells per stream; the others the full context."""
    assert swa_cache_cells(1024, 8192, n_seq=2, n_ubatch=512) == 1536
    assert swa_cache_cells(1024, 1024, n_seq=1, n_ubatch=512) == 1024  # never more than the full cache
    assert swa_cache_cells(0, 8192, n_seq=1, n_ubatch=512) == 0
    shape = _shape(swa_window=1024, swa_layers=(True, True, True, False))
    est = estimate_memory(shape, n_ctx=8192, n_seq=1)
    assert est.devices[HOST].kv == (3 * 1536 + 8192) * 2 * 256 * 2


def test_recurrent_state_per_sequence() -> None:
    """Recurrent layers hold one state per sequence, whatever the context."""
    shape = _shape(layer_kv_heads=(0, 0, 0, 0), layer_state_bytes=(1000,) * 4)
    assert shape.recurrent
    small = estimate_memory(shape, n_ctx=512, n_seq=2)
    large = estimate_memory(shape, n_ctx=32768, n_seq=2)
    assert small.devices[HOST].kv == large.devices[HOST].kv == 4 * 1000 * 2


def test_output_buffer_is_one_row_of_logits_per_slot() -> None:
    """n_seq x n_vocab floats, plus n_embd per slot for embedding models."""
    assert estimate_memory(_shape(), n_ctx=4096, n_seq=4).devices[HOST].output == 4 * 32000 * 4
    embedding = _shape(embedding_only=True)
    assert estimate_memory(embedding, n_ctx=4096, n_seq=2).devices[HOST].output == 2 * (32000 + 1024) * 4


def test_flash_attention_off_adds_the_kq_matrix() -> None:
    """Without flash attention the compute buffer holds n_kv x n_ubatch x n_head floats more or less."""
    on = estimate_memory(_shape(n_ff=256), n_ctx=8192, n_seq=1, flash_attention=True)
    off = estimate_memory(_shape(n_ff=256), n_ctx=8192, n_seq=1, flash_attention=False)
    auto = estimate_memory(_shape(n_ff=256), n_ctx=8192, n_seq=1)
    assert auto.devices[HOST].compute == on.devices[HOST].compute
    kq = 8192 * 512 * 8 * 4
    assert kq < off.devices[HOST].compute - on.devices[HOST].compute < kq * 1.2


# -- layer placement ------------------------------------------------------------------------------

C, G0, G1 = HOST, "CUDA0", "CUDA1"


@pytest.mark.parametrize(
    ("gpu_layers", "gpus", "split", "expected"),
    [
        (0, (G0,), None, (C, C, C, C, C)),
        (3, (), None, (C, C, C, C, C)),  # no GPU: -ngl is ignored
        (1, (G0,), None, (C, C, C, C, G0)),  # the output layer is offloaded first
        (3, (G0,), None, (C, C, G0, G0, G0)),
        (5, (G0,), None, (G0, G0, G0, G0, G0)),
        (99, (G0,), None, (G0, G0, G0, G0, G0)),
        (-1, (G0,), None, (G0, G0, G0, G0, G0)),  # negative = all
        (5, (G0, G1), None, (G0, G0, G0, G0, G0)),  # no split: the first GPU
        (5, (G0, G1), {G0: 1.0, G1: 1.0}, (G0, G0, G0, G1, G1)),  # 0, .2, .4 < .5 <= .6, .8
        (5, (G0, G1), {G0: 3.0, G1: 1.0}, (G0, G0, G0, G0, G1)),
        (5, (G0, G1), {G0: 0.0, G1: 1.0}, (G1, G1, G1, G1, G1)),
        (3, (G0, G1), {G0: 1.0, G1: 1.0}, (C, C, G0, G0, G1)),  # 0, 1/3 < .5 <= 2/3
        (4, (), {G0: 1.0, G1: 1.0}, (C, G0, G0, G1, G1)),  # the split names the GPUs
    ],
)
def test_layer_devices(
    gpu_layers: int, gpus: tuple[str, ...], split: dict[str, float] | None, expected: tuple[str, ...]
) -> None:
    """Layers go to devices as llama.cpp's load_tensors assigns them (4 layers + output)."""
    assert layer_devices(4, gpu_layers, gpus, split) == expected


def test_partial_offload_on_one_gpu() -> None:
    """ngl 3 of 5: the GPU gets two layers, their KV and the output layer; the host keeps the rest."""
    est = estimate_memory(_shape(), n_ctx=4096, n_seq=1, gpu_layers=3, gpus=(G0,))
    kv_layer = 4096 * 2 * 256 * 2
    host, gpu = est.devices[HOST], est.devices[G0]
    assert host.model == 3 * MIB + 2 * MIB  # token_embd + layers 0-1
    assert gpu.model == 2 * MIB + 2 * MIB  # layers 2-3 + output
    assert (host.kv, gpu.kv) == (2 * kv_layer, 2 * kv_layer)
    assert host.output > 0 and gpu.output == 0  # logits land in host memory
    assert host.compute > 0 and gpu.compute > MIB  # the GPU also stages one host layer's weights
    assert (est.gpu_layers, est.total_layers) == (3, 5)
    assert est.total == est.host + est.gpu


def test_full_offload_on_two_gpus() -> None:
    """ngl all with an even split: 3 of 5 layers (output last) on CUDA0, 2 on CUDA1; host keeps token_embd."""
    est = estimate_memory(
        _shape(tied_output_bytes=3 * MIB), n_ctx=4096, n_seq=1, gpu_layers=-1, gpus=(G0, G1), split={G0: 1, G1: 1},
        projector_bytes=5 * MIB, projector_compute=MIB,
    )  # fmt: skip
    kv_layer = 4096 * 2 * 256 * 2
    assert est.devices[HOST].model == 3 * MIB
    assert est.devices[HOST].kv == 0
    assert est.devices[G0].model == 3 * MIB and est.devices[G0].kv == 3 * kv_layer
    assert est.devices[G1].model == MIB + 2 * MIB + 3 * MIB  # layer 3, output, tied token_embd copy
    assert est.devices[G1].kv == kv_layer
    assert est.devices[G0].projector == 6 * MIB
    assert est.gpu_layers == 5
    assert est.host < est.devices[G0].total


def test_no_gpu_means_everything_on_the_host() -> None:
    """Without GPUs the estimate has only the host, and tied embeddings are not copied."""
    est = estimate_memory(_shape(tied_output_bytes=3 * MIB), n_ctx=2048, n_seq=1, gpu_layers=99)
    assert list(est.devices) == [HOST]
    assert est.devices[HOST].model == 3 * MIB + 4 * MIB + 2 * MIB
    assert est.gpu_layers == 0 and est.gpu == 0


# -- shape_of -------------------------------------------------------------------------------------


def _info(arch: str, keys: dict[str, Any], tensors: list[tuple[str, str, tuple[int, ...]]]) -> Any:
    metadata: dict[str, Any] = {"general.architecture": arch, "tokenizer.ggml.tokens": ("a",) * 100}
    metadata.update({f"{arch}.{k}": v for k, v in keys.items()})
    infos = tuple(TensorInfo(name, typ, shape, int(np.prod(shape))) for name, typ, shape in tensors)
    return info_from_metadata(metadata, infos)


def _layers(n: int, typ: str = "F16") -> list[tuple[str, str, tuple[int, ...]]]:
    pairs = [[(f"blk.{i}.attn_q.weight", typ, (64, 64)), (f"blk.{i}.attn_norm.weight", "F32", (64,))] for i in range(n)]
    return [t for pair in pairs for t in pair]


BASE_KEYS = {
    "block_count": 2, "embedding_length": 64, "attention.head_count": 4, "feed_forward_length": 256,
    "context_length": 2048,
}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "arch", "keys", "tensors", "expected"),
    [
        (
            "dense",
            "llama",
            BASE_KEYS,
            [("token_embd.weight", "F16", (64, 100)), *_layers(2), ("output_norm.weight", "F32", (64,)),
             ("output.weight", "Q8_0", (64, 100))],
            dict(n_layer=2, n_head_kv=4, head_dim_k=16, head_dim_v=16, n_vocab=100, n_ctx_train=2048, n_ff=256,
                 layer_bytes=(64 * 64 * 2 + 256,) * 2, input_bytes=12800, output_bytes=256 + 6800,
                 tied_output_bytes=0, layer_kv_heads=(4, 4)),
        ),
        (
            "gqa per layer, tied embeddings, explicit head sizes",
            "llama",
            BASE_KEYS | {"attention.head_count_kv": (2, 1), "attention.key_length": 32, "attention.value_length": 24},
            [("token_embd.weight", "Q8_0", (64, 100)), *_layers(2, "Q8_0"), ("output_norm.weight", "F32", (64,))],
            dict(n_head_kv=2, layer_kv_heads=(2, 1), head_dim_k=32, head_dim_v=24, tied_output_bytes=6800,
                 layer_bytes=(64 * 64 // 32 * 34 + 256,) * 2, output_bytes=256),
        ),
        (
            "moe activates the used experts",
            "qwen3moe",
            BASE_KEYS | {"expert_count": 8, "expert_used_count": 2, "expert_feed_forward_length": 96},
            _layers(2),
            dict(n_ff=192),
        ),
        (
            "gemma3 sliding window",
            "gemma3",
            BASE_KEYS | {"block_count": 7, "attention.sliding_window": 512},
            _layers(7),
            dict(swa_window=512, swa_layers=(True, True, True, True, True, False, True)),
        ),
        (
            "sliding window pattern from the file",
            "llama",
            BASE_KEYS | {"attention.sliding_window": 128, "attention.sliding_window_pattern": (True, False)},
            _layers(2),
            dict(swa_window=128, swa_layers=(True, False)),
        ),
        (
            "unknown sliding window pattern: full caches",
            "llama",
            BASE_KEYS | {"attention.sliding_window": 128},
            _layers(2),
            dict(swa_window=0, swa_layers=()),
        ),
        (
            "mamba state",
            "mamba",
            BASE_KEYS | {"ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16},
            _layers(2),
            dict(layer_kv_heads=(0, 0), layer_state_bytes=((3 * 128 + 16 * 128) * 4,) * 2),
        ),
        (
            "encoder without KV, pooling",
            "bert",
            BASE_KEYS | {"pooling_type": 1},
            _layers(2),
            dict(layer_kv_heads=(0, 0), embedding_only=True, n_head_kv=0),
        ),
    ],
)
def test_shape_of(
    name: str, arch: str, keys: dict[str, Any], tensors: list[tuple[str, str, tuple[int, ...]]], expected: dict[str, Any]
) -> None:
    """shape_of reads dimensions, per-layer KV heads, SWA, recurrent state and tensor bytes by group."""
    shape = shape_of(_info(arch, keys, tensors))
    for field, value in expected.items():
        assert getattr(shape, field) == value, (name, field)


def test_shape_of_generated_model(tmp_path: Path) -> None:
    """On a generated GGUF the groups add up to every tensor byte in the file."""
    path = write_model(tmp_path / "tiny.gguf", preset="tiny")
    info = read_gguf_info(path)
    shape = shape_of(info)
    assert (shape.architecture, shape.n_layer, shape.n_embd, shape.n_head, shape.n_head_kv) == ("llama", 2, 128, 2, 2)
    assert (shape.head_dim_k, shape.n_vocab, shape.n_ff, shape.n_ctx_train) == (64, len(build_vocab().tokens), 384, 4096)
    assert shape.input_bytes == 550 * 128 * 2
    assert shape.output_bytes == 550 * 128 * 2 + 128 * 4
    assert shape.weight_bytes == sum(tensor_bytes(t.type, t.n_elements) for t in info.tensors)
    assert not shape.recurrent and not shape.embedding_only


# -- against the real llama-server ------------------------------------------------------------------


E2E_CASES = [
    # preset, -c, -np, flash attention (None = auto), KV type
    (Preset(n_embd=256, n_layer=4, n_head=4, n_head_kv=4, n_ff=768), 4096, 1, None, "f16"),
    (Preset(n_embd=512, n_layer=3, n_head=8, n_head_kv=2, n_ff=1408), 8192, 2, None, "q8_0"),
    (Preset(n_embd=384, n_layer=2, n_head=6, n_head_kv=6, n_ff=1024), 2048, 4, False, "f16"),
]


def _mib(n: int) -> float:
    return round(n / MIB, 2)


@pytest.mark.e2e
@pytest.mark.parametrize(("preset", "n_ctx", "n_seq", "flash_attention", "kv_type"), E2E_CASES)
def test_estimate_matches_llama_server(
    llama_server_bin: Path,
    tmp_path: Path,
    preset: Preset,
    n_ctx: int,
    n_seq: int,
    flash_attention: bool | None,
    kv_type: str,
) -> None:
    """Loaded in llama-server (--no-repack), the measured total is within 10% of the estimate and the
    KV cache, weights and output buffer are exact (at the log's 0.01 MiB resolution)."""
    model = write_zero_model(tmp_path / "model.gguf", preset=preset)
    args = ["-c", str(n_ctx), "-np", str(n_seq), "--cache-ram", "0", "--log-verbosity", "4", "--log-prefix",
            "--log-colors", "off", "--no-repack", "--cache-type-k", kv_type, "--cache-type-v", kv_type]  # fmt: skip
    if flash_attention is not None:
        args += ["--flash-attn", "on" if flash_attention else "off"]
    with llama_server(llama_server_bin, model, tmp_path, args) as server:
        log = server.log
    measured = parse_memory_log(log.read_text(errors="replace").splitlines())
    est = estimate_memory(
        shape_of(read_gguf_info(model)), n_ctx=n_ctx, n_seq=n_seq, kv_type=kv_type, flash_attention=flash_attention
    )
    host, got = est.devices[HOST], measured.devices[HOST]
    assert list(measured.devices) == [HOST]
    assert (measured.n_ctx, measured.n_ctx_seq) == (est.n_ctx, est.n_ctx_seq)
    assert _mib(host.kv) == _mib(got.kv)
    assert _mib(host.model) == _mib(got.model)
    assert _mib(host.output) == _mib(got.output)
    assert abs(est.total - measured.total) <= 0.10 * measured.total, (est, measured)
    assert got.compute > 0 and abs(host.compute - got.compute) <= 0.15 * got.compute


def test_device_bytes_is_shared_with_the_measurement() -> None:
    """The estimate uses memlog's DeviceBytes, so estimate and measurement compare field by field."""
    est = estimate_memory(_shape(), n_ctx=512, n_seq=1)
    assert isinstance(est.devices[HOST], DeviceBytes)
