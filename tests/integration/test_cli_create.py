"""``llamasup create`` against a small fake Ollama API: uploads, the create request, output and errors."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from supervisor.cli import main
from supervisor.client.create import create_model
from supervisor.settings import client_base_url
from tests.net import free_port

LAYER = "sha256:" + "1" * 64
DEFAULT_REPLY: list[dict[str, Any]] = [
    {"status": "parsing GGUF"},
    {"status": f"using existing layer {LAYER}"},
    {"status": "quantizing F16 model to Q4_K_M", "digest": "0", "total": 100, "completed": 10},
    {"status": "quantizing F16 model to Q4_K_M", "digest": "0", "total": 100, "completed": 100},
    {"status": f"creating new layer {LAYER}"},
    {"status": "writing manifest"},
    {"status": "success"},
]


@dataclass
class FakeApi:
    """Records what the CLI sends; replies to create with ``reply`` lines (or ``create_status``)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    heads: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    creates: list[dict[str, Any]] = field(default_factory=list)
    reply: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_REPLY))
    create_status: int = 200

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("HEAD", "/api/blobs/{digest}", self.head_blob)
        app.router.add_post("/api/blobs/{digest}", self.post_blob)
        app.router.add_post("/api/create", self.create)
        return app

    async def head_blob(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        self.heads.append(digest)
        return web.Response(status=200 if digest in self.blobs else 404)

    async def post_blob(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        self.uploads.append(digest)
        data = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            data += chunk
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            return web.json_response({"error": f'digest mismatch, expected "{digest}", got "{actual}"'}, status=400)
        self.blobs[digest] = bytes(data)
        return web.Response(status=201)

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.creates.append(await request.json())
        if self.create_status != 200:
            return web.json_response({"error": "invalid model name"}, status=self.create_status)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for msg in self.reply:
            await resp.write(orjson.dumps(msg) + b"\n")
        await resp.write_eof()
        return resp


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApi, str]]:
    fake = FakeApi()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _run(base: str, model: str, cwd: Path, path: str | None = None, quantize: str = "") -> tuple[int, str]:
    """Exit status and standard error: the progress (plain lines, as off a terminal), then any error."""
    err = io.StringIO()
    code = await create_model(base, model, path, quantize, err=err, cwd=cwd)
    return code, err.getvalue()


async def test_create_uploads_files_and_streams_progress(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """Local files go up once per digest (skipping known blobs), then create's statuses print once each."""
    fake, base = api
    weights, proj, known = b"GGUF weights" * 1000, b"GGUF projector", b"GGUF already there"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.gguf").write_bytes(weights)
    (tmp_path / "w" / "config.json").write_bytes(weights)  # same bytes: one upload for two names
    (tmp_path / "mmproj.gguf").write_bytes(proj)
    (tmp_path / "lora.gguf").write_bytes(known)
    fake.blobs[_digest(known)] = known
    (tmp_path / "Modelfile").write_text(
        "FROM ./w\nFROM mmproj.gguf\nADAPTER lora.gguf\nSYSTEM \"\"\"be\n\"brief\"\"\"\"\nPARAMETER num_ctx 4096\n"
        "PARAMETER stop <|end|>\nMESSAGE user hi\n"
    )
    code, err = await _run(base, "me/mine:v1", tmp_path, quantize="q4_K_M")
    assert code == 0
    assert fake.uploads == [_digest(weights), _digest(proj)]
    assert fake.heads == [_digest(weights), _digest(proj), _digest(known)]
    assert fake.creates == [
        {
            "model": "me/mine:v1",
            "files": {"model.gguf": _digest(weights), "config.json": _digest(weights), "mmproj.gguf": _digest(proj)},
            "adapters": {"lora.gguf": _digest(known)},
            "system": 'be\n"brief"',
            "parameters": {"num_ctx": 4096, "stop": ["<|end|>"]},
            "messages": [{"role": "user", "content": "hi"}],
            "quantize": "q4_K_M",
        }
    ]
    assert err.splitlines() == [
        "gathering model components",
        f"copying file {_digest(weights)} 12 KB",
        f"copying file {_digest(weights)} 100% 12 KB",
        f"copying file {_digest(proj)} 14 B",
        f"copying file {_digest(proj)} 100% 14 B",
        f"copying file {_digest(known)} 18 B",
        f"copying file {_digest(known)} 100% 18 B",
        "parsing GGUF",
        f"using existing layer {LAYER}",
        "quantizing F16 model to Q4_K_M 100 B",
        "quantizing F16 model to Q4_K_M 100% 100 B",
        f"creating new layer {LAYER}",
        "writing manifest",
        "success",
    ]


async def test_create_from_a_model_name(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """FROM a name that is no local path uploads nothing and sends 'from'; deprecated params warn."""
    fake, base = api
    (tmp_path / "x.mf").write_text("FROM llama3.2\nPARAMETER mirostat 1\nPARAMETER temperature 0.5\n")
    code, err = await _run(base, "mine", tmp_path, "x.mf")
    assert code == 0
    assert err.splitlines()[:2] == ["warning: parameter 'mirostat' is deprecated and was ignored", "gathering model components"]
    assert fake.heads == [] and fake.uploads == []
    assert fake.creates == [{"model": "mine", "from": "llama3.2", "parameters": {"temperature": 0.5}}]


async def test_error_line_in_stream(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """An {"error": …} line ends create with 'Error: <message>' on stderr and exit status 1."""
    fake, base = api
    fake.reply = [{"status": f"using existing layer {LAYER}"}, {"error": "pull model manifest: file does not exist"}]
    (tmp_path / "Modelfile").write_text("FROM nothere\n")
    code, err = await _run(base, "mine", tmp_path)
    assert code == 1
    assert err.splitlines() == ["gathering model components", f"using existing layer {LAYER}",
                                "Error: pull model manifest: file does not exist"]  # fmt: skip


async def test_http_error_status(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """An error status from /api/create is reported with the server's error message."""
    fake, base = api
    fake.create_status = 400
    (tmp_path / "Modelfile").write_text("FROM base\n")
    code, err = await _run(base, "mine", tmp_path)
    assert (code, err.splitlines()[-1]) == (1, "Error: invalid model name")


async def test_invalid_name_is_checked_before_anything(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """An invalid model name fails client-side, before the Modelfile is read or the server called."""
    fake, base = api
    code, err = await _run(base, "bad name!", tmp_path, "missing")
    assert (code, err) == (1, "Error: invalid model name: bad name!\n")
    assert fake.creates == []


@pytest.mark.parametrize(
    ("files", "path", "message"),
    [
        ({}, "nope", "specified Modelfile wasn't found"),
        ({}, None, "no Modelfile or safetensors files found"),
        ({"Modelfile": "FROM m\nPARAMETER top_k many\n"}, None, "(line 2): invalid int value [many]"),
        ({"Modelfile": "SYSTEM hi\n"}, None, "no FROM line"),
    ],
)
async def test_modelfile_errors(
    api: tuple[FakeApi, str], tmp_path: Path, files: dict[str, str], path: str | None, message: str
) -> None:
    """Modelfile problems print one 'Error:' line and never reach the server."""
    fake, base = api
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, err = await _run(base, "mine", tmp_path, path)
    assert (code, err.splitlines()[-1]) == (1, f"Error: {message}")
    assert fake.creates == []


async def test_connection_refused(tmp_path: Path) -> None:
    """No server listening: one 'could not connect' error naming the address."""
    (tmp_path / "Modelfile").write_text("FROM base\n")
    port = free_port()
    code, err = await _run(f"http://127.0.0.1:{port}", "mine", tmp_path)
    assert code == 1
    assert err.splitlines()[-1].startswith(f"Error: could not connect to the server at http://127.0.0.1:{port}")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_tty_progress_redraws_lines(api: tuple[FakeApi, str], tmp_path: Path) -> None:
    """On a terminal the statuses are redrawn in place: a line per status, the quantization as a bar."""
    _, base = api
    (tmp_path / "Modelfile").write_text("FROM base\n")
    err = _Tty()
    assert await create_model(base, "mine", None, err=err, cwd=tmp_path) == 0
    text = err.getvalue()
    assert "\x1b[?25l" in text and text.endswith("\n")  # cursor hidden while drawing
    last = text.rsplit("\x1b[1G", 1)[-1]  # the final frame
    lines = [line.split("\x1b[K")[0].rstrip() for line in last.split("\n") if "\x1b[K" in line]
    assert lines[0] == "gathering model components"
    assert lines[-2:] == ["writing manifest", "success"]
    assert any(line.startswith("quantizing F16 model to Q4_K_M 100% ▕") for line in lines)


def test_main_create_uses_ollama_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`llamasup create` connects to OLLAMA_HOST and exits 1 with one error line when it cannot."""
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"0.0.0.0:{port}")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Modelfile").write_text("FROM base\n")
    assert main(["create", "mine"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"gathering model components\nError: could not connect to the server at http://127.0.0.1:{port}")


def test_main_create_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """-f and a bad name are wired through: the name check fails first, with Ollama's wording."""
    monkeypatch.chdir(tmp_path)
    assert main(["create", "no good", "-f", "x", "-q", "q8_0"]) == 1
    assert capsys.readouterr().err == "Error: invalid model name: no good\n"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:11434"),
        ({"OLLAMA_HOST": ""}, "http://127.0.0.1:11434"),
        ({"OLLAMA_HOST": "0.0.0.0"}, "http://127.0.0.1:11434"),
        ({"OLLAMA_HOST": "0.0.0.0:8080"}, "http://127.0.0.1:8080"),
        ({"OLLAMA_HOST": ":9000"}, "http://127.0.0.1:9000"),
        ({"OLLAMA_HOST": "[::]:9001"}, "http://[::1]:9001"),
        ({"OLLAMA_HOST": "[::1]:9001"}, "http://[::1]:9001"),
        ({"OLLAMA_HOST": "example.com"}, "http://example.com:11434"),
        ({"OLLAMA_HOST": "https://example.com"}, "https://example.com:443"),
        ({"OLLAMA_HOST": "http://example.com/ollama/"}, "http://example.com:80/ollama"),
        ({"OLLAMA_HOST": "'10.0.0.2:1234'"}, "http://10.0.0.2:1234"),
    ],
)
def test_client_base_url(env: dict[str, str], expected: str) -> None:
    """Clients turn OLLAMA_HOST into a URL; a wildcard listen address means this machine."""
    assert client_base_url(env) == expected
