"""The fake llama-server behaves like the real one where lifecycle tests depend on it.

Each test runs the fake as a real subprocess (its own session, so teardown can kill its whole
process group) on a free 127.0.0.1 port, and synchronises on events only: stderr lines it
prints, or HTTP answers it gives. Nothing waits on a bare sleep.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "fake_llama_server.py"
TIMEOUT = 10.0


@dataclass
class Fake:
    """A running fake: the process, its port, and its stderr lines as they arrive."""

    proc: subprocess.Popen[bytes]
    port: int
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<EOF>")
            self.cond.notify_all()

    def wait_line(self, needle: str, timeout: float = TIMEOUT) -> str:
        """Block until a stderr line contains `needle`; return it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or "<EOF>" in self.lines:
                    raise AssertionError(f"no stderr line with {needle!r}; got:\n" + "\n".join(self.lines))
                self.cond.wait(left)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout=timeout)
        self.wait_line("<EOF>")
        return code

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    def get(self, path: str) -> tuple[int, Any]:
        c = self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        c = self.conn()
        try:
            c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, json.loads(r.read())
        finally:
            c.close()

    def sse(self, path: str, body: dict[str, Any]) -> list[str]:
        """POST and return the `data: ...` payloads of the whole stream, in order."""
        c = self.conn()
        try:
            c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            assert r.status == 200
            assert r.getheader("Content-Type", "").startswith("text/event-stream")
            return [line.decode()[len("data: "):].rstrip("\n") for line in r if line.startswith(b"data: ")]
        finally:
            c.close()

    def wait_ready(self) -> None:
        """Wait for the "model loaded" line (printed after readiness is set), then check /health."""
        self.wait_line("srv  llama_server: model loaded")
        assert self.get("/health") == (200, {"status": "ok"})

    def poll_health(self) -> list[int]:
        """Poll /health until it answers 200; return every status seen, in order (no duplicates)."""
        seen: list[int] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            status, _ = self.get("/health")
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                return seen
            with self.cond:  # poll interval: woken early by any new stderr line
                self.cond.wait(0.02)
        raise AssertionError(f"/health never answered 200: {seen}")


StartFake = Callable[..., Fake]


@pytest.fixture
def start_fake(tmp_path: Path) -> Iterator[StartFake]:
    """Start fakes (``start_fake(*argv, **env)``); every process group is SIGKILLed at teardown."""
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")
    fakes: list[Fake] = []

    def start(*extra: str, model_path: str | None = None, port: int | None = None, **env: str) -> Fake:
        port = free_port() if port is None else port
        argv = [sys.executable, str(FAKE), "-m", model_path or str(model), "--alias", "tiny",
                "--host", "127.0.0.1", "--port", str(port), *extra]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_LLAMA_", "LLAMA_"))}
        full_env.update(env)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=full_env, start_new_session=True)
        fake = Fake(proc, port)
        threading.Thread(target=fake._pump, daemon=True).start()
        fakes.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in fakes:
            try:
                os.killpg(fake.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            fake.proc.wait(timeout=TIMEOUT)
            if fake.proc.stderr is not None:
                fake.proc.stderr.close()


def test_health_503_while_loading_then_200(start_fake: StartFake) -> None:
    """/health answers 503 "Loading model" while loading, then 200 {"status":"ok"}."""
    fake = start_fake("-lv", "4", "--log-prefix", FAKE_LLAMA_LOAD_SECONDS="0.5")
    fake.wait_line("load_model: loading model")  # the socket is bound before this line
    status, body = fake.get("/health")
    assert status == 503
    assert body == {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}
    assert fake.get("/props")[0] == 503
    assert fake.poll_health() == [503, 200]
    assert fake.wait_line("model buffer size").startswith("I load_tensors:   CPU_Mapped model buffer size =")
    fake.wait_line("KV buffer size =    12.00 MiB")
    fake.wait_line("compute buffer size =     5.00 MiB")
    assert fake.wait_line("model loaded") == "I srv  llama_server: model loaded"
    assert fake.wait_line("listening on") == f"I srv  llama_server: listening on http://127.0.0.1:{fake.port}"


def test_props_and_slots_report_context_and_slots(start_fake: StartFake) -> None:
    """/props and /slots report the per-slot context (-c split over -np) and the slot count."""
    fake = start_fake("-c", "8192", "-np", "2")
    fake.wait_ready()
    status, props = fake.get("/props")
    assert status == 200
    assert props["default_generation_settings"]["n_ctx"] == 4096
    assert props["total_slots"] == 2
    assert props["build_info"] == "b1-0c1e570"
    status, slots = fake.get("/slots")
    assert [(s["id"], s["is_processing"], s["n_ctx"]) for s in slots] == [(0, False, 4096), (1, False, 4096)]


def test_tokenize_is_one_token_per_character(start_fake: StartFake) -> None:
    """/tokenize gives one token per character (id = code point); /detokenize inverts it."""
    fake = start_fake()
    fake.wait_ready()
    assert fake.post("/tokenize", {"content": "hi é"}) == (200, {"tokens": [104, 105, 32, 233]})
    assert fake.post("/detokenize", {"tokens": [104, 105, 2000000, 2000001]}) == (200, {"content": "hitok0 tok1"})
    status, body = fake.post("/apply-template", {"messages": [{"role": "user", "content": "hello"}]})
    assert (status, body) == (200, {"prompt": "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"})


def test_streamed_completion_has_partials_then_final(start_fake: StartFake) -> None:
    """A streamed /completion sends n_predict partial events, then one stop:true event with timings, no [DONE]."""
    fake = start_fake()
    fake.wait_ready()
    events = [json.loads(e) for e in fake.sse("/completion", {"prompt": "hello", "n_predict": 5, "stream": True})]
    partials, final = events[:-1], events[-1]
    assert [e["content"] for e in partials] == ["tok0", " tok1", " tok2", " tok3", " tok4"]
    assert all(e["stop"] is False and e["tokens_evaluated"] == 5 for e in partials)
    assert [e["tokens_predicted"] for e in partials] == [1, 2, 3, 4, 5]
    assert final["stop"] is True and final["content"] == "" and final["stop_type"] == "limit"
    assert final["tokens_predicted"] == 5 and final["tokens_evaluated"] == 5 and final["truncated"] is False
    assert {"cache_n", "prompt_n", "prompt_ms", "predicted_n", "predicted_ms",
            "predicted_per_second"} <= final["timings"].keys()
    assert final["timings"]["predicted_n"] == 5


def test_non_stream_completion_default_length_and_stop_word(start_fake: StartFake) -> None:
    """Without n_predict the fake emits 16 tokens then EOS; a stop string ends it with stop_type "word"."""
    fake = start_fake()
    fake.wait_ready()
    status, body = fake.post("/completion", {"prompt": "hi"})
    assert status == 200
    assert body["content"] == " ".join(f"tok{i}" for i in range(16))
    assert (body["stop_type"], body["tokens_predicted"], body["model"]) == ("eos", 16, "tiny")
    status, body = fake.post("/completion", {"prompt": "hi", "stop": ["tok2"]})
    assert (body["content"], body["stop_type"], body["stopping_word"]) == ("tok0 tok1 ", "word", "tok2")


def test_chat_stream_ends_with_done(start_fake: StartFake) -> None:
    """A streamed chat completion sends role, content and finish chunks, timings on the last, then [DONE]."""
    fake = start_fake()
    fake.wait_ready()
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
    events = fake.sse("/v1/chat/completions", body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["tok0", " tok1"]
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "length" and last["choices"][0]["delta"] == {}
    assert last["timings"]["predicted_n"] == 2


def test_disconnect_cancels_generation_and_frees_slot(start_fake: StartFake) -> None:
    """Closing a stream mid-way logs "cancel task, id_task = N" and /slots shows the slot idle again."""
    fake = start_fake(FAKE_LLAMA_TOKEN_INTERVAL="0.05")
    fake.wait_ready()
    c = fake.conn()
    c.request("POST", "/completion", json.dumps({"prompt": "x", "n_predict": 10000, "stream": True}))
    r = c.getresponse()
    assert r.readline().startswith(b"data: ")
    _, slots = fake.get("/slots")
    assert any(s["is_processing"] for s in slots)
    r.close()
    c.close()
    assert fake.wait_line("cancel task, id_task =") == "srv          stop: cancel task, id_task = 1"
    fake.wait_line("all slots are idle")
    _, slots = fake.get("/slots")
    assert not any(s["is_processing"] for s in slots)


def test_exit_on_load_exits_with_that_code(start_fake: StartFake) -> None:
    """FAKE_LLAMA_EXIT_ON_LOAD=<code> logs a model loading error and exits with <code>."""
    fake = start_fake(FAKE_LLAMA_EXIT_ON_LOAD="3")
    assert fake.wait_exit() == 3
    fake.wait_line("llama_model_load: error loading model: fake failure")
    fake.wait_line("exiting due to model loading error")


def test_missing_model_file_exits_1(start_fake: StartFake, tmp_path: Path) -> None:
    """A -m path that does not exist fails the load like the real server: exit 1."""
    fake = start_fake(model_path=str(tmp_path / "absent.gguf"))
    assert fake.wait_exit() == 1
    fake.wait_line("failed to open GGUF file")
    fake.wait_line("exiting due to model loading error")


def test_port_in_use_exits_1(start_fake: StartFake) -> None:
    """A port that cannot be bound logs "couldn't bind HTTP server socket" and exits 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        fake = start_fake(port=port)
        assert fake.wait_exit() == 1
    fake.wait_line(f"couldn't bind HTTP server socket, hostname: 127.0.0.1, port: {port}")


def test_sigterm_exits_0_after_clean_up(start_fake: StartFake) -> None:
    """After loading, SIGTERM makes the fake clean up and exit 0 promptly."""
    fake = start_fake()
    fake.wait_ready()
    fake.proc.send_signal(signal.SIGTERM)
    assert fake.wait_exit(timeout=5) == 0
    fake.wait_line("cleaning up before exit")


def test_ignore_sigterm_survives_sigterm(start_fake: StartFake) -> None:
    """FAKE_LLAMA_IGNORE_SIGTERM=1 logs and ignores SIGTERM, keeps serving; only SIGKILL stops it."""
    fake = start_fake(FAKE_LLAMA_IGNORE_SIGTERM="1")
    fake.wait_ready()
    fake.proc.send_signal(signal.SIGTERM)
    fake.wait_line("fake: ignoring SIGTERM")
    assert fake.get("/health") == (200, {"status": "ok"})
    assert fake.proc.poll() is None
    fake.proc.kill()
    assert fake.wait_exit() == -signal.SIGKILL


def test_crash_after_tokens_aborts_mid_stream(start_fake: StartFake) -> None:
    """FAKE_LLAMA_CRASH_AFTER_TOKENS=2 streams two tokens, prints GGML_ASSERT and dies by SIGABRT."""
    fake = start_fake(FAKE_LLAMA_CRASH_AFTER_TOKENS="2")
    fake.wait_ready()
    c = fake.conn()
    c.request("POST", "/completion", json.dumps({"prompt": "x", "n_predict": 50, "stream": True}))
    r = c.getresponse()
    got = []
    try:
        for line in r:  # http.client ends a chunked body cut off by the peer quietly or with an error
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:]))
    except (http.client.IncompleteRead, ConnectionError):
        pass
    c.close()
    assert [(e["content"], e["stop"]) for e in got] == [("tok0", False), (" tok1", False)]  # no final event
    assert fake.wait_exit() == -signal.SIGABRT
    fake.wait_line("GGML_ASSERT(fake) failed")


def test_reports_argv_env_pid_and_child(start_fake: StartFake, tmp_path: Path) -> None:
    """The fake logs its argv and LLAMA_ARG_* env, writes its pid file, and spawns a same-group child."""
    pidfile = tmp_path / "fake.pid"
    fake = start_fake("--no-webui", "--unknown-flag", "v", FAKE_LLAMA_PIDFILE=str(pidfile), FAKE_LLAMA_CHILD="1",
                      LLAMA_ARG_CTX_SIZE="99")
    fake.wait_ready()
    assert fake.wait_line("fake: argv ").endswith("--no-webui --unknown-flag v")
    fake.wait_line("fake: env LLAMA_ARG_CTX_SIZE=99")
    assert int(pidfile.read_text()) == fake.proc.pid
    child = int(fake.wait_line("fake: child pid ").split()[-1])
    assert os.getpgid(child) == os.getpgid(fake.proc.pid)


def test_version_prints_to_stderr() -> None:
    """--version prints the real version line to stderr and exits 0."""
    out = subprocess.run([sys.executable, str(FAKE), "--version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0
    assert out.stderr.splitlines()[0] == "version: 0.5.0-dev (build 1, commit 0c1e570)"
