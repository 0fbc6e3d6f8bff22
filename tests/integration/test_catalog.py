"""Blobs, copy, delete, create and show through HTTP (fake runner: none of these start a model)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import ServerFactory, base_url
from tests.models import write_embedding_model, write_model
from tests.store_helpers import install_gguf


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_names(models_dir: Path) -> set[str]:
    return {p.name for p in (models_dir / "blobs").iterdir()}


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as r:
        raw = await r.read()
        return r.status, (json.loads(raw) if raw else None)


async def create(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed create; returns every progress line."""
    async with session.post(url + "/api/create", json=body) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "application/x-ndjson"
        return [json.loads(line) for line in (await r.read()).splitlines()]


async def upload(session: aiohttp.ClientSession, url: str, path: Path) -> str:
    digest = digest_of(path.read_bytes())
    async with session.post(f"{url}/api/blobs/{digest}", data=path.read_bytes()) as r:
        assert r.status in (200, 201)
    return digest


# -- blobs ------------------------------------------------------------------------------------------


async def test_blob_head_statuses(fake_server: TestServer, models_dir: Path) -> None:
    """HEAD: 400 for a malformed digest, 404 when absent, 200 when present (either separator)."""
    url = base_url(fake_server)
    present = sorted(blob_names(models_dir))[0]
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{url}/api/blobs/sha256:zz") as r:
            assert r.status == 400
        async with s.head(f"{url}/api/blobs/sha256:{'0' * 64}") as r:
            assert r.status == 404
        async with s.head(f"{url}/api/blobs/{present}") as r:
            assert r.status == 200
        async with s.head(f"{url}/api/blobs/{present.replace('-', ':').upper().replace('SHA256', 'sha256')}") as r:
            assert r.status == 200


async def test_blob_upload_created_then_present(fake_server: TestServer, models_dir: Path) -> None:
    """A verified upload answers 201 with an empty body and becomes visible; the same again answers 200."""
    url = base_url(fake_server)
    data = os.urandom(100_000)
    digest = digest_of(data)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/blobs/{digest}", data=data) as r:
            assert (r.status, await r.read()) == (201, b"")
        async with s.post(f"{url}/api/blobs/{digest}", data=data) as r:
            assert r.status == 200
    assert (models_dir / "blobs" / digest.replace(":", "-")).read_bytes() == data


async def test_blob_digest_mismatch_leaves_nothing(fake_server: TestServer, models_dir: Path) -> None:
    """A body that does not hash to the digest is refused with Ollama's message and no file remains."""
    url = base_url(fake_server)
    before = blob_names(models_dir)
    wrong = "sha256:" + "1" * 64
    data = b"not what the digest says"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/blobs/{wrong}", data=data) as r:
            status, body = r.status, await r.json()
    assert status == 400
    assert body == {"error": f'digest mismatch, expected "{wrong}", got "{digest_of(data)}"'}
    assert blob_names(models_dir) == before


async def test_blob_invalid_digest_on_upload(fake_server: TestServer) -> None:
    """POST with a malformed digest is 400 invalid digest format."""
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base_url(fake_server)}/api/blobs/sha256-xyz", data=b"x") as r:
            assert (r.status, await r.json()) == (400, {"error": "invalid digest format"})


async def test_blob_large_streamed_upload(fake_server: TestServer, models_dir: Path) -> None:
    """A body sent in many chunks (64 MiB, more than the server's body limit for JSON) is streamed."""
    chunk = os.urandom(1 << 20)
    h = hashlib.sha256()
    for _ in range(64):
        h.update(chunk)
    digest = "sha256:" + h.hexdigest()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield chunk

    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base_url(fake_server)}/api/blobs/{digest}", data=body()) as r:
            assert r.status == 201, await r.text()
    assert (models_dir / "blobs" / digest.replace(":", "-")).stat().st_size == 64 << 20


async def test_concurrent_uploads_of_one_digest(fake_server: TestServer, models_dir: Path) -> None:
    """Several clients uploading the same blob at once all succeed and the blob is intact."""
    data = os.urandom(3 << 20)
    digest = digest_of(data)
    async with aiohttp.ClientSession() as s:

        async def one() -> int:
            async with s.post(f"{base_url(fake_server)}/api/blobs/{digest}", data=data) as r:
                return r.status

        statuses = await asyncio.gather(*(one() for _ in range(4)))
    assert set(statuses) <= {200, 201} and 201 in statuses
    assert digest_of((models_dir / "blobs" / digest.replace(":", "-")).read_bytes()) == digest
    assert not [n for n in blob_names(models_dir) if n.endswith(".tmp")]


# -- copy and delete --------------------------------------------------------------------------------

COPY_DELETE_ERRORS = [
    ("/api/copy", {"source": "nope", "destination": "x"}, 404, 'model "nope" not found'),
    ("/api/copy", {"source": "tiny", "destination": "bad name!"}, 400, 'destination "bad name!" is invalid'),
    ("/api/copy", {"source": "bad name!", "destination": "x"}, 400, 'source "bad name!" is invalid'),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), COPY_DELETE_ERRORS)
async def test_copy_errors(fake_server: TestServer, path: str, body: dict[str, str], status: int, message: str) -> None:
    """Copy refuses bad names and absent sources with Ollama's statuses and texts."""
    async with aiohttp.ClientSession() as s:
        assert await post(s, base_url(fake_server) + path, body) == (status, {"error": message})


async def test_delete_errors(fake_server: TestServer) -> None:
    """Delete: 400 name "<x>" is invalid; 404 model '<x>' not found."""
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as s:
        async with s.delete(url + "/api/delete", json={"model": "bad name!"}) as r:
            assert (r.status, await r.json()) == (400, {"error": 'name "bad name!" is invalid'})
        async with s.delete(url + "/api/delete", json={"model": "nope"}) as r:
            assert (r.status, await r.json()) == (404, {"error": "model 'nope' not found"})


async def test_copy_then_delete_keeps_shared_blobs(fake_server: TestServer, models_dir: Path) -> None:
    """A copy shares blobs; deleting one name keeps them, deleting the last removes them and the dirs."""
    url = base_url(fake_server)
    blobs = blob_names(models_dir)
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/api/copy", json={"source": "TINY", "destination": "team/copy:v1"}) as r:
            assert (r.status, await r.read()) == (200, b"")
        manifests = models_dir / "manifests" / "registry.ollama.ai"
        assert (manifests / "team" / "copy" / "v1").read_bytes() == (manifests / "library" / "tiny" / "latest").read_bytes()
        async with s.delete(url + "/api/delete", json={"model": "tiny"}) as r:
            assert (r.status, await r.read()) == (200, b"")
        assert blob_names(models_dir) == blobs
        assert not (manifests / "library").exists()
        async with s.delete(url + "/api/delete", json={"name": "team/copy:v1"}) as r:
            assert r.status == 200
    assert blob_names(models_dir) == set()
    assert list((models_dir / "manifests").iterdir()) == []


# -- create -----------------------------------------------------------------------------------------


async def test_create_from_uploaded_gguf(fake_server: TestServer, models_dir: Path, tiny_gguf: Path) -> None:
    """Create from a blob: Ollama's statuses, a manifest with model+overlay layers, and a config from the GGUF."""
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as s:
        digest = await upload(s, url, tiny_gguf)
        lines = await create(
            s,
            url,
            {
                "model": "mine",
                "files": {"tiny.gguf": digest},
                "template": "{{ .Prompt }}",
                "system": "Be brief.",
                "license": ["MIT", "Apache"],
                "parameters": {"temperature": 0.5, "stop": ["<a>", "<b>"]},
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            },
        )
        statuses = [line["status"] for line in lines]
        assert statuses[0] == "parsing GGUF"
        assert statuses[1] == f"using existing layer {digest}"
        assert all(st.startswith("creating new layer sha256:") for st in statuses[2:8])
        assert statuses[-2:] == ["writing manifest", "success"]
        async with s.get(url + "/api/tags") as r:
            tags = await r.json()
    assert tags["models"][0]["name"] == "mine:latest"  # newest first
    details = tags["models"][0]["details"]
    assert (details["format"], details["family"], details["quantization_level"]) == ("gguf", "llama", "F16")
    manifest = json.loads((models_dir / "manifests/registry.ollama.ai/library/mine/latest").read_bytes())
    kinds = [layer["mediaType"].rsplit(".", 1)[-1] for layer in manifest["layers"]]
    assert kinds == ["model", "template", "system", "license", "license", "params", "messages"]
    params_blob = models_dir / "blobs" / manifest["layers"][5]["digest"].replace(":", "-")
    assert json.loads(params_blob.read_bytes()) == {"stop": ["<a>", "<b>"], "temperature": 0.5}
    config = json.loads((models_dir / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_bytes())
    assert config["model_format"] == "gguf" and config["model_family"] == "llama" and config["file_type"] == "F16"


async def test_create_from_existing_model_overlays_and_prunes(fake_server: TestServer, models_dir: Path) -> None:
    """Create from a base inherits its layers; re-creating the name replaces the overlay and prunes the old one."""
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as s:
        lines = await create(s, url, {"model": "derived", "from": "tiny", "system": "first"})
        assert lines[0]["status"].startswith("using existing layer sha256:")
        first = json.loads((models_dir / "manifests/registry.ollama.ai/library/derived/latest").read_bytes())
        old_system = first["layers"][-1]["digest"]
        assert first["layers"][0]["from"] == "tiny:latest"
        await create(s, url, {"model": "DERIVED", "from": "tiny", "system": "second"})
        status, shown = await post(s, url + "/api/show", {"model": "derived"})
    assert status == 200 and shown["system"] == "second"
    assert old_system.replace(":", "-") not in blob_names(models_dir)
    assert not (models_dir / "manifests/registry.ollama.ai/library/DERIVED").exists()  # case kept as first created


async def test_create_errors(fake_server: TestServer) -> None:
    """Create refuses a missing base, a bad template and an unknown quantization before streaming."""
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as s:
        assert await post(s, url + "/api/create", {"model": "x"}) == (
            400, {"error": "neither 'from' or 'files' was specified"})  # fmt: skip
        status, body = await post(s, url + "/api/create", {"model": "x", "from": "tiny", "template": "{{ .Bad"})
        assert status == 400 and body["error"].startswith("template error: ")
        assert await post(s, url + "/api/create", {"model": "x", "from": "nope"}) == (
            404, {"error": "model 'nope' not found"})  # fmt: skip
        status, body = await post(s, url + "/api/create", {"model": "x", "from": "tiny", "quantize": "q2_x"})
        assert (status, body) == (500, {"error": "unsupported quantization type Q2_X - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"})
        status, body = await post(s, url + "/api/create", {"model": "x", "files": {"a.gguf": "sha256:" + "0" * 64}})
        assert status == 400 and "not found" in body["error"]


async def test_create_not_streamed(fake_server: TestServer) -> None:
    """stream:false answers one {"status":"success"} object."""
    async with aiohttp.ClientSession() as s:
        assert await post(s, base_url(fake_server) + "/api/create", {"model": "y", "from": "tiny", "stream": False}) == (
            200, {"status": "success"})  # fmt: skip


async def test_create_refuses_a_non_gguf_file(fake_server: TestServer) -> None:
    """A single uploaded file that is not GGUF: supplied file was not in GGUF format."""
    url = base_url(fake_server)
    data = b"just some text"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/blobs/{digest_of(data)}", data=data) as r:
            assert r.status == 201
        status, body = await post(s, url + "/api/create", {"model": "x", "files": {"a.bin": digest_of(data)}, "stream": False})
    assert (status, body) == (400, {"error": "supplied file was not in GGUF format"})


# -- show -------------------------------------------------------------------------------------------


async def test_show_fields(start_server: ServerFactory, fake_llama_server_bin: Path, tmp_path: Path, tiny_gguf: Path) -> None:
    """show returns every field of Ollama's ShowResponse that the model has, in the documented form."""
    store = tmp_path / "store"
    install_gguf(store, "tiny", tiny_gguf, params={"temperature": 0.6, "stop": ["<|im_end|>"]}, system="Hi.")
    server = await start_server(fake_llama_server_bin, models_dir=store)
    async with aiohttp.ClientSession() as s:
        status, shown = await post(s, base_url(server) + "/api/show", {"model": "tiny"})
        _, verbose = await post(s, base_url(server) + "/api/show", {"model": "tiny", "verbose": True})
    assert status == 200
    assert shown["modelfile"].startswith('# Modelfile generated by "ollama show"\n')
    assert "# FROM tiny:latest\n" in shown["modelfile"]
    assert "\nSYSTEM Hi.\n" in shown["modelfile"]
    assert "PARAMETER temperature 0.6" in shown["modelfile"]
    assert shown["parameters"].splitlines() == [f"{'stop':<30} \"<|im_end|>\"", f"{'temperature':<30} 0.6"]
    assert shown["template"].startswith("{%- for message in messages %}")  # the GGUF's own template
    assert shown["system"] == "Hi."
    assert shown["details"]["family"] == "llama" and shown["details"]["quantization_level"] == "F16"
    info = shown["model_info"]
    assert info["general.architecture"] == "llama"
    assert "general.name" not in info and "tokenizer.chat_template" not in info
    assert info["tokenizer.ggml.tokens"] == [] and len(verbose["model_info"]["tokenizer.ggml.tokens"]) > 5
    assert info["general.parameter_count"] > 0
    assert {"name": "token_embd.weight", "type": "F16", "shape": [128, len(verbose["model_info"]["tokenizer.ggml.tokens"])]} in shown["tensors"]
    assert shown["capabilities"] == ["completion"]
    assert "modified_at" in shown and "license" not in shown and "messages" not in shown


async def test_show_errors(fake_server: TestServer) -> None:
    """show: 400 model is required, 400 invalid model name, 404 with the normalized name."""
    url = base_url(fake_server) + "/api/show"
    async with aiohttp.ClientSession() as s:
        assert await post(s, url, {}) == (400, {"error": "model is required"})
        assert await post(s, url, {"model": "bad name!"}) == (400, {"error": "invalid model name"})
        assert await post(s, url, {"model": "nope"}) == (404, {"error": "model 'nope:latest' not found"})


async def test_show_embedding_capability(start_server: ServerFactory, fake_llama_server_bin: Path, tmp_path: Path) -> None:
    """A GGUF with a pooling type shows the embedding capability instead of completion."""
    store = tmp_path / "store"
    install_gguf(store, "emb", write_embedding_model(tmp_path / "e.gguf"))
    server = await start_server(fake_llama_server_bin, models_dir=store)
    async with aiohttp.ClientSession() as s:
        _, shown = await post(s, base_url(server) + "/api/show", {"model": "emb"})
    assert shown["capabilities"] == ["embedding"]


# -- GGUFs in place ---------------------------------------------------------------------------------


async def test_in_place_gguf_listed_shown_used_and_not_deleted(
    start_server: ServerFactory, fake_llama_server_bin: Path, tmp_path: Path
) -> None:
    """A GGUF in LLAMASUP_MODEL_DIRS is listed, shown, answers generate, and cannot be deleted."""
    gguf_dir = tmp_path / "ggufs"
    path = write_model(gguf_dir / "Little-Model-F16.gguf", chat_template=None)
    (gguf_dir / "mmproj-little.gguf").write_bytes(path.read_bytes())
    store = tmp_path / "empty-store"
    server = await start_server(fake_llama_server_bin, models_dir=store, model_dirs=(gguf_dir,))
    url = base_url(server)
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/api/tags") as r:
            [entry] = (await r.json())["models"]
        assert entry["name"] == "Little-Model-F16:latest"
        assert entry["size"] == 2 * path.stat().st_size
        status, shown = await post(s, url + "/api/show", {"model": "little-model-f16"})
        assert status == 200 and f"FROM {path}\n" in shown["modelfile"]
        assert "vision" in shown["capabilities"] and "projector_info" in shown
        status, reply = await post(s, url + "/api/generate", {"model": "Little-Model-F16", "prompt": "hi", "stream": False})
        assert status == 200 and reply["done"]
        async with s.delete(url + "/api/delete", json={"model": "Little-Model-F16"}) as r:
            assert r.status == 400
            assert "used in place" in (await r.json())["error"]
    assert path.exists() and not (store / "blobs").exists()


# -- start-up pruning -------------------------------------------------------------------------------


@pytest.mark.parametrize("noprune", [False, True])
async def test_startup_prune(
    start_server: ServerFactory, fake_llama_server_bin: Path, models_dir: Path, noprune: bool
) -> None:
    """Start-up removes temp files and old unreferenced blobs, keeps referenced ones; OLLAMA_NOPRUNE keeps all."""
    blobs = models_dir / "blobs"
    referenced = blob_names(models_dir)
    (blobs / "sha256-abc123.tmp").write_bytes(b"partial upload")
    stale = blobs / ("sha256-" + "7" * 64)
    stale.write_bytes(b"old")
    os.utime(stale, (1, 1))
    fresh = blobs / ("sha256-" + "8" * 64)
    fresh.write_bytes(b"just written by a create")
    await start_server(fake_llama_server_bin, noprune=noprune)
    if noprune:
        assert blob_names(models_dir) == referenced | {"sha256-abc123.tmp", stale.name, fresh.name}
    else:
        assert blob_names(models_dir) == referenced | {fresh.name}


def write_side_gguf(path: Path, general_type: str, extra: dict[str, Any]) -> Path:
    """A small GGUF that says what it is in its metadata (an adapter or a projector), as converters write them."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, "clip" if general_type == "mmproj" else "llama")
    writer.add_type(general_type)
    for key, value in extra.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        else:
            writer.add_string(key, value)
    writer.add_tensor("x.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


async def test_create_recognises_adapter_and_projector_layers(fake_server: TestServer, models_dir: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    """GGUF metadata decides the layer: general.type adapter → adapter layer, a clip/mmproj file →
    projector layer; show then reports the vision capability; two adapters are refused."""
    lora = write_side_gguf(tmp_path / "lora.gguf", "adapter", {"adapter.type": "lora"})
    mmproj = write_side_gguf(tmp_path / "mmproj.gguf", "mmproj", {"clip.has_vision_encoder": True})
    url = base_url(fake_server)
    async with aiohttp.ClientSession() as s:
        model, proj, adapter = [await upload(s, url, p) for p in (tiny_gguf, mmproj, lora)]
        await create(s, url, {"model": "vis", "files": {"m.gguf": model, "mmproj.gguf": proj}, "adapters": {"lora.gguf": adapter}})
        status, shown = await post(s, url + "/api/show", {"model": "vis"})
        two = await post(s, url + "/api/create", {"model": "y", "from": "tiny", "adapters": {"a.gguf": adapter, "b.gguf": adapter}})
    manifest = json.loads((models_dir / "manifests/registry.ollama.ai/library/vis/latest").read_bytes())
    kinds = {layer["mediaType"].rsplit(".", 1)[-1]: layer["digest"] for layer in manifest["layers"]}
    assert kinds == {"model": model, "projector": proj, "adapter": adapter}
    assert status == 200 and "vision" in shown["capabilities"]
    assert "\nADAPTER " in shown["modelfile"] and shown["modelfile"].count("\nFROM ") == 2
    assert two == (400, {"error": "only one adapter is currently supported"})
