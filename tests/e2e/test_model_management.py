"""Model management end to end: the ``ollama`` client's create/show/copy/delete/list against llamasup
with the real llama-server, quantization with the real llama-quantize, and the store's on-disk layout
checked with no llamasup code."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import ollama
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import ServerFactory, base_url
from tests.models import write_model

pytestmark = pytest.mark.e2e


async def test_ollama_client_create_show_copy_delete_list(real_server: TestServer, tmp_path: Path) -> None:
    """The official client creates a model from an uploaded GGUF, shows, copies, lists and deletes it,
    and the created model answers /api/generate through the real llama-server."""
    client = ollama.AsyncClient(host=base_url(real_server))
    gguf = write_model(tmp_path / "fresh.gguf", seed=7)
    digest = await client.create_blob(gguf)
    progress = [
        p.status
        async for p in await client.create(
            model="made", files={"fresh.gguf": digest}, system="You are terse.", parameters={"temperature": 0.0},
            stream=True,
        )
    ]  # fmt: skip
    assert progress[0] == "parsing GGUF" and progress[-2:] == ["writing manifest", "success"]

    shown = await client.show("made")
    assert "SYSTEM You are terse." in (shown.modelfile or "")
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.capabilities == ["completion"]

    reply = await client.generate(model="made", prompt="Hello", options={"num_predict": 5})
    assert reply.done and reply.eval_count == 5 and reply.response

    await client.copy("made", "made-copy:v2")
    names = [m.model for m in (await client.list()).models]
    assert sorted(names) == ["made-copy:v2", "made:latest", "tiny:latest"]

    await client.delete("made")
    with pytest.raises(ollama.ResponseError) as exc:
        await client.show("made")
    assert exc.value.status_code == 404
    assert "SYSTEM You are terse." in ((await client.show("made-copy:v2")).modelfile or "")


async def test_quantize_on_create(real_server: TestServer, tmp_path: Path) -> None:
    """quantize q8_0 and q4_K_M with llama-quantize: Ollama's progress lines, the new file type, a model
    that generates; quantizing an already-quantized model is refused with Ollama's message."""
    client = ollama.AsyncClient(host=base_url(real_server))
    for quant, expected in (("q8_0", "Q8_0"), ("q4_K_M", "Q4_K_M")):
        lines = [p async for p in await client.create(model=f"tiny-{quant}", from_="tiny", quantize=quant, stream=True)]
        quantizing = [p for p in lines if p.status and p.status.startswith("quantizing")]
        assert quantizing and quantizing[0].status == f"quantizing F16 model to {expected}"
        assert quantizing[-1].completed == quantizing[-1].total and quantizing[-1].total
        assert "verifying conversion" in [p.status for p in lines]
        shown = await client.show(f"tiny-{quant}")
        assert shown.details is not None and shown.details.quantization_level == expected
    reply = await client.generate(model="tiny-q8_0", prompt="Hi", options={"num_predict": 3})
    assert reply.eval_count == 3
    with pytest.raises(ollama.ResponseError) as exc:
        await client.create(model="again", from_="tiny-q8_0", quantize="q4_K_M")
    assert "quantization is only supported for F16, BF16 and F32 models" in str(exc.value)


HEX64 = re.compile(r"[0-9a-f]{64}")
OLLAMA_MEDIA_TYPES = {
    "application/vnd.ollama.image.model",
    "application/vnd.ollama.image.template",
    "application/vnd.ollama.image.system",
    "application/vnd.ollama.image.params",
    "application/vnd.ollama.image.messages",
    "application/vnd.ollama.image.license",
    "application/vnd.ollama.image.adapter",
    "application/vnd.ollama.image.projector",
}


def check_ollama_layout(root: Path) -> list[str]:
    """Every manifest of an Ollama store, checked with nothing but json/hashlib: the layout, the
    manifest schema, every referenced blob present under its digest with the declared size, and the
    config blob's keys. Returns the model paths found."""
    found = []
    for dirpath, _, files in os.walk(root / "manifests"):
        for tag in files:
            path = Path(dirpath) / tag
            rel = path.relative_to(root / "manifests").parts
            assert len(rel) == 4, rel  # host/namespace/model/tag
            data = path.read_bytes()
            assert data.endswith(b"}\n")
            manifest = json.loads(data)
            assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
            assert manifest["schemaVersion"] == 2
            assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
            assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
            for entry in [manifest["config"], *manifest["layers"]]:
                assert set(entry) <= {"mediaType", "digest", "size", "from", "name"}
                algo, hex_ = entry["digest"].split(":")
                assert algo == "sha256" and HEX64.fullmatch(hex_)
                blob = root / "blobs" / f"sha256-{hex_}"
                content = blob.read_bytes()
                assert hashlib.sha256(content).hexdigest() == hex_
                assert len(content) == entry["size"]
                assert oct(blob.stat().st_mode & 0o777) == "0o644"
            for layer in manifest["layers"]:
                assert layer["mediaType"] in OLLAMA_MEDIA_TYPES
            config = json.loads((root / "blobs" / manifest["config"]["digest"].replace(":", "-")).read_bytes())
            for key in ("model_format", "model_family", "model_families", "model_type", "file_type"):
                assert key in config
            found.append("/".join(rel))
    for blob in (root / "blobs").iterdir():
        assert re.fullmatch(r"sha256-[0-9a-f]{64}", blob.name), blob.name  # no temp or partial left behind
    return sorted(found)


async def test_store_written_by_llamasup_has_ollamas_layout(
    start_server: ServerFactory, llama_server_bin: Path, tmp_path: Path, tiny_gguf: Path
) -> None:
    """After create, copy and delete through the API, the store is exactly Ollama's layout and schema."""
    store = tmp_path / "fresh-store"
    server = await start_server(llama_server_bin, models_dir=store)
    client = ollama.AsyncClient(host=base_url(server))
    digest = await client.create_blob(tiny_gguf)
    await client.create(
        model="acme/base:v1", files={"tiny.gguf": digest}, template="{{ .Prompt }}", license="MIT",
        messages=[{"role": "user", "content": "hi"}], parameters={"stop": ["<x>"]},
    )  # fmt: skip
    await client.create(model="derived", from_="acme/base:v1", system="sys")
    await client.copy("derived", "copied")
    await client.delete("derived")
    assert check_ollama_layout(store) == [
        "registry.ollama.ai/acme/base/v1",
        "registry.ollama.ai/library/copied/latest",
    ]
