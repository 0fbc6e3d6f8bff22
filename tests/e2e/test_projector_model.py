"""The tiny vision projector of tests/projector_models.py against the real llama-server (no llamasup).

Facts these tests pin down (this llama-server build):
* with ``--mmproj`` ``/props`` reports ``modalities.vision`` (and ``video``) true;
* one image becomes exactly `image_token_count()` prompt tokens (no begin/end tokens);
* bytes that are not an image: 400 ``invalid_request_error`` "Failed to load image or audio file",
  on ``/completion`` and on ``/v1/chat/completions`` alike;
* a prompt whose last chunk is an image (nothing after the marker) aborts the process;
* an image sent to a server without ``--mmproj``: ``/completion`` answers 400
  "Multimodal data provided, but model does not support multimodal requests.", while the chat
  endpoint answers **500** ``server_error`` "image input is not supported - hint: if this is
  unexpected, you may need to provide the mmproj".
"""

from __future__ import annotations

import base64
import signal
import struct
import urllib.error
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from tests.models import PRESETS, write_model
from tests.processes import REQUEST_TIMEOUT, LlamaServer, llama_server
from tests.projector_models import (
    PROJECTOR_TYPE,
    image_embedding_rest_bound,
    image_token_count,
    tiny_png,
    write_projector,
)

pytestmark = pytest.mark.e2e

TEXT_N_EMBD = PRESETS["tiny"].n_embd


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("vision")
    text = write_model(root / "text.gguf", preset="tiny")
    proj = write_projector(root / "proj.gguf", text_n_embd=TEXT_N_EMBD)
    return text, proj


@pytest.fixture
def start_llama_server(llama_server_bin: Path, tmp_path: Path) -> Iterator[Callable[..., LlamaServer]]:
    """Start the real llama-server on 127.0.0.1 and wait for /health 200; stopped at teardown."""
    with ExitStack() as servers:

        def start(text: Path, projector: Path | None) -> LlamaServer:
            extra = [] if projector is None else ["--mmproj", str(projector)]
            return servers.enter_context(llama_server(llama_server_bin, text, tmp_path, extra))

        yield start


@pytest.fixture
def vision_server(start_llama_server: Callable[..., LlamaServer], model_files: tuple[Path, Path]) -> LlamaServer:
    text, proj = model_files
    return start_llama_server(text, proj)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chat_body(image_url: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is in this picture?"}]
    if image_url is not None:
        parts.append({"type": "image_url", "image_url": {"url": image_url}})
    return {"messages": [{"role": "user", "content": parts}], "max_tokens": 3, "temperature": 0}


# --------------------------------------------------------------------------
# The files themselves (no server)
# --------------------------------------------------------------------------


def test_projector_is_seeded_and_keeps_the_text_models_invariant(tmp_path: Path, model_files: tuple[Path, Path]) -> None:
    text, proj = model_files
    again = write_projector(tmp_path / "again.gguf", text_n_embd=TEXT_N_EMBD)
    other = write_projector(tmp_path / "other.gguf", text_n_embd=TEXT_N_EMBD, seed=1)
    assert again.read_bytes() == proj.read_bytes()
    assert other.read_bytes() != proj.read_bytes()
    assert tiny_png(7, 5, 3) == tiny_png(7, 5, 3) != tiny_png(7, 5, 4)

    reader = gguf.GGUFReader(proj)
    fields = {name: reader.fields[name].contents() for name in reader.fields}
    assert fields["general.architecture"] == "clip"
    assert fields["general.type"] == "mmproj"
    assert fields["clip.projector_type"] == PROJECTOR_TYPE
    assert fields["clip.has_vision_encoder"] is True
    t = {tensor.name: np.array(tensor.data, dtype=np.float32).reshape(tuple(reversed(tensor.shape))) for tensor in reader.tensors}
    assert t["mm.2.weight"].shape == (TEXT_N_EMBD, TEXT_N_EMBD)

    # Re-derive the bound on image embeddings from the written tensors.
    k = TEXT_N_EMBD - 1
    c = float(np.float16(np.sqrt(TEXT_N_EMBD)))
    assert not t["mm.2.weight"][k].any()
    assert t["mm.2.bias"][k] == c and not np.delete(t["mm.2.bias"], k).any()

    def spectral(w: np.ndarray) -> float:
        return float(np.linalg.svd(w.astype(np.float64), compute_uv=False)[0])

    n_v = t["v.post_ln.weight"].shape[0]
    e = np.sqrt(n_v) * np.abs(t["v.post_ln.weight"]).max() + np.linalg.norm(t["v.post_ln.bias"])
    h = spectral(t["mm.0.weight"]) * e + np.linalg.norm(t["mm.0.bias"])
    rest = spectral(np.delete(t["mm.2.weight"], k, axis=0)) * h * 1.001  # |gelu(x)| <= |x| (+ F16 table slack)
    assert rest <= image_embedding_rest_bound(TEXT_N_EMBD)

    # ... which the text model's own token embeddings exceed, so its EOS proof covers image positions.
    embd = next(x for x in gguf.GGUFReader(text).tensors if x.name == "token_embd.weight")
    rows = np.array(embd.data, dtype=np.float32)
    assert np.all(rows[:, k] == c)
    assert float(np.linalg.norm(np.delete(rows, k, axis=1), axis=1).max()) >= image_embedding_rest_bound(TEXT_N_EMBD)


def test_tiny_png_is_a_well_formed_png() -> None:
    data = tiny_png(5, 3, 0)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (5, 3, 8, 2, 0, 0, 0)
    assert len(zlib.decompress(chunks[1][1])) == 3 * (1 + 5 * 3)


# --------------------------------------------------------------------------
# The real llama-server
# --------------------------------------------------------------------------


def test_props_report_vision(vision_server: LlamaServer) -> None:
    status, props = vision_server.get("/props")
    assert status == 200
    assert props["modalities"]["vision"] is True
    assert props["modalities"]["audio"] is False


def test_image_becomes_prompt_tokens(vision_server: LlamaServer) -> None:
    marker = vision_server.media_marker()
    n_image = image_token_count()

    def evaluated(prompt: Any) -> int:
        status, body = vision_server.post("/completion", {"prompt": prompt, "n_predict": 3, "temperature": 0})
        assert status == 200, body
        assert body["tokens_predicted"] == 3
        return int(body["tokens_evaluated"])

    # The GPT-2 pre-tokenizer splits "Look:  describe" as "Look", ":", " ", " describe", exactly
    # like the text chunks either side of the marker, so the image's tokens are the whole difference.
    text_only = evaluated("Look:  describe")
    one = evaluated({"prompt_string": f"Look: {marker} describe", "multimodal_data": [_b64(tiny_png(20, 12, 1))]})
    assert one > text_only
    assert one == text_only + n_image
    # Any size and aspect ratio is padded and resized to the projector's square: same count.
    two = evaluated(
        {
            "prompt_string": f"Look: {marker} describe {marker} now",
            "multimodal_data": [_b64(tiny_png(1, 1, 2)), _b64(tiny_png(300, 90, 3))],
        }
    )
    both_text = evaluated("Look:  describe  now")
    assert two == both_text + 2 * n_image


def test_prompt_ending_in_an_image_kills_this_llama_server(vision_server: LlamaServer) -> None:
    """A bug of this llama.cpp that llamasup must route around: when the last chunk of a prompt is
    an image (no text after the marker), the slot finishes the prompt with an empty batch and
    ``GGML_ASSERT(batch.size() > 0)`` (server-context.cpp) aborts the whole process: the client
    sees the connection close without a response.  Chat requests are safe because the template
    always puts text after the image."""
    marker = vision_server.media_marker()
    body = {"prompt": {"prompt_string": f"Look: {marker}", "multimodal_data": [_b64(tiny_png(8, 8, 0))]}, "n_predict": 3}
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        vision_server.post("/completion", body)
    assert vision_server.proc.wait(timeout=REQUEST_TIMEOUT) == -signal.SIGABRT
    assert "GGML_ASSERT(batch.size() > 0) failed" in vision_server.log.read_text(errors="replace")


def test_chat_image_url_data_uri(vision_server: LlamaServer) -> None:
    status, text_only = vision_server.post("/v1/chat/completions", _chat_body(None))
    assert status == 200, text_only
    uri = "data:image/png;base64," + _b64(tiny_png(16, 16, 0))
    status, body = vision_server.post("/v1/chat/completions", _chat_body(uri))
    assert status == 200, body
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["prompt_tokens"] >= text_only["usage"]["prompt_tokens"] + image_token_count()


@pytest.mark.parametrize(
    "data",
    [b"this is not an image", tiny_png(8, 8, 0)[:40], b""],
    ids=["text", "truncated-png", "empty"],
)
def test_malformed_image_is_400(vision_server: LlamaServer, data: bytes) -> None:
    expected = {"code": 400, "message": "Failed to load image or audio file", "type": "invalid_request_error"}
    marker = vision_server.media_marker()
    status, body = vision_server.post(
        "/completion",
        {"prompt": {"prompt_string": f"Look: {marker} describe", "multimodal_data": [_b64(data)]}, "n_predict": 3},
    )
    assert (status, body) == (400, {"error": expected})
    status, body = vision_server.post("/v1/chat/completions", _chat_body("data:image/png;base64," + _b64(data)))
    assert (status, body) == (400, {"error": expected})
    # The server is still serving.
    status, _ = vision_server.get("/health")
    assert status == 200


def test_marker_count_must_match_images(vision_server: LlamaServer) -> None:
    marker = vision_server.media_marker()
    expected = {"code": 400, "message": "Failed to tokenize prompt", "type": "invalid_request_error"}
    image = _b64(tiny_png(8, 8, 0))
    for prompt_string in ("Look: describe", f"Look: {marker} {marker} describe"):
        status, body = vision_server.post(
            "/completion", {"prompt": {"prompt_string": prompt_string, "multimodal_data": [image]}, "n_predict": 3}
        )
        assert (status, body) == (400, {"error": expected})


def test_image_without_mmproj(start_llama_server: Callable[..., LlamaServer], model_files: tuple[Path, Path]) -> None:
    text, _ = model_files
    server = start_llama_server(text, None)
    status, props = server.get("/props")
    assert status == 200
    assert props["modalities"]["vision"] is False
    marker = props["media_marker"]
    image = tiny_png(8, 8, 0)

    status, body = server.post(
        "/completion",
        {"prompt": {"prompt_string": f"Look: {marker} describe", "multimodal_data": [_b64(image)]}, "n_predict": 3},
    )
    assert (status, body) == (
        400,
        {
            "error": {
                "code": 400,
                "message": "Multimodal data provided, but model does not support multimodal requests.",
                "type": "invalid_request_error",
            }
        },
    )
    status, body = server.post("/v1/chat/completions", _chat_body("data:image/png;base64," + _b64(image)))
    assert (status, body) == (
        500,
        {
            "error": {
                "code": 500,
                "message": "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
                "type": "server_error",
            }
        },
    )
