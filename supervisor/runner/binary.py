"""Finding the llama-server binary to run.

Order: ``LLAMASUP_LLAMA_SERVER`` (an existing build: distro, Homebrew, release), then the newest
complete build in llamasup's runner cache (what ``build_runner.sh`` produces), then ``llama-server``
on ``PATH``. ``make serve``/``make test`` pass the exact path that build_runner.sh printed.

The other llama.cpp tools (``llama-quantize``, ``ggml-rpc-server``) are found next to the chosen
llama-server: build_runner.sh builds them together, so a tool from elsewhere could come from another
llama.cpp version with other file-type numbers. Likewise the list of model architectures the build
can load (``architectures.txt``, written by build_runner.sh from the same source).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunnerBinaryNotFound
from ..settings import Settings

BUILD_HINT = "run ./build_runner.sh (it builds llama.cpp into the cache) or set LLAMASUP_LLAMA_SERVER=/path/to/llama-server"


def find_llama_server(settings: Settings) -> Path:
    """The llama-server to run, or ``RunnerBinaryNotFound`` naming the fix."""
    if settings.llama_server is not None:
        path = settings.llama_server
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
        raise RunnerBinaryNotFound(f"LLAMASUP_LLAMA_SERVER={path} is not an executable file; {BUILD_HINT}")
    builds = sorted(
        (p for p in settings.runners_dir.glob("*/bin/llama-server") if (p.parent.parent / "COMPLETE").is_file()),
        key=lambda p: (p.parent.parent / "COMPLETE").stat().st_mtime,
        reverse=True,
    )
    if builds:
        return builds[0]
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path).resolve()
    raise RunnerBinaryNotFound(f"no llama-server found in {settings.runners_dir} or on PATH; {BUILD_HINT}")


def find_tool(llama_server: Path, name: str) -> Path:
    """The llama.cpp tool ``name`` beside ``llama_server``, or ``RunnerBinaryNotFound`` naming the fix."""
    path = llama_server.parent / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise RunnerBinaryNotFound(
        f"{name} not found next to {llama_server}: run ./build_runner.sh (it builds {name} with llama-server) "
        "or set LLAMASUP_LLAMA_SERVER to a llama-server that has it in the same directory"
    )


ARCHITECTURES_FILE = "architectures.txt"


@dataclass(frozen=True)
class RunnerArchitectures:
    """The model architectures (GGUF ``general.architecture``) a llama-server build can load."""

    names: frozenset[str]
    source: Path  # the list they were read from, named in refusals

    def refusal(self, model: str, architecture: str) -> str | None:
        """Why ``model`` (of ``architecture``) cannot run on this build, with the fix; None if it can."""
        if architecture in self.names:
            return None
        what = f"model architecture '{architecture}'" if architecture else "no model architecture"
        return (
            f"{model} has {what}, which this llama-server cannot load (see {self.source}): update llama.cpp "
            "(raise the pin in build_runner.sh and run it again, or set LLAMASUP_LLAMA_SERVER to a newer "
            "llama-server) and pull again"
        )


def runner_architectures(llama_server: Path) -> RunnerArchitectures | None:
    """What ``llama_server`` can load, from the list build_runner.sh writes beside its build
    (``<bin>/../architectures.txt``); None for a build without one (a distribution's, say), which
    then reports an unknown architecture itself when the model loads."""
    path = llama_server.resolve().parent.parent / ARCHITECTURES_FILE
    try:
        names = frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return None
    return RunnerArchitectures(names, path) if names else None
