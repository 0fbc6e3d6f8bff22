"""Quantizing a GGUF with llama.cpp's ``llama-quantize`` for ``/api/create`` (``quantize`` field).

Ollama quantizes in-process with its own Go port of llama.cpp's quantizer; llamasup runs the
``llama-quantize`` built beside its llama-server (``runner.binary.find_tool``), so the file types it
writes are exactly the ones that llama-server reads. Ollama accepts only a few target types and only
16/32-bit float sources; the pure checks below reproduce its rules and error texts, and run before any
process starts.

Progress is llama-quantize's per-tensor line, ``[  12/ 291] blk.1.attn_q.weight - ...``, turned into
``(completed, total)`` tensor counts for the ``quantizing <FROM> model to <TO>`` status.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import ConversionError
from ..store.gguf_info import read_gguf_info
from .tool import run_tool

# Ollama's accepted names (upper-cased request value) → llama-quantize's type argument.
QUANTIZE_TYPES: dict[str, str] = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "Q8_0": "Q8_0",
    "Q4_K_S": "Q4_K_S",
    "Q4_K_M": "Q4_K_M",
    "Q4_K": "Q4_K_M",  # llama.cpp's own alias; the file then says Q4_K_M
}
QUANTIZABLE_SOURCES = frozenset({"F16", "BF16", "F32"})
DEFAULT_STALL_TIMEOUT = 300.0  # one large tensor (a 128k-token embedding) can take a while on few cores

_PROGRESS = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\s*\]")


def quantize_type(requested: str) -> str:
    """The file type a request asks for (``q4_k`` → ``Q4_K_M``), or Ollama's error for an unknown one."""
    upper = requested.upper()
    if upper not in QUANTIZE_TYPES:
        raise ConversionError(f"unsupported quantization type {upper} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0")
    return QUANTIZE_TYPES[upper]


def check_quantizable(source_file_type: str) -> None:
    """Raise Ollama's error unless the source (``GGUFInfo.file_type``) is a 16- or 32-bit float model."""
    if source_file_type.upper() not in QUANTIZABLE_SOURCES:
        raise ConversionError("quantization is only supported for F16, BF16 and F32 models")


def parse_progress(line: str) -> tuple[int, int] | None:
    """``(completed, total)`` from a per-tensor line of llama-quantize, else ``None``."""
    m = _PROGRESS.match(line)
    if m is None:
        return None
    done, total = int(m.group(1)), int(m.group(2))
    return (done, total) if 0 < done <= total else None


async def quantize(
    binary: Path,
    src: Path,
    dst: Path,
    file_type: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> None:
    """Quantize GGUF ``src`` into ``dst`` as ``file_type`` with the llama-quantize at ``binary``.

    ``dst`` should be a temporary name in the blobs directory: it is removed when anything fails or the
    caller is cancelled, and left complete otherwise. The type and the source's file type are checked
    first (``ConversionError`` with Ollama's text); deciding to skip quantizing a model that already
    has the wanted type is the caller's business. ``progress(completed, total)`` counts tensors.
    """
    target = quantize_type(file_type)
    info = await asyncio.to_thread(read_gguf_info, src)
    check_quantizable(info.file_type)

    def on_line(line: str) -> None:
        counts = parse_progress(line)
        if counts is not None and progress is not None:
            progress(*counts)

    await run_tool(
        [str(binary), str(src), str(dst), target],
        what="llama-quantize",
        output=dst,
        on_line=on_line,
        stall_timeout=stall_timeout,
    )
