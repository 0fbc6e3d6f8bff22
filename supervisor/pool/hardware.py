"""Facts about this machine that decide how runners are launched (read once, then pure decisions).

Weight repacking and AMX: the pinned llama.cpp's CPU backend repacks quantized weights at load into
layouts for the CPU's matrix units. On CPUs with AMX (``amx_int8``; Sapphire Rapids and later), loading
any Q8_0 or Q4_K model with repacking on crashes llama-server with SIGSEGV (measured here with this
build, for tiny and 340 MB models alike; F16 models are unaffected). ``--no-repack`` avoids it at some
CPU speed, so runners get it exactly on such CPUs.

The memory inventory (``Inventory``): host RAM bounded by this process's cgroup, and the GPUs that
llama-server will see, named as llama.cpp names them (``CUDA0``, ``MTL0``, ...). Every source has a pure
parser (text in, values out; table-tested) and a probe that reads the system and never raises for a
missing tool. GPU sources, best first: NVML (no subprocess, exact free memory), ``nvidia-smi``,
``llama-server --list-devices`` (any backend, but a process start), an estimate for Apple silicon.
NVML and nvidia-smi list every physical GPU, so ``CUDA_VISIBLE_DEVICES`` is applied here the way the CUDA
runtime applies it inside llama-server. That variable is a fact about the runners' environment, not a
llamasup setting: probes take the environment as a parameter and read ``os.environ`` only when none is
given.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import structlog


log = structlog.get_logger("supervisor.hardware")

_CPUINFO = Path("/proc/cpuinfo")
MIB = 1 << 20


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (``flags`` line of /proc/cpuinfo); empty where that file does not exist."""
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        return frozenset()
    return parse_cpu_flags(text)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def repack_is_safe(flags: frozenset[str]) -> bool:
    """Whether llama-server may repack weights on a CPU with ``flags`` (not with AMX; see above)."""
    return "amx_int8" not in flags


# --- the inventory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    id: str  # llama.cpp device name, e.g. "CUDA0", "ROCm0", "Vulkan0", "MTL0"
    name: str  # e.g. "NVIDIA H200"
    total: int  # bytes
    free: int  # bytes
    library: str  # "cuda" | "rocm" | "metal" | "vulkan" | ...


@dataclass(frozen=True)
class Inventory:
    host_total: int  # bytes, the smaller of physical RAM and the cgroup limit
    host_free: int  # bytes available now: psutil's available, bounded by the cgroup's headroom
    gpus: tuple[Gpu, ...] = ()
    unified_memory: bool = False  # Apple silicon: the GPU shares host RAM
    source: str = "probe"  # where the GPU facts came from: probe | nvml | nvidia-smi | llama-server | metal | file:<path>

    @property
    def gpu_total(self) -> int:
        return sum(g.total for g in self.gpus)

    def with_free(self, host_free: int, gpu_free: dict[str, int]) -> Inventory:
        """The same machine with new free-memory readings; GPUs missing from ``gpu_free`` keep theirs."""
        gpus = tuple(replace(g, free=gpu_free[g.id]) if g.id in gpu_free else g for g in self.gpus)
        return replace(self, host_free=host_free, gpus=gpus)


# Where GPU facts came from (``Inventory.source``); refresh() re-reads from the same place.
SOURCE_NONE = "probe"
SOURCE_NVML = "nvml"
SOURCE_NVIDIA_SMI = "nvidia-smi"
SOURCE_LLAMA_SERVER = "llama-server"
SOURCE_METAL = "metal"

# --- host memory and cgroups --------------------------------------------------------------------

# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX in bytes (9223372036854771712 with 4 KiB pages);
# anything this large is no limit on any real machine.
_V1_UNLIMITED = 1 << 60


def _stat_value(memory_stat: str, key: str) -> int:
    for line in memory_stat.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def parse_cgroup_v2(memory_max: str, memory_current: str, memory_stat: str = "") -> tuple[int | None, int | None]:
    """(limit, usage) from cgroup v2 ``memory.max``/``memory.current`` text; ``max`` or junk -> None.

    Given ``memory.stat``, usage leaves out ``inactive_file``: page cache the kernel reclaims before it
    would OOM-kill (reading a GGUF fills the cache), as ``docker stats`` counts it.
    """
    limit_text = memory_max.strip()
    limit = int(limit_text) if limit_text.isdigit() else None
    usage_text = memory_current.strip()
    usage = int(usage_text) if usage_text.isdigit() else None
    if usage is not None:
        usage = max(0, usage - _stat_value(memory_stat, "inactive_file"))
    return limit, usage


def parse_cgroup_v1(limit_in_bytes: str, usage_in_bytes: str, memory_stat: str = "") -> tuple[int | None, int | None]:
    """(limit, usage) from cgroup v1 ``memory.limit_in_bytes``/``memory.usage_in_bytes``; huge -> None."""
    limit_text = limit_in_bytes.strip()
    limit = int(limit_text) if limit_text.isdigit() and int(limit_text) < _V1_UNLIMITED else None
    usage_text = usage_in_bytes.strip()
    usage = int(usage_text) if usage_text.isdigit() else None
    if usage is not None:
        usage = max(0, usage - _stat_value(memory_stat, "total_inactive_file"))
    return limit, usage


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _cgroup_paths(proc_self_cgroup: str) -> tuple[str | None, str | None]:
    """(v1 memory controller path, v2 unified path) from /proc/self/cgroup text."""
    v1: str | None = None
    v2: str | None = None
    for line in proc_self_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v1, v2


def _levels(base: Path, cgroup_path: str) -> list[Path]:
    """``base/<cgroup_path>`` and each ancestor up to ``base``, leaf first (a parent's limit binds too)."""
    parts = [p for p in cgroup_path.split("/") if p and p != ".."]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_memory(root: Path = Path("/sys/fs/cgroup"), proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> tuple[int | None, int | None]:
    """(limit, usage) in bytes of the memory cgroup this process is in; None where unknown or unlimited.

    Reads v1 (``root/memory/<path>``) where the memory controller is on a v1 hierarchy, else v2
    (``root/<path>``). The path from /proc/self/cgroup may not exist under ``root`` (a container without
    its own cgroup namespace sees the host's path but has its own cgroup mounted at the root), so each
    ancestor is tried too, and the smallest limit found wins, with the usage of that same cgroup.
    """
    v1_path, v2_path = _cgroup_paths(_read(proc_self_cgroup) or "")
    parse: Callable[[str, str, str], tuple[int | None, int | None]]
    if v1_path is not None and (root / "memory").is_dir():
        base, path, files, parse = root / "memory", v1_path, ("memory.limit_in_bytes", "memory.usage_in_bytes"), parse_cgroup_v1
    else:
        base, path, files, parse = root, v2_path or "/", ("memory.max", "memory.current"), parse_cgroup_v2
    best: tuple[int | None, int | None] = (None, None)
    for level in _levels(base, path):
        limit_text = _read(level / files[0])
        if limit_text is None:
            continue
        reading = parse(limit_text, _read(level / files[1]) or "", _read(level / "memory.stat") or "")
        if best == (None, None) and reading[0] is None:
            best = (None, reading[1])  # the leaf's usage, while no limit has been seen
        elif reading[0] is not None and (best[0] is None or reading[0] < best[0]):
            best = reading
    return best


def bound_host_memory(total: int, available: int, limit: int | None, usage: int | None) -> tuple[int, int]:
    """(total, free): physical memory and psutil's available, bounded by the cgroup limit and headroom."""
    if limit is None:
        return total, available
    headroom = max(0, limit - usage) if usage is not None else limit
    return min(total, limit), min(available, headroom, limit)


def host_memory() -> tuple[int, int]:
    """(total, free) host memory in bytes, respecting this process's cgroup limit."""
    vm = psutil.virtual_memory()
    limit, usage = cgroup_memory() if sys.platform.startswith("linux") else (None, None)
    return bound_host_memory(int(vm.total), int(vm.available), limit, usage)


# --- NVIDIA: NVML, nvidia-smi, CUDA_VISIBLE_DEVICES ---------------------------------------------


@dataclass(frozen=True)
class PhysicalGpu:
    """A GPU as NVML and nvidia-smi number it (before CUDA_VISIBLE_DEVICES)."""

    index: int
    name: str
    total: int
    free: int
    uuid: str = ""


def cuda_visible_order(value: str | None, devices: Sequence[PhysicalGpu]) -> list[PhysicalGpu]:
    """The GPUs CUDA shows for CUDA_VISIBLE_DEVICES=``value``, in its order (CUDA0 first).

    Unset: all. Entries are indices or ``GPU-<uuid prefix>``; like the CUDA runtime, the list ends at
    the first entry that names no device (so ``""`` and ``-1`` hide every GPU), and a repeat is skipped.
    Indices are NVML's (PCI bus order); CUDA numbers that way only with CUDA_DEVICE_ORDER=PCI_BUS_ID, so
    on a machine mixing GPU models llama.cpp's CUDA0 may be another GPU than ours (default: fastest first).
    """
    if value is None:
        return list(devices)
    by_index = {d.index: d for d in devices}
    chosen: list[PhysicalGpu] = []
    for raw in value.split(","):
        entry = raw.strip()
        match: PhysicalGpu | None = None
        if entry.isdigit():
            match = by_index.get(int(entry))
        elif entry.upper().startswith("GPU-") and len(entry) > 4:
            hits = [d for d in devices if d.uuid and d.uuid.lower().startswith(entry.lower())]
            match = hits[0] if len(hits) == 1 else None
        if match is None:
            break
        if match not in chosen:
            chosen.append(match)
    return chosen


def _cuda_gpus(devices: Sequence[PhysicalGpu], cuda_visible: str | None) -> list[Gpu]:
    visible = cuda_visible_order(cuda_visible, devices)
    return [Gpu(f"CUDA{i}", d.name, d.total, d.free, "cuda") for i, d in enumerate(visible)]


def parse_nvidia_smi(csv_text: str, cuda_visible: str | None = None) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free[,uuid] --format=csv,noheader,nounits``.

    Sizes are MiB; rows with ``[N/A]`` sizes are skipped. Renumbered CUDA0.. after ``cuda_visible``.
    """
    devices: list[PhysicalGpu] = []
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        uuid = fields.pop() if len(fields) >= 5 and fields[-1].upper().startswith(("GPU-", "MIG-")) else ""
        total, free = fields[-2], fields[-1]
        if not (total.isdigit() and free.isdigit()):
            continue
        devices.append(PhysicalGpu(int(fields[0]), ", ".join(fields[1:-2]), int(total) * MIB, int(free) * MIB, uuid))
    return _cuda_gpus(devices, cuda_visible)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _output(argv: list[str], timeout: float, env: Mapping[str, str] | None = None) -> str | None:
    """A tool's stdout, or None where it is missing, fails or overruns ``timeout`` seconds."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=None if env is None else dict(env))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def nvidia_smi_gpus(env: Mapping[str, str] | None = None) -> list[Gpu] | None:
    """GPUs from running ``nvidia-smi`` (5 s at most); None where it is absent or fails."""
    text = _output(["nvidia-smi", "--query-gpu=index,name,memory.total,memory.free,uuid", "--format=csv,noheader,nounits"], 5)
    return None if text is None else parse_nvidia_smi(text, _env(env).get("CUDA_VISIBLE_DEVICES"))


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


_NVML_BUFFER = 96  # NVML_DEVICE_NAME_V2_BUFFER_SIZE, also enough for a UUID


def nvml_devices(lib: Any) -> list[PhysicalGpu] | None:
    """Every physical GPU through an NVML library handle; None where initialisation fails."""
    if lib.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint(0)
        if lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        devices: list[PhysicalGpu] = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            if lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
                continue  # e.g. a lost GPU; the others keep their indices
            name = ctypes.create_string_buffer(_NVML_BUFFER)
            uuid = ctypes.create_string_buffer(_NVML_BUFFER)
            memory = _NvmlMemory()
            if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
                continue
            lib.nvmlDeviceGetName(handle, name, ctypes.c_uint(_NVML_BUFFER))
            lib.nvmlDeviceGetUUID(handle, uuid, ctypes.c_uint(_NVML_BUFFER))
            label = name.value.decode(errors="replace") or f"NVIDIA GPU {index}"
            devices.append(PhysicalGpu(index, label, int(memory.total), int(memory.free), uuid.value.decode(errors="replace")))
        return devices
    finally:
        lib.nvmlShutdown()


def nvml_gpus(env: Mapping[str, str] | None = None) -> list[Gpu] | None:
    """NVIDIA GPUs through ``libnvidia-ml.so.1`` (ctypes); None where the library is missing or fails."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    try:
        devices = nvml_devices(lib)
    except (AttributeError, OSError):  # a library too old for the _v2 entry points
        return None
    return None if devices is None else _cuda_gpus(devices, _env(env).get("CUDA_VISIBLE_DEVICES"))


# --- llama-server --list-devices ----------------------------------------------------------------

# common/arg.cpp: printf("  %s: %s (%zu MiB, %zu MiB free)\n", name, description, total, free). The
# description may itself hold parentheses, so the sizes are matched at the end of the line.
_DEVICE_LINE = re.compile(r"^\s*([A-Za-z][\w.-]*?\d+)\s*:\s*(.*?)\s*\(\s*(\d+)\s*MiB\s*,\s*(\d+)\s*MiB\s+free\s*\)\s*$")
_LIBRARIES = {"cuda": "cuda", "rocm": "rocm", "hip": "rocm", "mtl": "metal", "metal": "metal", "vulkan": "vulkan"}


def library_of(device_id: str) -> str:
    """The backend of a llama.cpp device name: ``CUDA0`` -> cuda, ``MTL0`` -> metal, ``SYCL1`` -> sycl."""
    prefix = device_id.rstrip("0123456789").lower()
    return _LIBRARIES.get(prefix, prefix)


def parse_llama_devices(text: str) -> list[Gpu]:
    """Devices from ``llama-server --list-devices`` output (lines after ``Available devices:``).

    Devices that report no memory of their own (BLAS and other host-side accelerators: 0 MiB) are left
    out: their memory is host RAM, already counted.
    """
    gpus: list[Gpu] = []
    started = "Available devices:" not in text
    for line in text.splitlines():
        if not started:
            started = line.strip() == "Available devices:"
            continue
        m = _DEVICE_LINE.match(line)
        if m is None or int(m[3]) == 0:
            continue
        gpus.append(Gpu(m[1], m[2] or m[1], int(m[3]) * MIB, int(m[4]) * MIB, library_of(m[1])))
    return gpus


def llama_server_gpus(binary: Path, env: Mapping[str, str] | None = None) -> list[Gpu] | None:
    """Devices that ``binary --list-devices`` reports (20 s at most, with ``env``); None when it fails."""
    text = _output([str(binary), "--list-devices"], 20, env)
    return None if text is None or "Available devices:" not in text else parse_llama_devices(text)


# --- Apple silicon ------------------------------------------------------------------------------

# Metal's recommendedMaxWorkingSetSize, what llama.cpp reports as the device's total, is a fraction of
# RAM chosen by macOS (about 2/3 to 3/4); without llama-server to ask, assume 3/4.
_METAL_SHARE = 0.75


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def apple_gpu(host_total: int, brand: str = "") -> Gpu:
    """The Metal device of an Apple-silicon Mac (pure): 3/4 of RAM, all of it free to a new process."""
    budget = int(host_total * _METAL_SHARE)
    return Gpu("MTL0", brand or "Apple silicon GPU", budget, budget, "metal")


# --- probe, file, refresh -----------------------------------------------------------------------


def _probe_gpus(llama_server: Path | None, env: Mapping[str, str] | None, host_total: int) -> tuple[list[Gpu], str]:
    for source, probe in ((SOURCE_NVML, nvml_gpus), (SOURCE_NVIDIA_SMI, nvidia_smi_gpus)):
        gpus = probe(env)
        if gpus:
            return gpus, source
    if llama_server is not None:
        gpus = llama_server_gpus(llama_server, env)
        if gpus:
            return gpus, SOURCE_LLAMA_SERVER
    if is_apple_silicon():
        return [apple_gpu(host_total, (_output(["sysctl", "-n", "machdep.cpu.brand_string"], 5) or "").strip())], SOURCE_METAL
    return [], SOURCE_NONE


def probe_inventory(llama_server: Path | None = None, *, env: Mapping[str, str] | None = None) -> Inventory:
    """This machine's memory: host RAM (cgroup-bounded), then GPUs from the first source that has any.

    ``env`` is the environment runners get (for CUDA_VISIBLE_DEVICES); None: this process's.
    """
    host_total, host_free = host_memory()
    gpus, source = _probe_gpus(llama_server, env, host_total)
    inv = Inventory(host_total, host_free, tuple(gpus), unified_memory=is_apple_silicon(), source=source)
    log.info("hardware inventory", source=source, host_total_mib=host_total // MIB, host_free_mib=host_free // MIB,
             gpus=[f"{g.id} {g.name} {g.free // MIB}/{g.total // MIB} MiB free" for g in gpus],
             unified_memory=inv.unified_memory)  # fmt: skip
    return inv


def refresh(inv: Inventory, llama_server: Path | None = None, *, env: Mapping[str, str] | None = None) -> Inventory:
    """``inv`` with free memory read again from where it came from; a file inventory is returned as is.

    GPUs first found by llama-server are asked again only when ``llama_server`` is given (a process
    start); Metal's estimate does not change.
    """
    if inv.source.startswith("file:"):
        return inv
    _, host_free = host_memory()
    gpus: list[Gpu] | None = None
    if inv.source == SOURCE_NVML:
        gpus = nvml_gpus(env)
    elif inv.source == SOURCE_NVIDIA_SMI:
        gpus = nvidia_smi_gpus(env)
    elif inv.source == SOURCE_LLAMA_SERVER and llama_server is not None:
        gpus = llama_server_gpus(llama_server, env)
    return inv.with_free(host_free, {g.id: g.free for g in gpus or ()})
