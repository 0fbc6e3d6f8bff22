"""What the benchmarks share: the runner binary, a llamasup server on a temporary store, the runner's
socket, the request bodies for both sides, and one streamed request timed on the client."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.protocol.ollama import resolve_options  # noqa: E402
from tests.models import write_model  # noqa: E402
from tests.net import free_port  # noqa: E402
from tests.store_helpers import install_gguf  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. Tell me a long story about it."
DIRECT_BASE = "http://llama-server"  # host part of URLs sent over the runner's Unix socket


@dataclass
class Stream:
    """One streamed completion, timed on the client (``time.perf_counter``)."""

    sent: float
    first: float  # first text received (0.0 if none)
    last: float  # last text received
    tokens: int  # text pieces received (one per token on both sides)


def llama_server() -> Path:
    env = os.environ.get("LLAMASUP_LLAMA_SERVER")
    if env:
        return Path(env)
    out = subprocess.run([str(ROOT / "build_runner.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120, ok: int = 200) -> None:
    """Until ``url`` answers with status ``ok``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == ok:
                    return
        except urllib.error.HTTPError as e:
            if e.code == ok:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def prepare_store(work: Path, preset: str) -> tuple[Path, Path]:
    """Generate the preset's GGUF and install it as model ``preset``; returns (gguf, store)."""
    gguf = write_model(work / f"{preset}.gguf", preset=preset)
    models = work / f"store-{preset}"
    install_gguf(models, preset, gguf)
    return gguf, models


@contextmanager
def llamasup(
    work: Path, models: Path, binary: Path, threads: int, log_name: str, **extra_env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``python -m supervisor serve`` on ``models``, up and answering; yields (process, base URL)."""
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(models), OLLAMA_KEEP_ALIVE="-1",
               LLAMASUP_LLAMA_SERVER=str(binary), LLAMASUP_CACHE_DIR=str(work / "cache"), LLAMASUP_LOG_FORMAT="json",
               LLAMASUP_LOG_LEVEL="warning", LLAMASUP_THREADS=str(threads), **extra_env)  # fmt: skip
    sup = subprocess.Popen([sys.executable, "-m", "supervisor", "serve"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=open(work / log_name, "wb"))  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/", sup)
        yield sup, base
    finally:
        sup.terminate()
        sup.wait(timeout=30)


def runner_process(supervisor_pid: int) -> psutil.Process:
    """The (only) llama-server the supervisor runs."""
    (runner,) = [c for c in psutil.Process(supervisor_pid).children() if "llama-server" in " ".join(c.cmdline()[:1])]
    return runner


def argv_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def runner_socket(supervisor_pid: int) -> str:
    """The Unix socket of the supervisor's runner (llamasup's runners listen on one, not on TCP)."""
    return argv_value(runner_process(supervisor_pid).cmdline(), "--host")


def direct_session(socket_path: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path), timeout=aiohttp.ClientTimeout(total=600))


def bodies(preset: str, n_predict: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Same prompt, same sampling fields on both sides: (llamasup's /api/generate body, what llamasup
    sends for it to llama-server's /completion)."""
    options = {"temperature": 0, "num_predict": n_predict, "seed": 1}
    sampling = resolve_options({}, options).sampling
    ollama_body = {"model": preset, "prompt": PROMPT, "raw": True, "stream": True, "options": options}
    direct_body = dict(sampling, prompt=PROMPT, stream=True, cache_prompt=True)
    return ollama_body, direct_body


async def stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any], *, ndjson: bool) -> Stream:
    """Stream one completion; timestamps are taken on the client for both sides alike."""
    data = orjson.dumps(body)
    t0 = time.perf_counter()
    first = last = 0.0
    tokens = 0
    # llama-server closes a connection after a stream while advertising keep-alive: never reuse one.
    headers = {"Content-Type": "application/json"} if ndjson else {"Content-Type": "application/json", "Connection": "close"}
    async with session.post(url, data=data, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if ndjson:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                piece = event.get("response", "")
            else:
                if not line.startswith(b"data: "):
                    continue
                event = orjson.loads(line[6:])
                piece = event.get("content", "") if not event.get("stop") else ""
            if piece:
                now = time.perf_counter()
                tokens += 1
                if not first:
                    first = now
                last = now
    return Stream(sent=t0, first=first, last=last, tokens=tokens)


def machine_info() -> dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}  # fmt: skip


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def print_row(row: list[str], result: dict[str, Any]) -> None:
    """A result's table row as it is measured, and how many pairs other programs disturbed."""
    print(markdown_table([], [row]).splitlines()[-1], flush=True)
    if result.get("disturbed_pairs"):
        print(f"  ({result['disturbed_pairs']} pairs disturbed by other programs, measured again)", file=sys.stderr)


def write_results(out: Path, results: list[dict[str, Any]], header: list[str], row: Any, started: float) -> None:
    """``results`` with the machine's description into ``out`` (JSON), and the table on stdout."""
    machine = machine_info()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    print()
    print(markdown_table(header, map(row, results)))
    print(f"\nmachine: {machine}; {time.monotonic() - started:.0f} s; raw rounds in {out}")
