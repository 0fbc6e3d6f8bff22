"""``/v1/models`` and ``/v1/models/{model}`` with the official ``openai`` client (no runner involved)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
import pytest

from tests.conftest import ServerFactory, base_url
from tests.store_helpers import install_gguf


async def test_list_and_retrieve(start_server: ServerFactory, fake_llama_server_bin: Path, models_dir: Path, tiny_gguf: Path) -> None:
    install_gguf(models_dir, "jmorgan/Mistral:7B", tiny_gguf)
    server = await start_server(fake_llama_server_bin)
    client = openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused")
    listed = {m.id: m for m in (await client.models.list()).data}
    assert set(listed) == {"tiny:latest", "jmorgan/Mistral:7B"}
    assert listed["tiny:latest"].owned_by == "library" and listed["jmorgan/Mistral:7B"].owned_by == "jmorgan"
    assert all(m.object == "model" and m.created > 1_600_000_000 for m in listed.values())
    assert (await client.models.retrieve("tiny")).id == "tiny:latest"
    assert (await client.models.retrieve("jmorgan/mistral:7b")).id == "jmorgan/Mistral:7B"  # namespaced, any case
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("nope")
    assert info.value.body == {"message": "model 'nope:latest' not found", "type": "not_found_error", "param": None, "code": None}  # fmt: skip


async def test_an_empty_store_lists_null(start_server: ServerFactory, fake_llama_server_bin: Path, tmp_path: Path) -> None:
    server = await start_server(fake_llama_server_bin, models_dir=tmp_path / "empty")
    async with aiohttp.ClientSession() as session, session.get(base_url(server) + "/v1/models") as r:
        assert (r.status, await r.json()) == (200, {"object": "list", "data": None})
