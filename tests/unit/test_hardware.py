"""The hardware inventory: cgroup, nvidia-smi, NVML and --list-devices parsers, inventory files, probes."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from supervisor.errors import ConfigError
from supervisor.pool.hardware import (
    Gpu,
    Inventory,
    PhysicalGpu,
    apple_gpu,
    bound_host_memory,
    cgroup_memory,
    cuda_visible_order,
    library_of,
    llama_server_gpus,
    nvidia_smi_gpus,
    nvml_devices,
    parse_cgroup_v1,
    parse_cgroup_v2,
    parse_llama_devices,
    parse_nvidia_smi,
    probe_inventory,
    refresh,
)
from supervisor.pool.inventory_file import inventory_from_file, parse_size

GiB = 1 << 30
MiB = 1 << 20
V1_UNLIMITED = "9223372036854771712"

# --- cgroups ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_max", "current", "stat", "expected"),
    [
        ("max\n", "12345\n", "", (None, 12345)),
        ("4294967296\n", "1000\n", "", (4294967296, 1000)),
        ("4294967296\n", "1000\n", "anon 700\ninactive_file 300\nactive_file 5\n", (4294967296, 700)),
        ("4294967296", "100", "inactive_file 300\n", (4294967296, 0)),
        ("", "", "", (None, None)),
    ],
)
def test_parse_cgroup_v2(memory_max: str, current: str, stat: str, expected: tuple[int | None, int | None]) -> None:
    """memory.max 'max' is no limit; usage leaves out reclaimable inactive page cache."""
    assert parse_cgroup_v2(memory_max, current, stat) == expected


@pytest.mark.parametrize(
    ("limit", "usage", "stat", "expected"),
    [
        (V1_UNLIMITED + "\n", "38330368\n", "", (None, 38330368)),
        ("9223372036854775807", "5", "", (None, 5)),
        ("2147483648\n", "1048576\n", "", (2147483648, 1048576)),
        ("2147483648", "1048576", "total_inactive_file 48576\ninactive_file 1\n", (2147483648, 1000000)),
        ("junk", "", "", (None, None)),
    ],
)
def test_parse_cgroup_v1(limit: str, usage: str, stat: str, expected: tuple[int | None, int | None]) -> None:
    """v1's huge PAGE_COUNTER_MAX value is no limit; usage leaves out total_inactive_file."""
    assert parse_cgroup_v1(limit, usage, stat) == expected


def _files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("proc_cgroup", "files", "expected"),
    [
        pytest.param("0::/user.slice/app.scope\n", {"user.slice/app.scope/memory.max": "8000\n", "user.slice/app.scope/memory.current": "3000\n",
                     "memory.max": "max\n"}, (8000, 3000), id="v2-leaf"),  # fmt: skip
        pytest.param("0::/a/b\n", {"a/b/memory.max": "max", "a/b/memory.current": "10", "a/memory.max": "5000", "a/memory.current": "20"},
                     (5000, 20), id="v2-parent-limit"),  # fmt: skip
        pytest.param("0::/a/b\n", {"a/b/memory.max": "max", "a/b/memory.current": "10"}, (None, 10), id="v2-unlimited"),
        pytest.param("0::/host/path/not/here\n", {"memory.max": "7000", "memory.current": "100"}, (7000, 100), id="v2-container-root"),
        pytest.param("4:memory:/docker/abc\n0::/\n", {"memory/docker/abc/memory.limit_in_bytes": "6000\n",
                     "memory/docker/abc/memory.usage_in_bytes": "600\n", "memory.max": "1"}, (6000, 600), id="v1-hybrid"),  # fmt: skip
        pytest.param("5:cpuacct,memory:/x\n", {"memory/x/memory.limit_in_bytes": V1_UNLIMITED, "memory/x/memory.usage_in_bytes": "42",
                     "memory/memory.limit_in_bytes": V1_UNLIMITED}, (None, 42), id="v1-unlimited"),  # fmt: skip
        pytest.param("4:memory:/docker/abc\n", {"memory/memory.limit_in_bytes": "9000", "memory/memory.usage_in_bytes": "90"}, (9000, 90),
                     id="v1-container-root"),  # fmt: skip
        pytest.param("", {}, (None, None), id="nothing"),
    ],
)
def test_cgroup_memory(tmp_path: Path, proc_cgroup: str, files: dict[str, str], expected: tuple[int | None, int | None]) -> None:
    """This process's cgroup is found from /proc/self/cgroup (v1 memory line, else v2), ancestors included."""
    root = tmp_path / "cgroup"
    root.mkdir()
    _files(root, files)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_cgroup)
    assert cgroup_memory(root, proc) == expected


def test_cgroup_memory_without_proc_file(tmp_path: Path) -> None:
    """No /proc/self/cgroup (not Linux): the root's files, or nothing."""
    assert cgroup_memory(tmp_path, tmp_path / "missing") == (None, None)
    _files(tmp_path, {"memory.max": "123", "memory.current": "4"})
    assert cgroup_memory(tmp_path, tmp_path / "missing") == (123, 4)


@pytest.mark.parametrize(
    ("total", "available", "limit", "usage", "expected"),
    [
        (16 * GiB, 12 * GiB, None, None, (16 * GiB, 12 * GiB)),
        (16 * GiB, 12 * GiB, 4 * GiB, 1 * GiB, (4 * GiB, 3 * GiB)),
        (16 * GiB, 2 * GiB, 8 * GiB, 1 * GiB, (8 * GiB, 2 * GiB)),
        (16 * GiB, 12 * GiB, 4 * GiB, 5 * GiB, (4 * GiB, 0)),
        (16 * GiB, 12 * GiB, 32 * GiB, None, (16 * GiB, 12 * GiB)),
    ],
)
def test_bound_host_memory(total: int, available: int, limit: int | None, usage: int | None, expected: tuple[int, int]) -> None:
    """Host total is the smaller of RAM and the limit; free is bounded by the cgroup's headroom."""
    assert bound_host_memory(total, available, limit, usage) == expected


# --- NVIDIA -------------------------------------------------------------------------------------

SMI_TWO = "0, NVIDIA H200, 143771, 143252\n1, NVIDIA GeForce RTX 4090, 24564, 20000\n"
PHYS = [PhysicalGpu(0, "A", 10, 9, "GPU-aaaa1111"), PhysicalGpu(1, "B", 20, 19, "GPU-bbbb2222"), PhysicalGpu(2, "C", 30, 29, "GPU-bbbc3333")]


def test_parse_nvidia_smi() -> None:
    """nvidia-smi CSV (MiB) becomes CUDA0.. with byte sizes."""
    assert parse_nvidia_smi(SMI_TWO) == [
        Gpu("CUDA0", "NVIDIA H200", 143771 * MiB, 143252 * MiB, "cuda"),
        Gpu("CUDA1", "NVIDIA GeForce RTX 4090", 24564 * MiB, 20000 * MiB, "cuda"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("0, Tesla T4, [N/A], [N/A]\n1, Tesla T4, 15360, 15000\n", [Gpu("CUDA0", "Tesla T4", 15360 * MiB, 15000 * MiB, "cuda")]),
        ("0, Odd, Name, 100, 50, GPU-1234\n", [Gpu("CUDA0", "Odd, Name", 100 * MiB, 50 * MiB, "cuda")]),
        ("NVIDIA-SMI has failed\n", []),
    ],
)
def test_parse_nvidia_smi_edge_cases(text: str, expected: list[Gpu]) -> None:
    """Unknown sizes and junk lines are skipped; a trailing UUID column and commas in names are tolerated."""
    assert parse_nvidia_smi(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, [0, 1, 2]),
        ("", []),
        ("-1", []),
        ("1", [1]),
        ("2,0", [2, 0]),
        (" 1 , 2 ", [1, 2]),
        ("0,7,1", [0]),
        ("0,-1,1", [0]),
        ("1,1,0", [1, 0]),
        ("GPU-aaaa", [0]),
        ("GPU-bbbc,0", [2, 0]),
        ("GPU-bbb", []),
        ("GPU-", []),
        ("MIG-xyz", []),
    ],
)
def test_cuda_visible_order(value: str | None, expected: list[int]) -> None:
    """CUDA_VISIBLE_DEVICES picks and orders GPUs by index or unique UUID prefix, stopping at a bad entry."""
    assert [d.index for d in cuda_visible_order(value, PHYS)] == expected


def test_parse_nvidia_smi_renumbers_visible_devices() -> None:
    """Hidden GPUs disappear and the rest are renumbered CUDA0.. in visible order, as llama.cpp names them."""
    gpus = parse_nvidia_smi(SMI_TWO, "1")
    assert [(g.id, g.name) for g in gpus] == [("CUDA0", "NVIDIA GeForce RTX 4090")]
    assert [(g.id, g.name) for g in parse_nvidia_smi(SMI_TWO, "1,0")] == [("CUDA0", "NVIDIA GeForce RTX 4090"), ("CUDA1", "NVIDIA H200")]
    assert parse_nvidia_smi(SMI_TWO, "") == []


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_nvidia_smi_gpus_runs_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nvidia_smi_gpus runs nvidia-smi from PATH and applies the given CUDA_VISIBLE_DEVICES; None when it fails."""
    _script(tmp_path / "nvidia-smi", f"printf '{SMI_TWO.replace(chr(10), chr(92) + 'n')}'\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert [g.name for g in nvidia_smi_gpus({"CUDA_VISIBLE_DEVICES": "1"}) or []] == ["NVIDIA GeForce RTX 4090"]
    assert len(nvidia_smi_gpus({}) or []) == 2
    _script(tmp_path / "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert nvidia_smi_gpus({}) is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert nvidia_smi_gpus({}) is None


class FakeNvml:
    """An NVML library object: the entry points nvml_devices calls, writing through ctypes pointers."""

    def __init__(self, devices: list[tuple[str, int, int, str]], init_status: int = 0) -> None:
        self.devices = devices
        self.init_status = init_status
        self.shutdown = False

    def nvmlInit_v2(self) -> int:
        return self.init_status

    def nvmlShutdown(self) -> int:
        self.shutdown = True
        return 0

    def nvmlDeviceGetCount_v2(self, count: Any) -> int:
        count._obj.value = len(self.devices)
        return 0

    def nvmlDeviceGetHandleByIndex_v2(self, index: ctypes.c_uint, handle: Any) -> int:
        handle._obj.value = index.value + 100
        return 0

    def _device(self, handle: ctypes.c_void_p) -> tuple[str, int, int, str]:
        assert handle.value is not None
        return self.devices[handle.value - 100]

    def nvmlDeviceGetName(self, handle: ctypes.c_void_p, buf: Any, length: ctypes.c_uint) -> int:
        buf.value = self._device(handle)[0].encode()
        return 0

    def nvmlDeviceGetUUID(self, handle: ctypes.c_void_p, buf: Any, length: ctypes.c_uint) -> int:
        buf.value = self._device(handle)[3].encode()
        return 0

    def nvmlDeviceGetMemoryInfo(self, handle: ctypes.c_void_p, memory: Any) -> int:
        _, total, free, _ = self._device(handle)
        memory._obj.total, memory._obj.free, memory._obj.used = total, free, total - free
        return 0


def test_nvml_devices_reads_every_gpu() -> None:
    """Name, UUID and memory come from NVML per index; the library is shut down afterwards."""
    lib = FakeNvml([("NVIDIA H200", 140 * GiB, 139 * GiB, "GPU-aa"), ("NVIDIA L4", 24 * GiB, 23 * GiB, "GPU-bb")])
    devices = nvml_devices(lib)
    assert devices == [PhysicalGpu(0, "NVIDIA H200", 140 * GiB, 139 * GiB, "GPU-aa"), PhysicalGpu(1, "NVIDIA L4", 24 * GiB, 23 * GiB, "GPU-bb")]
    assert lib.shutdown


def test_nvml_devices_init_failure() -> None:
    """A failing nvmlInit_v2 (no driver loaded) gives None."""
    assert nvml_devices(FakeNvml([], init_status=9)) is None


# --- llama-server --list-devices ----------------------------------------------------------------

NONE_TEXT = "Available devices:\n  (none)\n"
ONE_TEXT = "Available devices:\n  CUDA0: NVIDIA H200 (143000 MiB, 139000 MiB free)\n"
TWO_TEXT = """load_backend: loaded CUDA backend from /x/libggml-cuda.so
ggml_cuda_init: found 2 CUDA devices:
  Device 0: NVIDIA H200, compute capability 9.0, VMM: yes
Available devices:
  CUDA0: NVIDIA H200 (143000 MiB, 139000 MiB free)
  Vulkan1: AMD Radeon RX 7900 XTX (RADV NAVI31)  (24560 MiB,24000 MiB free)
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NONE_TEXT, []),
        ("", []),
        (ONE_TEXT, [Gpu("CUDA0", "NVIDIA H200", 143000 * MiB, 139000 * MiB, "cuda")]),
        (TWO_TEXT, [Gpu("CUDA0", "NVIDIA H200", 143000 * MiB, 139000 * MiB, "cuda"),
                    Gpu("Vulkan1", "AMD Radeon RX 7900 XTX (RADV NAVI31)", 24560 * MiB, 24000 * MiB, "vulkan")]),  # fmt: skip
        ("Available devices:\n  MTL0: Apple M2 Max (98304 MiB, 98303 MiB free)\n  BLAS: Accelerate (0 MiB, 0 MiB free)\n",
         [Gpu("MTL0", "Apple M2 Max", 98304 * MiB, 98303 * MiB, "metal")]),  # fmt: skip
        ("Available devices:\n\tROCm0:AMD Instinct MI300X( 196592 MiB , 196000 MiB free )\n",
         [Gpu("ROCm0", "AMD Instinct MI300X", 196592 * MiB, 196000 * MiB, "rocm")]),  # fmt: skip
    ],
)
def test_parse_llama_devices(text: str, expected: list[Gpu]) -> None:
    """--list-devices lines under 'Available devices:' become devices; log lines and 0-MiB accelerators do not."""
    assert parse_llama_devices(text) == expected


@pytest.mark.parametrize(("device", "library"), [("CUDA0", "cuda"), ("ROCm1", "rocm"), ("MTL0", "metal"), ("Vulkan2", "vulkan"), ("SYCL0", "sycl")])
def test_library_of(device: str, library: str) -> None:
    """The backend library follows from the llama.cpp device name."""
    assert library_of(device) == library


def test_llama_server_gpus_with_fake_binaries(tmp_path: Path) -> None:
    """The binary's --list-devices output is parsed with the given environment; failures give None."""
    fake = _script(tmp_path / "llama-server", 'echo "Available devices:"; echo "  CUDA0: Fake ($TOTAL MiB, 10 MiB free)"\n')
    assert llama_server_gpus(fake, {"TOTAL": "20"}) == [Gpu("CUDA0", "Fake", 20 * MiB, 10 * MiB, "cuda")]
    assert llama_server_gpus(_script(tmp_path / "broken", "exit 1\n")) is None
    assert llama_server_gpus(tmp_path / "missing") is None


@pytest.mark.e2e
def test_real_llama_server_list_devices(llama_server_bin: Path) -> None:
    """The built llama-server's --list-devices output parses (a CPU build lists '(none)' -> [])."""
    raw = subprocess.run([str(llama_server_bin), "--list-devices"], capture_output=True, text=True, timeout=60, check=True).stdout
    gpus = llama_server_gpus(llama_server_bin)
    assert gpus is not None and "Available devices:" in raw
    if "(none)" in raw:
        assert gpus == []
    assert all(g.total > 0 and 0 <= g.free <= g.total for g in gpus)


# --- Apple --------------------------------------------------------------------------------------


def test_apple_gpu_is_three_quarters_of_ram() -> None:
    """Without llama-server to ask, the Metal device is 3/4 of unified memory, all free."""
    assert apple_gpu(64 * GiB, "Apple M3 Max") == Gpu("MTL0", "Apple M3 Max", 48 * GiB, 48 * GiB, "metal")
    assert apple_gpu(16 * GiB).name == "Apple silicon GPU"


# --- sizes and inventory files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("100B", 100),
        ("2KB", 2000),
        ("2KiB", 2048),
        ("3 MB", 3_000_000),
        ("3MiB", 3 * MiB),
        ("16GiB", 16 * GiB),
        ("16gib", 16 * GiB),
        ("1.5GiB", 3 * GiB // 2),
        ("1GB", 10**9),
        ("2TiB", 2 << 40),
        ("1TB", 10**12),
        ("9007199254740993", 9007199254740993),
    ],
)
def test_parse_size(value: object, expected: int) -> None:
    """Sizes are bytes or a number with a decimal (KB..TB) or binary (KiB..TiB) unit."""
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "16 GB!", "GiB", "12Gi", "-5", -5, True, None, 1.5, "1e9", [1]])
def test_parse_size_rejects(value: object) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError):
        parse_size(value)


GOOD_FILE = """\
host: {total: 16GiB, free: 12GiB}
gpus:
  - {id: CUDA0, name: "Fake GPU", total: 24GiB, free: 23GiB, library: cuda}
  - {id: ROCm1, total: 8GB}
unified_memory: false
"""


def test_inventory_from_file(tmp_path: Path) -> None:
    """A YAML inventory: sizes parsed, free defaults to total, name to id, library from the id."""
    path = tmp_path / "hw.yaml"
    path.write_text(GOOD_FILE)
    inv = inventory_from_file(path)
    assert inv == Inventory(
        16 * GiB,
        12 * GiB,
        (Gpu("CUDA0", "Fake GPU", 24 * GiB, 23 * GiB, "cuda"), Gpu("ROCm1", "ROCm1", 8 * 10**9, 8 * 10**9, "rocm")),
        unified_memory=False,
        source=f"file:{path}",
    )
    assert inv.gpu_total == 24 * GiB + 8 * 10**9


def test_inventory_file_cpu_only_and_unified(tmp_path: Path) -> None:
    """gpus may be absent; unified_memory is read."""
    path = tmp_path / "mac.yaml"
    path.write_text("host: {total: 32GiB}\nunified_memory: true\n")
    inv = inventory_from_file(path)
    assert (inv.host_total, inv.host_free, inv.gpus, inv.unified_memory, inv.gpu_total) == (32 * GiB, 32 * GiB, (), True, 0)


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        ("gpus: []\n", "host: missing"),
        ("- 1\n- 2\n", "top level: expected a mapping"),
        ("host: {total: 16 GB!}\n", "host.total: invalid size '16 GB!'"),
        ("host: {free: 1GiB}\n", "host.total: missing"),
        ("host: {total: 1GiB, free: 2GiB}\n", "host.free:"),
        ("host: {total: 1GiB, fre: 2GiB}\n", "host: unknown field(s) fre"),
        ("host: {total: 1GiB}\ngpu: []\n", "top level: unknown field(s) gpu"),
        ("host: {total: 1GiB}\ngpus: {id: CUDA0}\n", "gpus: expected a list"),
        ("host: {total: 1GiB}\ngpus: [{name: x, total: 1GiB}]\n", "gpus[0].id: missing"),
        ("host: {total: 1GiB}\ngpus: [{id: CUDA0, total: 1GiB}, {id: CUDA1, total: lots}]\n", "gpus[1].total: invalid size 'lots'"),
        ("host: {total: 1GiB}\ngpus: [{id: CUDA0, total: 1GiB}, {id: CUDA0, total: 1GiB}]\n", "gpus: device ids repeat"),
        ("host: {total: 1GiB}\ngpus: [{id: CUDA0, total: 1GiB, name: 5}]\n", "gpus[0]: name and library must be strings"),
        ("host: {total: 1GiB}\nunified_memory: yes please\n", "unified_memory: expected true or false"),
        ("host: {total: [1GiB\n", "invalid YAML"),
        ("", "top level: missing"),
    ],
)
def test_inventory_file_errors(tmp_path: Path, text: str, mention: str) -> None:
    """A bad inventory file is a ConfigError naming the file and the field."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        inventory_from_file(path)
    assert str(path) in str(info.value) and mention in str(info.value)


def test_inventory_file_missing(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read"):
        inventory_from_file(tmp_path / "nope.yaml")


# --- the inventory value, probing, refresh ------------------------------------------------------


def test_with_free_replaces_readings() -> None:
    """with_free sets host and per-GPU free memory; GPUs not mentioned keep theirs."""
    inv = Inventory(10, 5, (Gpu("CUDA0", "a", 8, 1, "cuda"), Gpu("CUDA1", "b", 8, 2, "cuda")), source="nvml")
    new = inv.with_free(7, {"CUDA1": 6, "CUDA9": 3})
    assert new.host_free == 7 and [g.free for g in new.gpus] == [1, 6] and new.source == "nvml" and new.gpu_total == 16
    assert inv.host_free == 5  # unchanged: frozen value


def test_probe_inventory_on_this_machine() -> None:
    """Probing never fails here and gives sane host numbers, logged once."""
    with capture_logs() as logs:
        inv = probe_inventory()
    assert inv.host_total > 0 and 0 <= inv.host_free <= inv.host_total
    assert all(g.total > 0 and 0 <= g.free <= g.total for g in inv.gpus)
    assert [e["event"] for e in logs] == ["hardware inventory"] and logs[0]["source"] == inv.source


def test_probe_inventory_uses_llama_server_when_no_nvidia_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NVML or nvidia-smi on PATH, the GPUs llama-server lists are the inventory's."""
    fake = _script(tmp_path / "llama-server", 'echo "Available devices:"; echo "  Vulkan0: iGPU (4096 MiB, $FREE MiB free)"\n')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("supervisor.pool.hardware.nvml_gpus", lambda env=None: None)
    inv = probe_inventory(fake, env={"FREE": "1000"})
    assert inv.source == "llama-server" and inv.gpus == (Gpu("Vulkan0", "iGPU", 4096 * MiB, 1000 * MiB, "vulkan"),)
    again = refresh(inv, fake, env={"FREE": "3000"})
    assert again.gpus[0].free == 3000 * MiB and again.gpus[0].total == 4096 * MiB
    assert refresh(inv, None).gpus == inv.gpus  # without the binary, GPU readings stay


def test_refresh_keeps_file_inventories(tmp_path: Path) -> None:
    """An injected inventory is the truth: refresh returns it unchanged."""
    path = tmp_path / "hw.yaml"
    path.write_text(GOOD_FILE)
    inv = inventory_from_file(path)
    assert refresh(inv) is inv


def test_refresh_probe_rereads_host_memory() -> None:
    """A probed CPU-only inventory gets a fresh host reading."""
    stale = Inventory(host_total=1, host_free=-1, source="probe")
    assert refresh(stale).host_free >= 0
