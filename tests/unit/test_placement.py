"""The planner's pure decisions: context defaults, layers per device, evictions, waits, errors, fixes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from supervisor.pool.hardware import Gpu, Inventory
from supervisor.pool.memory import ModelShape, estimate_memory
from supervisor.pool.placement import (
    GIB,
    Limits,
    Resident,
    Want,
    available,
    default_num_ctx,
    describe_change,
    margin,
    place,
    suggest,
)
from supervisor.runner.command import RunnerConfig
from supervisor.settings import Settings

MIB = 1 << 20
SHAPE = ModelShape(
    architecture="llama", n_layer=8, n_embd=1024, n_head=16, n_head_kv=4, head_dim_k=64, head_dim_v=64, n_ff=2816,
    n_vocab=32000, n_ctx_train=32768, layer_bytes=(24 * MIB,) * 8, input_bytes=64 * MIB, output_bytes=64 * MIB,
)  # fmt: skip


def config(ctx: int = 4096, parallel: int = 1, **kw: object) -> RunnerConfig:
    return RunnerConfig(Path("/m.gguf"), "m:latest", ctx * parallel, parallel, **kw)  # type: ignore[arg-type]


def need(cfg: RunnerConfig, gpu_layers: int = 0, gpus: tuple[str, ...] = (), split: dict[str, float] | None = None) -> int:
    """Host bytes (or, with GPUs, the bytes on the GPUs) the estimate gives for ``cfg``."""
    est = estimate_memory(SHAPE, n_ctx=cfg.ctx_size, n_seq=cfg.parallel, gpu_layers=gpu_layers, gpus=gpus, split=split)
    return est.gpu if gpus else est.host


def host(room: int) -> Inventory:
    """An inventory whose host has exactly ``room`` bytes for runners after the margin."""
    total = room + min(GIB, room // 9)
    while total - margin(total) < room:
        total += 1
    return Inventory(total, total)


def gpus(*rooms: int, host_room: int = 64 << 30) -> Inventory:
    devices = []
    for i, room in enumerate(rooms):
        total = room + GIB if room >= 9 * GIB else room + room // 9 + 1
        while total - margin(total) < room:
            total += 1
        devices.append(Gpu(f"CUDA{i}", "Fake", total, total, "cuda"))
    return replace(host(host_room), gpus=tuple(devices))


def resident(key: str, usage: int, *, refs: int = 0, keep_alive: float | None = 300.0, idle_since: float = 0.0, device: str = "CPU") -> Resident:
    return Resident(key, refs, True, keep_alive, idle_since, {device: usage})


# -- context -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "vram_gib", "expected"),
    [
        (Settings(), 0, 4096),
        (Settings(), 24, 32768),
        (Settings(), 80, 262144),
        (Settings(gpu_overhead=2 * GIB), 24, 4096),  # the overhead is not VRAM for models
        (Settings(context_length=8192), 80, 8192),  # OLLAMA_CONTEXT_LENGTH wins
    ],
)
def test_default_context_is_tiered_by_vram(settings: Settings, vram_gib: int, expected: int) -> None:
    inv = Inventory(64 * GIB, 64 * GIB, (Gpu("CUDA0", "x", vram_gib * GIB, vram_gib * GIB, "cuda"),) if vram_gib else ())
    assert default_num_ctx(settings, inv) == expected


def test_describe_change_names_ollama_options() -> None:
    old = config(4096, 1)
    assert describe_change(old, config(8192, 1)) == "num_ctx 4096 -> 8192"
    assert describe_change(old, replace(old, gpu_layers=0, threads=4)) == "num_gpu auto -> 0, num_thread 0 -> 4"
    assert describe_change(old, config(4096, 2)) == "num_parallel 1 -> 2"


# -- the host ----------------------------------------------------------------------------------------


def test_fits_on_an_empty_host() -> None:
    cfg = config()
    p = place(Want(cfg, SHAPE), host(need(cfg) + MIB), [], Limits())
    assert p.fits and p.evict == () and p.config == cfg and p.estimate is not None and p.estimate.host == need(cfg)


def test_evicts_idle_runners_in_ollamas_order_until_it_fits() -> None:
    """Shortest keep-alive goes first; only as many as needed; a runner that may stay stays."""
    cfg = config()
    room = need(cfg) + 30 * MIB
    residents = [
        resident("forever", 20 * MIB, keep_alive=None),
        resident("short", 20 * MIB, keep_alive=60.0),
        resident("long", 20 * MIB, keep_alive=3600.0),
    ]
    p = place(Want(cfg, SHAPE), host(room), residents, Limits())
    assert p.fits and p.evict == ("short", "long")


def test_waits_for_a_busy_runner_when_it_would_fit_without_it() -> None:
    cfg = config()
    p = place(Want(cfg, SHAPE), host(need(cfg) + MIB), [resident("busy", 50 * MIB, refs=1)], Limits())
    assert p.wait and not p.fits and p.error is None


def test_max_loaded_evicts_even_when_memory_would_do() -> None:
    cfg = config()
    residents = [resident(k, MIB, idle_since=i) for i, k in enumerate("abc")]
    p = place(Want(cfg, SHAPE), host(64 * GIB), residents, Limits(max_loaded=3))
    assert p.fits and p.evict == ("a",)


def test_does_not_fit_even_alone_says_what_did_not_fit() -> None:
    cfg = config()
    p = place(Want(cfg, SHAPE), host(need(cfg) // 2), [resident("other", 10 * MIB)], Limits())
    assert not p.fits and not p.wait and p.error is not None
    assert p.error.startswith("model requires more system memory (")
    assert "than is available (" in p.error and "(4096 tokens x 1 slots)" in p.error


def test_an_automatic_context_shrinks_only_when_it_cannot_fit_alone() -> None:
    big = config(65536)
    room = need(config(32768)) + MIB
    p = place(Want(big, SHAPE, auto_ctx=True), host(room), [], Limits())
    assert p.fits and p.config.ctx_per_slot == 32768 and p.notes[0] == "context reduced from 65536 to 32768 to fit"
    chosen = place(Want(big, SHAPE, auto_ctx=False), host(room), [], Limits())
    assert not chosen.fits and chosen.config.ctx_per_slot == 65536
    capped = place(Want(config(32768), SHAPE, auto_ctx=True), host(64 * GIB), [], Limits(ctx_cap=4096))
    assert capped.config.ctx_per_slot == 4096  # after an out-of-memory failure at load


def test_available_counts_what_stays_and_what_leaves() -> None:
    """Room = min(free + freed by evicted runners, total - held by the rest) - margin."""
    inv = Inventory(10 * GIB, 4 * GIB)
    a, b = resident("a", 3 * GIB), resident("b", 2 * GIB)
    assert available(inv, [a, b], [a, b], 0)["CPU"] == 4 * GIB - GIB
    assert available(inv, [a, b], [a], 0)["CPU"] == 6 * GIB - GIB  # b's memory comes back
    assert available(Inventory(10 * GIB, 10 * GIB), [a, b], [a, b], 0)["CPU"] == 5 * GIB - GIB  # a static inventory


# -- GPUs --------------------------------------------------------------------------------------------

ALL = SHAPE.n_layer + 1


def test_whole_model_on_the_gpu_with_most_room() -> None:
    cfg = config()
    full = need(cfg, ALL, ("CUDA0", "CUDA1"), {"CUDA1": 1.0})
    p = place(Want(cfg, SHAPE), gpus(full // 2, full + MIB), [], Limits())
    assert p.fits and p.config.gpu_layers == ALL and p.config.tensor_split == (0.0, 1.0)
    assert p.estimate is not None and set(p.estimate.devices) >= {"CUDA1"} and "CUDA0" not in p.estimate.devices


def test_split_across_gpus_when_none_holds_it_alone_or_when_spread() -> None:
    cfg = config()
    full = need(cfg, ALL, ("CUDA0",), {"CUDA0": 1.0})
    p = place(Want(cfg, SHAPE), gpus(full * 3 // 4, full * 3 // 4), [], Limits())
    assert p.fits and p.config.gpu_layers == ALL and p.config.tensor_split == (0.5, 0.5)
    spread = place(Want(cfg, SHAPE), gpus(4 * full, 4 * full), [], Limits(spread=True))
    assert spread.config.tensor_split == (0.5, 0.5)
    single = place(Want(cfg, SHAPE), gpus(4 * full, 4 * full), [], Limits())
    assert single.config.tensor_split in ((1.0, 0.0), (0.0, 1.0))


def test_partial_offload_puts_as_many_layers_as_fit() -> None:
    cfg = config()
    room = need(cfg, 4, ("CUDA0",), {"CUDA0": 1.0}) + MIB
    p = place(Want(cfg, SHAPE), gpus(room), [], Limits())
    assert p.fits and p.config.gpu_layers == 4 and p.notes == ("4/9 layers on GPU",)
    assert p.estimate is not None and p.estimate.gpu <= room


def test_user_num_gpu_and_main_gpu_are_obeyed() -> None:
    cfg = config(gpu_layers=0)
    p = place(Want(cfg, SHAPE), gpus(64 << 30), [], Limits())
    assert p.config.gpu_layers == 0 and p.estimate is not None and p.estimate.gpu == 0
    main = place(Want(config(main_gpu=1), SHAPE), gpus(64 << 30, 64 << 30), [], Limits())
    assert main.estimate is not None and set(main.estimate.devices) - {"CPU"} == {"CUDA1"}


def test_gpu_overhead_is_left_alone() -> None:
    cfg = config()
    full = need(cfg, ALL, ("CUDA0",), {"CUDA0": 1.0})
    assert place(Want(cfg, SHAPE), gpus(full + MIB), [], Limits()).config.gpu_layers == ALL
    assert place(Want(cfg, SHAPE), gpus(full + MIB), [], Limits(gpu_overhead=64 * MIB)).config.gpu_layers < ALL


# -- what would make it fit --------------------------------------------------------------------------


def test_suggestions_are_changes_that_fit() -> None:
    cfg = config(16384, 4)
    inv = host(need(config(16384, 1)) + MIB)
    fixes = suggest(Want(cfg, SHAPE), inv, Limits())
    assert any(f.startswith("num_ctx ") for f in fixes)
    assert "num_parallel 1 (fewer parallel slots)" in fixes
    for fix in fixes:
        assert fix.split()[0] in ("num_ctx", "num_parallel") or fix.startswith("OLLAMA_KV_CACHE_TYPE=")


def test_a_quantized_kv_cache_is_suggested_when_it_is_what_fits() -> None:
    cfg = config(32768)
    q8 = estimate_memory(SHAPE, n_ctx=32768, n_seq=1, kv_type="q8_0", flash_attention=True).host
    assert q8 < need(cfg)
    fixes = suggest(Want(cfg, SHAPE), host(q8 + MIB), Limits())
    assert "OLLAMA_KV_CACHE_TYPE=q8_0 (a quantized KV cache)" in fixes


def test_gpu_memory_of_a_runner_just_stopped_counts_as_free() -> None:
    """Drivers report freed VRAM late: what a stopped runner held counts as free, within the device's total."""
    inv = Inventory(64 * GIB, 64 * GIB, (Gpu("CUDA0", "x", 10 * GIB, 2 * GIB, "cuda"),))
    assert available(inv, [], [], 0)["CUDA0"] == GIB
    assert available(inv, [], [], 0, {"CUDA0": 6 * GIB})["CUDA0"] == 7 * GIB
    assert available(inv, [], [], 0, {"CUDA0": 20 * GIB})["CUDA0"] == 9 * GIB  # never beyond the total
    cfg = config()
    full = need(cfg, ALL, ("CUDA0",), {"CUDA0": 1.0})
    lagging = Inventory(64 * GIB, 64 * GIB, (Gpu("CUDA0", "x", full + GIB, 0, "cuda"),))
    assert place(Want(cfg, SHAPE), lagging, [], Limits()).config.gpu_layers == 0
    assert place(Want(cfg, SHAPE), lagging, [], Limits(released={"CUDA0": full + GIB})).config.gpu_layers == ALL
