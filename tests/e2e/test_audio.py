"""Audio input end to end, with the real llama-server and the tiny audio projector of
tests/audio_models.py: the ``audio`` capability, WAV/MP3 in Ollama's ``images`` on both chat paths
(llama-server's Jinja template: ``input_audio`` parts; a Go TEMPLATE: media markers in
``/completion``'s ``multimodal_data``) and on generate, OpenAI ``input_audio`` parts in chat
completions and the Responses API, and the refusals.

A clip shorter than 30 s is exactly `audio_token_count` prompt tokens (no begin/end text), so each
test compares a prompt with audio to the same prompt without.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.audio_models import audio_token_count, silent_mp3, tiny_wav, write_audio_projector
from tests.chat_models import GO_CHATML
from tests.conftest import ServerFactory, base_url
from tests.models import PRESETS, write_model
from tests.projector_models import tiny_png, write_projector
from tests.store_helpers import install_gguf

pytestmark = pytest.mark.e2e

N_SAMPLES = 4000  # 0.25 s
WAV = tiny_wav(N_SAMPLES)
MP3 = silent_mp3(8)  # 8 frames of 1152 samples at 44.1 kHz: also under 30 s, so one window
AUDIO_TOKENS = audio_token_count(N_SAMPLES)
OPTIONS = {"num_predict": 1, "temperature": 0}
TINY = "registry.ollama.ai/library/tiny:latest"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio-models")
    n_embd = PRESETS["tiny"].n_embd
    return {
        "text": write_model(d / "text.gguf", preset="tiny"),
        "audio": write_audio_projector(d / "mmproj-audio.gguf", text_n_embd=n_embd),
        "vision": write_projector(d / "mmproj-vision.gguf", text_n_embd=n_embd),
    }


@pytest.fixture
async def server(start_server: ServerFactory, llama_server_bin: Path, models_dir: Path, ggufs: dict[str, Path]) -> TestServer:
    install_gguf(models_dir, "hearing", ggufs["text"], projector=ggufs["audio"])
    install_gguf(models_dir, "hearing-go", ggufs["text"], projector=ggufs["audio"], template=GO_CHATML)
    install_gguf(models_dir, "seeing", ggufs["text"], projector=ggufs["vision"])
    return await start_server(llama_server_bin, models_dir=models_dir)


async def _post(server: TestServer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + path, json={**body, "stream": False}) as r:
            return r.status, json.loads(await r.read())


async def _ok(server: TestServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, reply = await _post(server, path, body)
    assert status == 200, reply
    return reply


def _chat(model: str, *media: bytes) -> dict[str, Any]:
    message = {"role": "user", "content": "What do you hear?", "images": [_b64(m) for m in media]}
    return {"model": model, "messages": [message], "options": OPTIONS}


async def test_audio_capability(server: TestServer) -> None:
    """A projector with an audio encoder gives audio (and no vision); a vision projector vision only."""
    for model, caps in (("hearing", ["completion", "audio"]), ("hearing-go", ["completion", "audio", "tools", "thinking"]),
                        ("seeing", ["completion", "vision"]), ("tiny", ["completion"])):  # fmt: skip
        assert (await _ok(server, "/api/show", {"model": model}))["capabilities"] == caps, model
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url(server) + "/api/tags") as r:
            tags = {m["name"]: m.get("capabilities") for m in (await r.json())["models"]}
    assert tags["hearing:latest"] == ["completion", "audio"] and tags["seeing:latest"] == ["completion", "vision"]


async def test_wav_in_images_reaches_the_projector(server: TestServer) -> None:
    """A WAV in a chat message's images becomes the projector's tokens, on the native path
    (input_audio parts) and the Go-template path (media markers), and on generate."""
    for model in ("hearing", "hearing-go"):
        plain = await _ok(server, "/api/chat", _chat(model))
        heard = await _ok(server, "/api/chat", _chat(model, WAV))
        assert heard["prompt_eval_count"] == plain["prompt_eval_count"] + AUDIO_TOKENS, model
        assert heard["done_reason"] == "length" and heard["eval_count"] == 1
        two = await _ok(server, "/api/generate", {"model": model, "prompt": "Compare", "images": [_b64(WAV), _b64(WAV)], "options": OPTIONS})
        none = await _ok(server, "/api/generate", {"model": model, "prompt": "Compare", "options": OPTIONS})
        assert two["prompt_eval_count"] == none["prompt_eval_count"] + 2 * AUDIO_TOKENS, model


async def test_mp3_in_images(server: TestServer) -> None:
    """An MP3 is sniffed and sent as audio too (format mp3 on the native path)."""
    for model in ("hearing", "hearing-go"):
        plain = await _ok(server, "/api/chat", _chat(model))
        heard = await _ok(server, "/api/chat", _chat(model, MP3))
        assert heard["prompt_eval_count"] == plain["prompt_eval_count"] + AUDIO_TOKENS, model


async def test_go_template_counts_audio_as_media(server: TestServer) -> None:
    """On the Go-template path audio is tagged like an image ([img-N]) before it becomes a marker."""
    reply = await _ok(server, "/api/chat", {**_chat("hearing-go", WAV), "_debug_render_only": True})
    assert reply["_debug_info"] == {
        "rendered_template": "<|im_start|>user\n[img-0]What do you hear?<|im_end|>\n<|im_start|>assistant\n",
        "image_count": 1,
    }


async def test_openai_input_audio(server: TestServer) -> None:
    """An input_audio part in /v1/chat/completions (the openai client) and in /v1/responses reaches the
    projector, on both chat paths."""
    async with openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused", max_retries=0) as client:
        for model in ("hearing", "hearing-go"):
            part = {"type": "input_audio", "input_audio": {"data": _b64(WAV), "format": "wav"}}
            plain = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Listen."}], max_tokens=1, temperature=0)
            heard = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": [{"type": "text", "text": "Listen."}, part]}], max_tokens=1, temperature=0  # type: ignore[list-item]
            )
            assert plain.usage is not None and heard.usage is not None
            assert heard.usage.prompt_tokens == plain.usage.prompt_tokens + AUDIO_TOKENS, model

            text = {"type": "input_text", "text": "Listen."}
            r_plain = await client.responses.create(model=model, input=[{"role": "user", "content": [text]}], max_output_tokens=1, temperature=0)  # type: ignore[list-item]
            r_heard = await client.responses.create(model=model, input=[{"role": "user", "content": [text, part]}], max_output_tokens=1, temperature=0)  # type: ignore[list-item]
            assert r_plain.usage is not None and r_heard.usage is not None
            assert r_heard.usage.input_tokens == r_plain.usage.input_tokens + AUDIO_TOKENS, model


async def test_audio_refusals(server: TestServer) -> None:
    """Audio for a model without audio (text-only or vision-only), an image for an audio-only model,
    and bad input_audio data are 400s before any runner sees them."""
    for model in ("tiny", "seeing"):
        status, reply = await _post(server, "/api/chat", _chat(model, WAV))
        name = TINY if model == "tiny" else "registry.ollama.ai/library/seeing:latest"
        assert (status, reply) == (400, {"error": f"{name} does not support audio"}), model
    status, reply = await _post(server, "/api/generate", {"model": "tiny", "prompt": "x", "images": [_b64(WAV), _b64(tiny_png())]})
    assert (status, reply) == (400, {"error": f"{TINY} does not support vision\naudio"})
    status, reply = await _post(server, "/api/chat", _chat("hearing", tiny_png()))
    assert (status, reply) == (400, {"error": "registry.ollama.ai/library/hearing:latest does not support vision"})

    async with openai.AsyncOpenAI(base_url=base_url(server) + "/v1", api_key="unused", max_retries=0) as client:
        for model, data, message in (("tiny", _b64(WAV), f"{TINY} does not support audio"),
                                     ("hearing", "not base64!", "invalid audio input"),
                                     ("hearing", _b64(b"not audio"), "invalid audio input")):  # fmt: skip
            part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(model=model, messages=[{"role": "user", "content": [part]}], max_tokens=1)  # type: ignore[list-item]
            assert isinstance(info.value.body, dict) and info.value.body["message"] == message
