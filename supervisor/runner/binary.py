"""Finding the llama-server binary to run.

Order: ``LLAMASUP_LLAMA_SERVER`` (an existing build: distro, Homebrew, release), then the newest
complete build in llamasup's runner cache (what ``build_runner.sh`` produces), then ``llama-server``
on ``PATH``. ``make serve``/``make test`` pass the exact path that build_runner.sh printed.
"""

from __future__ import annotations

import os
import shutil
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
