"""Facts about this machine that decide how runners are launched (read once, then pure decisions).

Weight repacking and AMX: the pinned llama.cpp's CPU backend repacks quantized weights at load into
layouts for the CPU's matrix units. On CPUs with AMX (``amx_int8``; Sapphire Rapids and later), loading
any Q8_0 or Q4_K model with repacking on crashes llama-server with SIGSEGV (measured here with this
build, for tiny and 340 MB models alike; F16 models are unaffected). ``--no-repack`` avoids it at some
CPU speed, so runners get it exactly on such CPUs.
"""

from __future__ import annotations

import functools
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")


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
