"""Converting a Hugging Face safetensors model directory to GGUF for ``/api/create``.

Ollama converts in Go; llamasup runs llama.cpp's own ``convert_hf_to_gguf.py`` from the same source
tree as its llama-server, so every architecture that llama-server can run can also be converted, with
the tensor names and metadata it expects. The script runs as a child process of this very interpreter
(``sys.executable``): it sees the same installed packages, a crash or a memory blow-up in torch stays
out of the server, and a cancelled create can kill it (see ``tool.run_tool``).

Where the script lives: ``build_runner.sh`` copies it, with its ``conversion/`` package and the
``gguf-py/`` it imports, to ``<runner>/convert/`` beside ``<runner>/bin/llama-server``; a source
checkout also has it in ``vendor/llama.cpp/``. Its Python requirements (torch, transformers, ...) are
the optional ``llamasup[convert]`` extra, checked here first so that a missing one is reported as the
install command rather than as a traceback from the child.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConversionError
from .tool import run_tool

SCRIPT = "convert_hf_to_gguf.py"
# What convert_hf_to_gguf.py and its conversion/ package import for the common architectures.
CONVERT_REQUIREMENTS: tuple[str, ...] = ("torch", "transformers", "safetensors", "sentencepiece", "numpy")
OUTTYPES = ("f16", "f32", "bf16", "q8_0")
DEFAULT_STALL_TIMEOUT = 300.0  # importing torch, then one large tensor at a time, on few cores

_SOURCE_TREE = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp"


def missing_requirements(modules: Sequence[str] = CONVERT_REQUIREMENTS) -> list[str]:
    """The modules in ``modules`` that this interpreter cannot import (found without importing them)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a dotted name whose parent is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def check_requirements(modules: Sequence[str] = CONVERT_REQUIREMENTS) -> None:
    """Raise ``ConversionError`` naming the missing packages and the install command."""
    missing = missing_requirements(modules)
    if missing:
        raise ConversionError(
            f"converting safetensors models needs extra Python packages ({', '.join(missing)}): "
            "pip install 'llamasup[convert]'"
        )


def _complete(script: Path) -> bool:
    root = script.parent
    return script.is_file() and (root / "conversion" / "__init__.py").is_file() and (root / "gguf-py").is_dir()


def find_converter(llama_server: Path | None, *, source_tree: Path = _SOURCE_TREE) -> Path:
    """``convert_hf_to_gguf.py`` for ``llama_server``: ``<bin>/../convert/``, else the source checkout."""
    candidates = []
    if llama_server is not None:
        candidates.append(llama_server.resolve().parent.parent / "convert" / SCRIPT)
    candidates.append(source_tree / SCRIPT)
    for script in candidates:
        if _complete(script):
            return script
    raise ConversionError(
        f"llama.cpp's {SCRIPT} was not found (looked in {', '.join(str(c.parent) for c in candidates)}); "
        "run ./build_runner.sh, which installs it beside llama-server"
    )


async def convert(
    model_dir: Path,
    out_dir: Path,
    *,
    script: Path,
    outtype: str = "f16",
    progress: Callable[[str], None] | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    requirements: Sequence[str] = CONVERT_REQUIREMENTS,
) -> Path:
    """Convert ``model_dir`` into a new temporary GGUF inside ``out_dir`` and return its path.

    ``out_dir`` should be the store's blobs directory, so that the caller can hash the file and rename
    it into place atomically; the file is removed if anything fails or the caller is cancelled.
    ``progress`` receives each line the converter prints. Raises ``ConversionError`` for missing
    requirements, an unknown ``outtype`` and a failed or stalled conversion (exit status + output tail).
    """
    check_requirements(requirements)
    if outtype.lower() not in OUTTYPES:
        raise ConversionError(f"unsupported conversion type {outtype} - supported types are {', '.join(OUTTYPES)}")
    if not (model_dir / "config.json").is_file():
        raise ConversionError(f"no config.json in {model_dir}: not a Hugging Face model directory")
    fd, name = tempfile.mkstemp(prefix=".convert-", suffix=".gguf.partial", dir=out_dir)
    os.close(fd)
    tmp = Path(name)
    argv = [sys.executable, "-u", str(script), str(model_dir.resolve()), "--outfile", str(tmp), "--outtype", outtype.lower()]
    await run_tool(argv, what=SCRIPT, output=tmp, on_line=progress, stall_timeout=stall_timeout)
    return tmp
