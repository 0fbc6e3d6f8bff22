"""Pull from a real registry (docker-registry on 127.0.0.1) into llamasup running the real llama-server:
the pulled model answers, and a GGUF of an architecture this llama-server cannot load is refused once
downloaded, with the fix named and no model left listed."""

from __future__ import annotations

from pathlib import Path

import ollama
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import base_url
from tests.models import write_header_gguf, write_model
from tests.registry_push import progress_statuses, publish
from tests.registry_server import RegistryServer


async def test_a_pulled_model_runs(registry_open: RegistryServer, real_server: TestServer, tmp_path: Path) -> None:
    await publish(registry_open, "team/runs:1", write_model(tmp_path / "runs.gguf", preset="tiny", seed=11), tmp_path)
    client = ollama.AsyncClient(host=base_url(real_server))
    name = f"{registry_open.host}/team/runs:1"
    progress = [p async for p in await client.pull(name, insecure=True, stream=True)]
    assert progress_statuses(progress)[-1] == "success"
    reply = await client.generate(model=name, prompt="hello", options={"num_predict": 4, "temperature": 0})
    assert reply.done and reply.eval_count == 4 and reply.response


async def test_an_architecture_the_runner_cannot_load_is_refused(registry_open: RegistryServer, real_server: TestServer,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    await publish(registry_open, "team/future:1", write_header_gguf(tmp_path / "future.gguf", "futurenet"), tmp_path)
    client = ollama.AsyncClient(host=base_url(real_server))
    name = f"{registry_open.host}/team/future:1"
    with pytest.raises(ollama.ResponseError) as info:
        async for _ in await client.pull(name, insecure=True, stream=True):
            pass
    assert "model architecture 'futurenet'" in info.value.error and "build_runner.sh" in info.value.error
    assert name not in [m.model for m in (await client.list()).models]
    with pytest.raises(ollama.ResponseError) as shown:
        await client.show(name)
    assert shown.value.status_code == 404
