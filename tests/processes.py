"""Server processes that tests start themselves: wait until one serves, stop it, run a stock llama-server.

`wait_until_serving` races the three things every wait on a child races: an HTTP 200 from the
server, the child's exit, and a deadline; its failures carry the exit status and the log's tail.
`stop_process` is SIGTERM, a bounded wait, then SIGKILL, and always reaps.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.net import free_port

START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
STOP_GRACE = 15.0


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200 (a 503 while loading, or no listener yet, is "not yet")."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:  # not listening yet, or an HTTPError such as 503 while loading
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer 200 within {timeout}s:\n{_tail(log)}")
        # The pause between polls is a wait on the process: it ends early if the process exits.
        try:
            code = proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the server exited with {code} before {url} answered 200:\n{_tail(log)}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, up to `STOP_GRACE` seconds to exit, then SIGKILL; reaped either way (a no-op once exited)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LlamaServer:
    """A running llama-server child: its process, base URL and combined stdout/stderr log."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str) -> tuple[int, Any]:
        return self._send(urllib.request.Request(self.url + path))

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        return self._send(urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"}))

    def _send(self, req: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def media_marker(self) -> str:
        """The text that stands for an image in a prompt (``/props``)."""
        status, props = self.get("/props")
        assert status == 200, props
        marker = props["media_marker"]
        assert isinstance(marker, str) and marker
        return marker


def _child_env() -> dict[str, str]:
    # LLAMA_ARG_* would override our flags; a router port makes llama-server exit on stdin EOF.
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLAMA_ARG_") and k not in ("LLAMA_SERVER_ROUTER_PORT", "LLAMA_MEDIA_MARKER")
    }


@contextmanager
def llama_server(binary: Path, model: Path, log_dir: Path, extra_args: Sequence[str] = ()) -> Iterator[LlamaServer]:
    """The stock llama-server serving ``model`` on 127.0.0.1 (512-token context, 2 threads), from
    /health 200 until the block ends; its log is ``log_dir/llama-server-PORT.log``."""
    port = free_port()
    log = log_dir / f"llama-server-{port}.log"
    args = [
        str(binary),
        "-m", str(model),
        "-c", "512",
        "--no-webui",
        "--no-repack",  # this llama.cpp crashes repacking quantized weights on AMX CPUs
        "--threads", "2",
        "--host", "127.0.0.1",
        "--port", str(port),
        *extra_args,
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_env())
    try:
        server = LlamaServer(proc, f"http://127.0.0.1:{port}", log)
        wait_until_serving(proc, server.url + "/health", log)
        yield server
    finally:
        stop_process(proc)
