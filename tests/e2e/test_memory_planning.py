"""The memory planner with the real llama-server: measured sizes in /api/ps, /api/plan agreeing with
the load that follows, eviction for memory, a clear error when a model cannot fit, per-model slots.

Machines without GPUs run the GPU and small-memory cases through an injected inventory
(``LLAMASUP_HARDWARE`` / ``Settings.hardware_file``), which the planner uses instead of probing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from supervisor.pool.pool import RunnerPool
from tests.conftest import ROOT, ServerFactory, app_of, base_url
from tests.models import write_model
from tests.store_helpers import install_gguf
from supervisor.api.keys import POOL

MIB = 1 << 20


async def _call(server: TestServer, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, base_url(server) + path, json=body) as r:
            return r.status, await r.json()


async def _load(server: TestServer, model: str, **options: Any) -> None:
    status, data = await _call(server, "POST", "/api/generate", {"model": model, "prompt": "hi", "stream": False,
                                                                "options": {"num_predict": 2, **options}})  # fmt: skip
    assert status == 200, data


def _inventory(path: Path, host_total: int, gpus: list[dict[str, Any]] | None = None) -> Path:
    lines = [f"host: {{total: {host_total}}}", "gpus:"]
    lines += [f"  - {{id: {g['id']}, name: Fake, total: {g['total']}}}" for g in gpus or []]
    if not gpus:
        lines[-1] = "gpus: []"
    path.write_text("\n".join(lines) + "\n")
    return path


def _argv(server: TestServer) -> list[str]:
    pool: RunnerPool = app_of(server)[POOL]
    (entry,) = pool._entries.values()  # noqa: SLF001
    assert entry.process is not None
    return entry.process.argv


async def test_ps_reports_measured_memory_and_plan_agrees(start_server: ServerFactory, llama_server_bin: Path) -> None:
    """/api/plan predicts the load; after it, /api/ps shows the bytes llama-server reported, the same estimate
    and context the plan gave, and why the model was loaded."""
    server = await start_server(llama_server_bin)
    status, plan = await _call(server, "POST", "/api/plan", {"model": "tiny"})
    assert status == 200, plan
    assert plan["fits"] and not plan["loaded"] and plan["evict"] == [] and plan["error"] is None
    assert plan["inventory"]["host"]["total"] > 0
    (cpu,) = plan["devices"]
    assert cpu["name"] == "CPU" and cpu["estimated"]["total"] == plan["estimated_total"] > 0
    assert cpu["estimated"]["kv_cache"] > 0 and cpu["available"] > cpu["estimated"]["total"]

    await _load(server, "tiny")
    _, ps = await _call(server, "GET", "/api/ps")
    (model,) = ps["models"]
    extra = model["llamasup"]
    (row,) = extra["devices"]
    assert row["measured"]["total"] == model["size"] and model["size_vram"] == 0
    assert row["measured"]["weights"] > 0 and row["measured"]["kv_cache"] > 0 and row["measured"]["compute"] > 0
    assert row["estimated"] == cpu["estimated"]  # the load ran the plan
    assert model["context_length"] == plan["context_length"] and extra["parallel"] == plan["parallel"]
    assert extra["load_reason"] == "requested" and isinstance(extra["estimate_error"], float)
    _, again = await _call(server, "POST", "/api/plan", {"model": "tiny"})
    assert again["loaded"] is True


async def test_a_model_that_does_not_fit_beside_another_evicts_it(
    start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, tmp_path: Path
) -> None:
    """With room for one model only, loading a second unloads the idle first; the plan says so first,
    and /api/events gives the reason."""
    install_gguf(models_dir, "second", write_model(tmp_path / "second.gguf", seed=1))
    probe = await start_server(llama_server_bin)
    _, plan = await _call(probe, "POST", "/api/plan", {"model": "tiny"})
    need = plan["estimated_total"]
    hardware = _inventory(tmp_path / "hw.yaml", int(need * 1.5 / 0.9))  # room for 1.5 models after the margin
    server = await start_server(llama_server_bin, hardware_file=hardware)
    await _load(server, "tiny")
    _, plan = await _call(server, "POST", "/api/plan", {"model": "second"})
    assert plan["fits"] and plan["evict"] == ["tiny:latest"]
    await _load(server, "second")
    _, ps = await _call(server, "GET", "/api/ps")
    assert [m["name"] for m in ps["models"]] == ["second:latest"]
    _, events = await _call(server, "GET", "/api/events")
    assert [(e["model"], e["action"], e["reason"]) for e in events["events"]] == [
        ("tiny:latest", "load", "requested"),
        ("tiny:latest", "unload", "not enough memory, making room for second:latest"),
        ("second:latest", "load", "requested"),
    ]


async def test_a_model_too_big_for_the_machine_fails_with_what_did_not_fit(
    start_server: ServerFactory, llama_server_bin: Path, tmp_path: Path
) -> None:
    """Nothing is started; the error names the memory needed and available, and the plan offers a fix."""
    probe = await start_server(llama_server_bin)
    _, plan = await _call(probe, "POST", "/api/plan", {"model": "tiny"})
    hardware = _inventory(tmp_path / "hw.yaml", int(plan["estimated_total"] * 0.8))
    server = await start_server(llama_server_bin, hardware_file=hardware)
    status, body = await _call(server, "POST", "/api/generate", {"model": "tiny", "prompt": "hi", "stream": False})
    assert status == 500
    assert body["error"].startswith("model requires more system memory (")
    assert "than is available (" in body["error"] and "KV cache" in body["error"]
    _, plan = await _call(server, "POST", "/api/plan", {"model": "tiny"})
    assert plan["fits"] is False and plan["error"] == body["error"]
    assert any(s.startswith("num_ctx ") for s in plan["suggestions"])
    pool: RunnerPool = app_of(server)[POOL]
    assert pool.loaded() == [] and pool.residents() == []


async def test_gpu_layers_follow_an_injected_gpu_inventory(start_server: ServerFactory, llama_server_bin: Path, tmp_path: Path) -> None:
    """With two (injected) GPUs and room on the second only, every layer is placed on it; the runner
    is told so explicitly (this CPU build of llama-server ignores it, the launch is what is tested)."""
    hardware = _inventory(tmp_path / "hw.yaml", 64 << 30, [{"id": "CUDA0", "total": 4 * MIB}, {"id": "CUDA1", "total": 8 << 30}])
    server = await start_server(llama_server_bin, hardware_file=hardware)
    _, plan = await _call(server, "POST", "/api/plan", {"model": "tiny"})
    assert plan["gpu_layers"] == plan["total_layers"] > 0
    assert {d["name"]: bool(d["estimated"]) for d in plan["devices"]} == {"CPU": True, "CUDA0": False, "CUDA1": True}
    await _load(server, "tiny")
    argv = " ".join(_argv(server))
    assert f"--n-gpu-layers {plan['total_layers']}" in argv and "--tensor-split 0,1" in argv and "--fit off" in argv


async def test_num_parallel_per_model(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    """A model's num_parallel parameter sets its slots; the config file's model_parallel overrides it."""
    install_gguf(models_dir, "wide", tiny_gguf, params={"num_parallel": 3, "num_ctx": 512})
    server = await start_server(llama_server_bin)
    await _load(server, "wide")
    _, ps = await _call(server, "GET", "/api/ps")
    (model,) = ps["models"]
    assert model["context_length"] == 512 and model["llamasup"]["parallel"] == 3
    argv = _argv(server)
    assert argv[argv.index("--parallel") + 1] == "3" and argv[argv.index("--ctx-size") + 1] == "1536"
    other = await start_server(llama_server_bin, model_parallel=(("wide", 2),))
    await _load(other, "wide")
    argv = _argv(other)
    assert argv[argv.index("--parallel") + 1] == "2"


def test_plan_command_prints_the_plan(subprocess_server: Any) -> None:
    """``llamasup plan MODEL`` asks the server and prints the memory per device and whether it fits."""
    _, url = subprocess_server()
    env = {"OLLAMA_HOST": url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "supervisor", "plan", "tiny", "--ctx", "1024", "--parallel", "2"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "context    1024 tokens x 2 slots, KV cache f16" in out.stdout
    assert "fits       yes" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("DEVICE"))
    assert header.split() == ["DEVICE", "WEIGHTS", "KV", "CACHE", "COMPUTE", "PROJECTOR", "TOTAL", "AVAILABLE"]
    assert any(line.startswith("CPU ") for line in out.stdout.splitlines())
    missing = subprocess.run([sys.executable, "-m", "supervisor", "plan", "nope"], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=60)  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: model 'nope' not found"
