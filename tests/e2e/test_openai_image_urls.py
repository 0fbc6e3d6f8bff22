"""An image URL in ``/v1/chat/completions`` fetched by llamasup and seen by a real llama-server with a projector."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import openai
import pytest

from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.projector_models import image_token_count, write_projector
from tests.store_helpers import install_gguf


@pytest.fixture(scope="module")
def vision_ggufs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("vision-url")
    return write_model(d / "text.gguf", preset="tiny"), write_projector(d / "mmproj.gguf", text_n_embd=128)


async def test_image_url_reaches_the_projector(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path,
                                               vision_ggufs: tuple[Path, Path], image_url: str) -> None:  # fmt: skip
    """With 127.0.0.0/8 allowed, a vision model answers a question about an image given by URL; with the
    default policy the same request is refused before the model sees it."""
    text, projector = vision_ggufs
    install_gguf(models_dir, "vision", text, projector=projector)
    server = await start_server(llama_server_bin, image_fetch_allow=(ipaddress.ip_network("127.0.0.0/8"),))
    client = openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused")
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": image_url}}]}]
    plain = await client.chat.completions.create(model="vision", messages=[{"role": "user", "content": "What is it?"}], max_tokens=1, temperature=0)
    reply = await client.chat.completions.create(model="vision", messages=messages, max_tokens=1, temperature=0, stream=False)  # type: ignore[arg-type]
    assert len(reply.choices) == 1 and reply.choices[0].finish_reason in ("stop", "length")
    assert plain.usage is not None and reply.usage is not None
    assert reply.usage.prompt_tokens == plain.usage.prompt_tokens + image_token_count()  # the image became the projector's tokens

    refusing = await start_server(llama_server_bin)
    other = openai.AsyncOpenAI(base_url=base_url(refusing) + "/v1", api_key="unused")
    with pytest.raises(openai.BadRequestError) as info:
        await other.chat.completions.create(model="vision", messages=messages, max_tokens=4)  # type: ignore[arg-type]
    assert info.value.body == {"message": f'failed to fetch image "{image_url}": address 127.0.0.1 is not allowed (set LLAMASUP_IMAGE_FETCH_ALLOW to permit it)',
                               "type": "invalid_request_error", "param": None, "code": None}  # fmt: skip
