"""SIGKILL in the middle of a blob upload and of a create: after a restart the store is consistent, no
partial blob or manifest is visible, nothing of the create keeps running, and the same work succeeds."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.e2e.test_model_management import check_ollama_layout
from tests.hf_models import write_hf_llama

pytestmark = pytest.mark.e2e

Start = Callable[..., tuple[subprocess.Popen[bytes], str]]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll the file system or process table for a state (not a timed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def temp_files(models_dir: Path) -> list[Path]:
    return [p for p in (models_dir / "blobs").iterdir() if not p.name.startswith("sha256-") or len(p.name) != 71]


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


async def test_sigkill_during_blob_upload(subprocess_server: Start, models_dir: Path) -> None:
    """A server killed while a blob streams in leaves only a temp file (never the blob); the restart
    removes it, the store checks out, and the upload then succeeds."""
    proc, url = subprocess_server()
    before = sorted(p.name for p in (models_dir / "blobs").iterdir())
    chunk = os.urandom(1 << 20)
    digest = "sha256:" + hashlib.sha256(chunk * 8).hexdigest()
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for i in range(8):
            if i == 4:
                await release.wait()  # half the blob sent (and mostly written); the server dies now
            yield chunk

    async with aiohttp.ClientSession() as session:
        upload = asyncio.ensure_future(session.post(f"{url}/api/blobs/{digest}", data=body()))
        await asyncio.to_thread(
            wait_for, lambda: any(p.stat().st_size >= 2 << 20 for p in temp_files(models_dir)), "a half-written temp file"
        )
        kill(proc)
        release.set()
        with pytest.raises(aiohttp.ClientError):
            await upload
    assert not (models_dir / "blobs" / digest.replace(":", "-")).exists()

    _, url = subprocess_server()
    assert temp_files(models_dir) == []
    assert sorted(p.name for p in (models_dir / "blobs").iterdir()) == before
    assert check_ollama_layout(models_dir) == ["registry.ollama.ai/library/tiny/latest"]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/api/blobs/{digest}", data=chunk * 8) as r:
            assert r.status == 201


def converters(model_dir: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info["cmdline"] or []
        if any("convert_hf_to_gguf" in part for part in cmdline):
            found.append(p)
    return found


async def upload_dir(session: aiohttp.ClientSession, url: str, directory: Path) -> dict[str, str]:
    files = {}
    for path in sorted(directory.iterdir()):
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        async with session.post(f"{url}/api/blobs/{digest}", data=data) as r:
            assert r.status in (200, 201)
        files[path.name] = digest
    return files


async def test_sigkill_during_create(subprocess_server: Start, models_dir: Path, tmp_path: Path) -> None:
    """A server killed while a create converts a safetensors model leaves no manifest, no partial file
    and no converter running; after the restart the same create succeeds and the model generates."""
    hf = write_hf_llama(tmp_path / "hf")
    proc, url = subprocess_server()
    request = {"model": "converted", "stream": True}
    async with aiohttp.ClientSession() as session:
        request["files"] = await upload_dir(session, url, hf)
        async with session.post(f"{url}/api/create", json=request) as r:
            async for line in r.content:
                if json.loads(line).get("status") == "converting model":
                    break
            await asyncio.to_thread(wait_for, lambda: bool(converters(hf)), "the converter to start")
            kill(proc)
    await asyncio.to_thread(wait_for, lambda: not converters(hf), "the converter to die with the server", 10.0)
    manifest = models_dir / "manifests/registry.ollama.ai/library/converted/latest"
    assert not manifest.exists()

    _, url = subprocess_server()
    assert temp_files(models_dir) == []
    assert check_ollama_layout(models_dir) == ["registry.ollama.ai/library/tiny/latest"]
    async with aiohttp.ClientSession() as session:
        request["files"] = await upload_dir(session, url, hf)  # still there: younger than the grace period
        async with session.post(f"{url}/api/create", json=request) as r:
            statuses = [json.loads(line)["status"] for line in (await r.read()).splitlines()]
        assert statuses[-1] == "success"
        async with session.post(
            f"{url}/api/generate", json={"model": "converted", "prompt": "hello", "stream": False, "options": {"num_predict": 3}}
        ) as r:
            reply = await r.json()
    assert reply["done"] and reply["eval_count"] == 3
    assert sorted(check_ollama_layout(models_dir)) == [
        "registry.ollama.ai/library/converted/latest",
        "registry.ollama.ai/library/tiny/latest",
    ]
