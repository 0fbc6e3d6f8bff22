"""What llamasup's log makes of the real llama-server's output lines."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from tests.conftest import base_url, wait_until


async def test_a_fully_cached_prompt_is_not_a_warning(real_server: TestServer) -> None:
    """Repeating a prompt makes llama-server re-evaluate its last cached token and say so with two "W"
    lines; llamasup logs those at debug (other runner warnings stay warnings)."""
    body = {"model": "tiny", "prompt": "The same prompt twice", "raw": True, "stream": False, "options": {"num_predict": 2, "temperature": 0}}
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(base_url(real_server) + "/api/generate", json=body) as r:
                    assert r.status == 200
        await wait_until(lambda: any("n_past was set to" in e.get("line", "") for e in logs), what="the cached-prompt line")
        routine = [e for e in logs if e["event"] == "runner output" and ("n_past was set to" in e.get("line", "")
                                                                          or "need to evaluate at least 1 token" in e.get("line", ""))]  # fmt: skip
    assert len(routine) == 2 and {e["log_level"] for e in routine} == {"debug"}
