"""Running the ``llamasup`` command as a real process against a test server (``OLLAMA_HOST``)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import ROOT


async def run_cli(url: str, *args: str, cwd: Path | None = None, stdin: bytes = b"", **env: str) -> tuple[int, str, str]:
    """``python -m supervisor ARGS`` with ``OLLAMA_HOST=url``; (exit status, stdout, stderr). Its stdin
    is a pipe holding ``stdin``, so the command sees no terminal, as in a script."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supervisor", *args, cwd=cwd or ROOT, env=dict(os.environ, OLLAMA_HOST=url, **env),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
