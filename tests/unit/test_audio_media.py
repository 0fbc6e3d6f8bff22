"""Audio input without a server: sniffing WAV/MP3 among Ollama's ``images``, the capability a
projector's audio encoder gives, llama-server content parts, OpenAI ``input_audio`` parts, and the
tiny audio projector and clips the e2e tests use (tests/audio_models.py)."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from supervisor.errors import BadRequest
from supervisor.protocol import openai_chat, responses
from supervisor.protocol.llama_server import audio_format, audio_type, chat_message, check_images, media_needed, media_type
from supervisor.protocol.ollama_requests import Message
from supervisor.store.gguf_info import capabilities, info_from_metadata, projector_media
from supervisor.templates.capabilities import model_capabilities
from tests.audio_models import (
    AUDIO_PROJECTOR_TYPE,
    SAMPLE_RATE,
    audio_embedding_rest_bound,
    audio_token_count,
    silent_mp3,
    tiny_wav,
    write_audio_projector,
)
from tests.models import PRESETS, write_model
from tests.projector_models import tiny_png

WAV = tiny_wav(400)
MP3 = silent_mp3(2)
PNG = tiny_png(2, 2)
ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + MP3
TEXT_N_EMBD = PRESETS["tiny"].n_embd


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- sniffing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "image", "audio", "fmt"),
    [
        (WAV, None, "audio/wav", "wav"),
        (MP3, None, "audio/mpeg", "mp3"),
        (ID3, None, "audio/mpeg", "mp3"),
        (b"\xff\xf3\x00\x00", None, "audio/mpeg", "mp3"),  # MPEG-2 Layer III frame sync
        (PNG, "image/png", None, None),
        (b"\xff\xd8\xff\xe0JFIF", "image/jpeg", None, None),  # FF D8 is no frame sync
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", None, None),
        (b"RIFF\x00\x00\x00\x00AVI LIST", None, None, None),
        (b"\xff", None, None, None),
        (b"not media", None, None, None),
    ],
)  # fmt: skip
def test_sniffing(data: bytes, image: str | None, audio: str | None, fmt: str | None) -> None:
    """WAV (RIFF/WAVE) and MP3 (ID3 or frame sync) are audio; images stay images (media_type is
    images only, so an image URL that serves audio is still refused)."""
    assert (media_type(data), audio_type(data), audio_format(data)) == (image, audio, fmt)


@pytest.mark.parametrize(
    ("media", "needed"),
    [([], []), ([PNG], ["vision"]), ([WAV], ["audio"]), ([MP3, WAV], ["audio"]), ([PNG, MP3], ["vision", "audio"]),
     ([b"junk"], ["vision"])],
)  # fmt: skip
def test_media_needed(media: list[bytes], needed: list[str]) -> None:
    """Images (and bytes that are neither) need vision, WAV/MP3 need audio."""
    assert media_needed(media) == needed


def test_check_images() -> None:
    """Audio passes only for audio models; unknown bytes are refused with the formats that would do."""
    check_images([PNG, WAV, MP3], audio=True)
    with pytest.raises(BadRequest, match=r"^image 1 is not a supported image \(JPEG, PNG, GIF, BMP or WebP\)$"):
        check_images([PNG, WAV])
    with pytest.raises(BadRequest, match=r"^image 0 is not a supported image \(JPEG, PNG, GIF, BMP or WebP\) or audio \(WAV or MP3\)$"):
        check_images([b"junk"], audio=True)


def test_chat_message_parts() -> None:
    """Audio goes to llama-server as input_audio parts (base64 and format), images as data URIs, in order."""
    out = chat_message(Message(role="user", content="Compare", images=[WAV, PNG, MP3]))
    assert out["content"] == [
        {"type": "input_audio", "input_audio": {"data": _b64(WAV), "format": "wav"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(PNG)}},
        {"type": "input_audio", "input_audio": {"data": _b64(MP3), "format": "mp3"}},
        {"type": "text", "text": "Compare"},
    ]


# -- capabilities ------------------------------------------------------------------------------------


def _clip(**keys: Any) -> Any:
    return info_from_metadata({"general.architecture": "clip", "general.type": "mmproj", **keys}, ())


@pytest.mark.parametrize(
    ("keys", "media"),
    [
        ({"clip.has_vision_encoder": True}, ["vision"]),
        ({"clip.has_audio_encoder": True}, ["audio"]),
        ({"clip.has_vision_encoder": True, "clip.has_audio_encoder": True}, ["vision", "audio"]),
        ({"clip.has_vision_encoder": False, "clip.has_audio_encoder": True}, ["audio"]),
        ({}, ["vision"]),  # declares neither (older conversions): vision, as Ollama says of every projector
    ],
)  # fmt: skip
def test_projector_media(keys: dict[str, Any], media: list[str]) -> None:
    """A projector's encoders decide vision and audio."""
    assert projector_media(_clip(**keys)) == media


def test_capabilities_with_an_audio_projector() -> None:
    """audio follows vision in the list; an unreadable projector (None) counts as vision; a Go
    template keeps audio."""
    text = info_from_metadata({"general.architecture": "llama", "tokenizer.chat_template": "{{ tools }}"}, ())
    both = _clip(**{"clip.has_vision_encoder": True, "clip.has_audio_encoder": True})
    audio = _clip(**{"clip.has_audio_encoder": True})
    assert capabilities(text, has_projector=True, projector=both) == ["completion", "vision", "audio", "tools"]
    assert capabilities(text, has_projector=True, projector=audio) == ["completion", "audio", "tools"]
    assert capabilities(text, has_projector=True) == ["completion", "vision", "tools"]
    assert capabilities(text, projector=audio) == ["completion", "tools"]  # no projector layer, nothing from it
    assert model_capabilities(text, has_projector=True, go_template="{{ .Prompt }}", projector=audio) == ["completion", "audio"]


# -- OpenAI input_audio parts ------------------------------------------------------------------------


def _audio_part(data: Any, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def test_openai_chat_input_audio() -> None:
    """input_audio parts are decoded into the message's media, in order with images."""
    content = [{"type": "text", "text": "Hear"}, _audio_part(_b64(WAV)),
               {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(PNG)}}, _audio_part(_b64(MP3), "mp3")]  # fmt: skip
    req, _ = openai_chat.chat_request({"model": "m", "messages": [{"role": "user", "content": content}]})
    assert req.messages[0].content == "Hear" and req.messages[0].images == [WAV, PNG, MP3]


@pytest.mark.parametrize(
    "part",
    [_audio_part("not base64!"), _audio_part(_b64(PNG)), _audio_part(None), {"type": "input_audio", "input_audio": "x"},
     {"type": "input_audio"}],
)  # fmt: skip
def test_openai_bad_input_audio(part: dict[str, Any]) -> None:
    """Bad base64, bytes that are not WAV/MP3, or a missing data field: 400 invalid audio input."""
    with pytest.raises(BadRequest) as e:
        openai_chat.chat_request({"model": "m", "messages": [{"role": "user", "content": [part]}]})
    assert (e.value.message, e.value.status) == ("invalid audio input", 400)


def test_responses_input_audio() -> None:
    """The Responses API's input_audio content parts (openai.types.responses.ResponseInputAudioParam) too."""
    body = {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hear"}, _audio_part(_b64(WAV))]}]}
    req, _ = responses.responses_request(body)
    assert req.messages[-1].images == [WAV]
    with pytest.raises(BadRequest, match="^invalid audio input$"):
        responses.responses_request({"model": "m", "input": [{"role": "user", "content": [_audio_part("%%%")]}]})


# -- the test models ---------------------------------------------------------------------------------


def test_tiny_wav_and_mp3() -> None:
    """tiny_wav is 16 kHz mono PCM16 of the length asked; silent_mp3 is whole 417-byte frames."""
    with wave.open(io.BytesIO(tiny_wav(1234)), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, SAMPLE_RATE, 1234)
    assert len(silent_mp3(3)) == 3 * 417 and silent_mp3(3)[:2] == b"\xff\xfb"


def test_audio_token_count() -> None:
    """Under 30 s a clip is one window (1500 / stack + 2 embeddings); 30 s more is another window."""
    assert audio_token_count(4000) == 32
    assert audio_token_count(4000, stack_factor=100) == 17
    assert audio_token_count(30 * SAMPLE_RATE + 4000) == 64


def test_audio_projector_keeps_the_text_models_invariant(tmp_path: Path) -> None:
    """Seeded; every audio embedding (adapter output, boi, eoi) holds C in the reserved dimension and
    a rest bounded below what the text model's own token embeddings reach (re-derived from the file)."""
    proj = write_audio_projector(tmp_path / "a.gguf", text_n_embd=TEXT_N_EMBD)
    assert write_audio_projector(tmp_path / "b.gguf", text_n_embd=TEXT_N_EMBD).read_bytes() == proj.read_bytes()
    assert write_audio_projector(tmp_path / "c.gguf", text_n_embd=TEXT_N_EMBD, seed=1).read_bytes() != proj.read_bytes()
    with pytest.raises(ValueError, match="divide"):
        write_audio_projector(tmp_path / "d.gguf", text_n_embd=TEXT_N_EMBD, stack_factor=7)

    reader = gguf.GGUFReader(proj)
    fields = {name: reader.fields[name].contents() for name in reader.fields}
    assert (fields["general.type"], fields["clip.projector_type"], fields["clip.has_audio_encoder"]) == ("mmproj", AUDIO_PROJECTOR_TYPE, True)
    assert "clip.has_vision_encoder" not in fields
    t = {x.name: np.array(x.data, dtype=np.float32).reshape(tuple(reversed(x.shape))) for x in reader.tensors}
    stack = fields["clip.audio.projector.stack_factor"]
    assert t["mm.a.mlp.1.weight"].shape[1] == fields["clip.audio.embedding_length"] * stack
    assert t["mm.a.mlp.2.weight"].shape[0] == TEXT_N_EMBD

    k = TEXT_N_EMBD - 1
    c = float(np.float16(np.sqrt(TEXT_N_EMBD)))
    bound = audio_embedding_rest_bound(TEXT_N_EMBD)
    assert not t["mm.a.mlp.2.weight"][k].any()
    assert t["mm.a.mlp.2.bias"][k] == c and not np.delete(t["mm.a.mlp.2.bias"], k).any()

    def spectral(w: np.ndarray) -> float:
        return float(np.linalg.svd(w.astype(np.float64), compute_uv=False)[0])

    n_a = t["mm.a.norm_pre.weight"].shape[0]
    frame = np.sqrt(n_a) * np.abs(t["mm.a.norm_pre.weight"]).max() + np.linalg.norm(t["mm.a.norm_pre.bias"])
    h = spectral(t["mm.a.mlp.1.weight"]) * np.sqrt(stack) * frame + np.linalg.norm(t["mm.a.mlp.1.bias"])
    assert spectral(np.delete(t["mm.a.mlp.2.weight"], k, axis=0)) * h * 1.001 <= bound  # |gelu(x)| <= |x| (+ slack)
    for marker in ("v.boi", "v.eoi"):
        row = t[marker].reshape(-1)
        assert row[k] == c and np.linalg.norm(np.delete(row, k)) <= bound

    text = write_model(tmp_path / "text.gguf", preset="tiny")
    embd = next(x for x in gguf.GGUFReader(text).tensors if x.name == "token_embd.weight")
    rows = np.array(embd.data, dtype=np.float32)
    assert np.all(rows[:, k] == c)
    assert float(np.linalg.norm(np.delete(rows, k, axis=1), axis=1).max()) >= bound
