"""Calls on a leased runner whose connection may break: the cause is found before it is reported.

A runner that dies mid-request shows up as a lost connection; whether it exited (with which status
and last output) or is merely unreachable is what the client needs to hear (``RunnerCrashed``).
"""

from __future__ import annotations

from typing import Any

from ..errors import RunnerCrashed
from ..pool.pool import Runner
from ..runner.client import RunnerConnectionLost


async def crashed(runner: Runner, error: RunnerConnectionLost) -> RunnerCrashed:
    """What a lost connection to ``runner`` means: its exit (status and output tail), else the loss."""
    process = runner.process
    if await process.wait_exit(timeout=2.0) is not None:
        return RunnerCrashed(await process.exit_detail())
    return RunnerCrashed(f"lost connection to llama-server: {error}")


async def post(runner: Runner, path: str, body: dict[str, Any]) -> Any:
    """``runner.client.post_json``, with a lost connection reported as ``RunnerCrashed``."""
    try:
        return await runner.client.post_json(path, body)
    except RunnerConnectionLost as e:
        raise await crashed(runner, e) from e
