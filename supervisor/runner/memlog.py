"""What a runner really allocated, read from llama-server's load log (reference/llama-server.md §6.1).

At ``--log-verbosity 4`` libllama prints one line per buffer it allocates while loading: model
weights, KV cache (or recurrent state), logits output and compute scratch, each with the backend
buffer type it lives in; the multimodal projector (clip) prints its model size and compute buffer
after ``CLIP using <dev> backend``. ``MemoryLog`` is fed every output line of a runner and adds them
up per device. Buffer types of host memory (``CPU``, ``CPU_Mapped``, ``CPU_REPACK``, ``AMX``,
``CUDA_Host``, ...) all count as the host, named ``CPU``; numbered backends (``CUDA0``, ``ROCm1``,
``Vulkan0``, ``MTL0``, ``RPC0[host:port]``) are devices. The fit dry-runs before the real load are
not reported as buffer lines (they are demoted to debug), so what is summed is the real load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

HOST = "CPU"
MIB = 1 << 20
KINDS = ("model", "kv", "compute", "output", "projector")

_PREFIX = re.compile(r"^(?:[\d.]+ )?(?:[IWEDT] )?(?:\S{1,4} {1,2})?")
_BUFFER = re.compile(r"^\w+: +(\S+) +(model|KV|RS|compute|LoRA|output) +buffer size = +([\d.]+) MiB")
_CLIP_BACKEND = re.compile(r"^clip_ctx: CLIP using (\S+) backend")
_CLIP_SIZE = re.compile(r"^load_hparams: model size: +([\d.]+) MiB")
_OFFLOADED = re.compile(r"^load_tensors: offloaded (\d+)/(\d+) layers to GPU")
_CTX = re.compile(r"^llama_context: n_ctx(_seq)? += (\d+)")
_DEVICE_INFO = re.compile(r"^common_param: +- (\S+) +: (.*) \((\d+) MiB, (\d+) MiB free\)")
_GPU_NAME = re.compile(r"^[A-Za-z]+\d+(\[[^\]]*\])?$")
_KIND = {"model": "model", "KV": "kv", "RS": "kv", "compute": "compute", "LoRA": "model", "output": "output"}


def device_of(buffer_type: str) -> str:
    """The device a buffer type's memory belongs to: ``CPU`` for every kind of host memory."""
    return buffer_type if _GPU_NAME.match(buffer_type) else HOST


def is_gpu(device: str) -> bool:
    return device != HOST


@dataclass(frozen=True)
class DeviceBytes:
    """Bytes on one device, by what they hold."""

    model: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0
    projector: int = 0

    @property
    def total(self) -> int:
        return self.model + self.kv + self.compute + self.output + self.projector

    def plus(self, kind: str, n: int) -> DeviceBytes:
        return replace(self, **{kind: getattr(self, kind) + n})


@dataclass(frozen=True)
class ReportedDevice:
    """A device as llama-server lists it at start-up (``common_param: - CUDA0 : name (total, free)``)."""

    name: str
    description: str
    total: int
    free: int


@dataclass
class MemoryLog:
    """Accumulates a runner's load log; owned by its ``RunnerProcess`` and fed line by line."""

    devices: dict[str, DeviceBytes] = field(default_factory=dict)
    reported: list[ReportedDevice] = field(default_factory=list)
    offloaded: tuple[int, int] | None = None  # (layers on GPU, layers)
    n_ctx: int | None = None
    n_ctx_seq: int | None = None
    _clip_device: str | None = None

    def feed(self, line: str) -> None:
        text = _PREFIX.sub("", line, count=1)
        if m := _BUFFER.match(text):
            kind = "projector" if self._clip_device is not None else _KIND[m.group(2)]
            self._add(device_of(m.group(1)), kind, float(m.group(3)))
        elif m := _CLIP_BACKEND.match(text):
            self._clip_device = device_of(m.group(1))
        elif (m := _CLIP_SIZE.match(text)) and self._clip_device is not None:
            self._add(self._clip_device, "projector", float(m.group(1)))
        elif m := _OFFLOADED.match(text):
            self.offloaded = (int(m.group(1)), int(m.group(2)))
        elif m := _CTX.match(text):
            if m.group(1):
                self.n_ctx_seq = int(m.group(2))
            else:
                self.n_ctx = int(m.group(2))
        elif m := _DEVICE_INFO.match(text):
            self.reported.append(
                ReportedDevice(m.group(1), m.group(2).strip(), int(m.group(3)) * MIB, int(m.group(4)) * MIB)
            )

    def _add(self, device: str, kind: str, mib: float) -> None:
        self.devices[device] = self.devices.get(device, DeviceBytes()).plus(kind, round(mib * MIB))

    def snapshot(self) -> MeasuredMemory:
        return MeasuredMemory(dict(self.devices), self.offloaded, self.n_ctx, self.n_ctx_seq)


@dataclass(frozen=True)
class MeasuredMemory:
    """What a loaded runner holds, per device (``CPU`` = host)."""

    devices: dict[str, DeviceBytes]
    offloaded: tuple[int, int] | None = None
    n_ctx: int | None = None
    n_ctx_seq: int | None = None

    @property
    def total(self) -> int:
        return sum(d.total for d in self.devices.values())

    @property
    def gpu(self) -> int:
        return sum(d.total for name, d in self.devices.items() if is_gpu(name))

    @property
    def host(self) -> int:
        return self.devices[HOST].total if HOST in self.devices else 0

    @property
    def measured(self) -> bool:
        """False when the log had no buffer lines (e.g. a runner that does not print them)."""
        return bool(self.devices)


def parse_memory_log(lines: list[str]) -> MeasuredMemory:
    """The measured memory in a whole log (tests and tools; runners feed ``MemoryLog`` live)."""
    log = MemoryLog()
    for line in lines:
        log.feed(line)
    return log.snapshot()
