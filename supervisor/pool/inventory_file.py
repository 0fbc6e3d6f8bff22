"""A hardware inventory given in a YAML file instead of probed (``LLAMASUP_HARDWARE``).

Operators use it to plan for a machine other than the one they are on, or to hold memory back from
llamasup; tests use it to run GPU and small-memory cases on machines without them::

    host: {total: 16GiB, free: 12GiB}
    gpus:
      - {id: CUDA0, name: "Fake GPU", total: 24GiB, free: 23GiB, library: cuda}
    unified_memory: false
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .hardware import Gpu, Inventory, library_of

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(value: object) -> int:
    """Bytes from an integer or a string like ``16GiB``, ``1.5 GB``, ``512MiB``, ``100``; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"negative size {value}")
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"invalid size {value!r} (bytes, or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)")
    unit = _UNITS[(m[2] or "b").lower()]
    return int(m[1]) * unit if m[1].isdigit() else int(float(m[1]) * unit)


def _mapping(value: object, where: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        raise ValueError(f"{where}: missing")
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return value


def _sizes(fields: dict[str, Any], where: str) -> tuple[int, int]:
    """(total, free) of a host or GPU entry; free defaults to total and may not exceed it."""
    if "total" not in fields:
        raise ValueError(f"{where}.total: missing")
    try:
        total = parse_size(fields["total"])
    except ValueError as e:
        raise ValueError(f"{where}.total: {e}") from None
    try:
        free = parse_size(fields.get("free", total))
    except ValueError as e:
        raise ValueError(f"{where}.free: {e}") from None
    if free > total:
        raise ValueError(f"{where}.free: {free} bytes is more than total ({total} bytes)")
    return total, free


def _gpu_entry(entry: object, where: str) -> Gpu:
    fields = _mapping(entry, where, {"id", "name", "total", "free", "library"})
    device_id = fields.get("id")
    if not isinstance(device_id, str) or not device_id:
        raise ValueError(f"{where}.id: missing (a llama.cpp device name such as CUDA0)")
    total, free = _sizes(fields, where)
    name, library = fields.get("name", device_id), fields.get("library", library_of(device_id))
    if not isinstance(name, str) or not isinstance(library, str):
        raise ValueError(f"{where}: name and library must be strings")
    return Gpu(device_id, name, total, free, library)


def parse_inventory(data: object, source: str) -> Inventory:
    """An ``Inventory`` from parsed YAML (pure); ValueError naming the field when it is malformed."""
    top = _mapping(data, "top level", {"host", "gpus", "unified_memory"})
    host_total, host_free = _sizes(_mapping(top.get("host"), "host", {"total", "free"}), "host")
    entries = top.get("gpus") or []
    if not isinstance(entries, list):
        raise ValueError("gpus: expected a list")
    gpus = tuple(_gpu_entry(e, f"gpus[{i}]") for i, e in enumerate(entries))
    if len({g.id for g in gpus}) != len(gpus):
        raise ValueError("gpus: device ids repeat")
    unified = top.get("unified_memory", False)
    if not isinstance(unified, bool):
        raise ValueError(f"unified_memory: expected true or false, got {unified!r}")
    return Inventory(host_total, host_free, gpus, unified_memory=unified, source=source)


def inventory_from_file(path: Path) -> Inventory:
    """An operator- or test-given inventory (YAML; see ``parse_inventory``) instead of probing."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"hardware inventory {path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"hardware inventory {path}: invalid YAML: {e}") from None
    try:
        return parse_inventory(data, f"file:{path}")
    except ValueError as e:
        raise ConfigError(f"hardware inventory {path}: {e}") from None
