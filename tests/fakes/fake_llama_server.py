#!/usr/bin/env python3
"""A fake llama.cpp ``llama-server`` for fast lifecycle tests.

It imitates llama-server 0.5.0-dev (build 1, commit 0c1e570) as described in
/work/shared/reference/llama-server.md closely enough that the supervisor cannot tell the
difference in lifecycle tests: the same argv, the same stderr lines, the same readiness
behaviour (socket bound first, 503 while loading), the same JSON field names and SSE
framing, the same cancel-on-disconnect. It is one self-contained file so that it can be
exec'd directly (``./fake_llama_server.py ...``) or run as ``python fake_llama_server.py ...``.

Command line: the supervisor's normal argv, for example::

    fake_llama_server.py -m /models/x.gguf --alias x --host 127.0.0.1 --port 41234 -c 8192 \
        -np 2 -ngl auto -t 8 --no-webui --metrics --cache-ram 0 -lv 4 --log-colors off --log-prefix

Parsing is lenient: known flags take their values, unknown ``--flag`` / ``-x`` options are
ignored, together with the next token when that token does not start with ``-``. Used:
``-m`` (must name an existing file; its content is never read), ``-a/--alias`` (the
lexicographically first alias is the model name, else the ``-m`` string), ``--host``
(comma list; a name ending in ``.sock`` is a UNIX socket), ``--port`` (0 = any free port),
``-c``, ``-np``, ``-kvu/-no-kvu`` (slot context as the real one: padded to 256; -np auto =
4 slots with a unified KV cache), ``-n``, ``-lv``, ``--log-prefix``, ``--log-timestamps``,
``--metrics``, ``--props``, ``--no-slots``, ``--no-webui``, ``--embedding(s)``,
``--rerank(ing)``, ``--api-key``. ``--version`` prints
``version: 0.5.0-dev (build 1, commit 0c1e570)`` to stderr and exits 0. ``--log-colors`` is
accepted, but colours are never printed.

Lifecycle, as the real one:

1. Prints ``fake: argv <shlex-joined argv[1:]>``, then ``fake: env NAME=VALUE`` for every
   ``LLAMA_ARG_*`` / ``LLAMA_SERVER_ROUTER_PORT`` / ``LLAMA_API_KEY`` variable it inherited
   (they are reported, never applied), then start-up log lines.
2. Binds every HTTP socket. On failure: ``couldn't bind HTTP server socket, hostname: H,
   port: P`` and exit 1, before any load line.
3. Loads for ``FAKE_LLAMA_LOAD_SECONDS``: every route (``/health`` included, unknown paths
   too) answers ``503 {"error":{"message":"Loading model","type":"unavailable_error",
   "code":503}}``. Load lines (``load_tensors:   CPU_Mapped model buffer size = ...``,
   ``llama_kv_cache: ... KV buffer size``, ``sched_reserve: ... compute buffer size``) are
   trace level, so, as in the real one, they are printed only with ``-lv 4`` or higher.
   A missing ``-m`` file: ``gguf_init_from_file: failed to open GGUF file ...`` ...
   ``exiting due to model loading error``, exit 1.
4. Ready: ``srv  llama_server: model loaded``, then
   ``srv  llama_server: listening on http://127.0.0.1:PORT``; ``/health`` → 200.
5. Signals: the real server installs its SIGTERM/SIGINT handler only *after* loading, so
   during the load a SIGTERM kills the fake by the signal (returncode -15). After loading, a
   SIGTERM/SIGINT logs ``srv    operator(): operator(): cleaning up before exit...`` (sic: the
   real one prints the function name twice), aborts in-flight
   requests and exits 0 within a fraction of a second; a second one prints
   ``Received second interrupt, terminating immediately.`` and exits 1.
6. With ``LLAMA_SERVER_ROUTER_PORT`` set it behaves as a router child: once ready it watches
   stdin and exits 1 on EOF (``EOF on stdin detected, forcing shutdown...``).

Tokenizer convention (``/tokenize``, prompt lengths, ``tokens_evaluated``): **one token per
Unicode character, token id = code point** (``ord``). No BOS/EOS is ever added
(``add_special`` is ignored), so ``len(prompt) == tokens_evaluated``.

Generated text is deterministic: token ``i`` (0-based within one request) has the piece
``tok<i>`` for i == 0 and `` tok<i>`` after that, id ``GEN_TOKEN_BASE + i`` (2000000 + i);
``/detokenize`` maps both kinds of id back. A reply of n tokens is ``tok0 tok1 ... tok<n-1>``.
One token is produced every ``FAKE_LLAMA_TOKEN_INTERVAL`` seconds. Length and stop reasons:

* explicit ``n_predict`` (aliases ``max_tokens``, ``max_completion_tokens``) >= 0, or the
  server ``-n``: exactly that many tokens, ``stop_type:"limit"`` (chat ``finish_reason:"length"``);
* ``n_predict`` absent, null or -1: ``FAKE_LLAMA_DEFAULT_TOKENS`` (16) tokens, then the fake
  model "emits EOS": ``stop_type:"eos"`` (``finish_reason:"stop"``);
* ``stop`` strings: ``stop_type:"word"``, the match is removed, and text that could be the
  start of a stop string is held back in streams (partial ``content:""``), as in the real one;
* prompt + generated reaching the slot context: ``"limit"`` with ``truncated:true``; a prompt
  of >= n_ctx tokens is refused with 400 ``exceed_context_size_error``.

Sampling fields are accepted and ignored; ``n_probs``/``logprobs`` produce no probabilities.
Slots are real: a request waits (deferred) until a slot is free, ``/slots`` shows
``is_processing``, and a client disconnect cancels the task, logs
``srv          stop: cancel task, id_task = N`` (WARN) and frees the slot at once.
``/embedding(s)``, ``/v1/embeddings`` (8-dim deterministic unit vectors) need ``--embedding``;
the rerank routes need ``--rerank``; else 501, as in the real one. A request carrying
``X-Conversation-Id`` is logged as ``fake: X-Conversation-Id <id>`` (the supervisor should
strip that header; the fake does not imitate resumable streams).

Misbehaviour switches (environment variables, so the supervisor's normal argv can be used):

``FAKE_LLAMA_LOAD_SECONDS`` (default 0.05)
    time spent "loading" (503 on every route meanwhile).
``FAKE_LLAMA_LOAD_FOREVER=1``
    never becomes ready and prints nothing after ``load_model: loading model`` (a stall).
``FAKE_LLAMA_EXIT_ON_LOAD=<code>``
    half-way through the load, prints ``llama_model_load: error loading model: fake failure``
    ... ``exiting due to model loading error`` and exits with ``<code>``.
``FAKE_LLAMA_OOM_ABOVE_CTX=<n>``
    a load with ``-c`` above ``n`` fails as the real one does when the KV cache cannot be allocated
    (``failed to allocate buffer for kv cache``, exit 1).
``FAKE_LLAMA_OOM_WHILE_RUNNING=<pidfile>``
    the same failure while the process whose pid is in ``pidfile`` is alive (another runner holds
    the memory).
``FAKE_LLAMA_CRASH_AFTER_TOKENS=<n>``
    in any generation, once n tokens have been produced (and, in a stream, written), prints
    ``ggml/src/ggml.c:1234: GGML_ASSERT(fake) failed`` and aborts: SIGABRT, returncode -6,
    like the real ``GGML_ASSERT`` (core dumps are disabled first). n = 0 aborts after the
    stream's headers went out, before the first token.
``FAKE_LLAMA_IGNORE_SIGTERM=1``
    SIGTERM is ignored for the whole life of the process; each one logs
    ``fake: ignoring SIGTERM`` (the supervisor must escalate to SIGKILL).
``FAKE_LLAMA_TOKEN_INTERVAL=<seconds>`` (default 0.001)
    delay between generated tokens.
``FAKE_LLAMA_DEFAULT_TOKENS=<n>`` (default 16)
    tokens generated when a request sets no ``n_predict`` (then stop_type ``eos``).
``FAKE_LLAMA_CHILD=1``
    spawns a grandchild ``sleep 1000`` in the fake's own process group (stdio on /dev/null)
    and logs ``fake: child pid N``. The fake never kills it itself: only a group-wide signal
    from the supervisor does.
``FAKE_LLAMA_PIDFILE=<path>``
    writes the fake's own pid there at start.
``FAKE_LLAMA_N_CTX_TRAIN`` (default 32768)
    the model's training context: used when ``-c`` is absent or 0, and caps the slot context.
``FAKE_LLAMA_MODEL_MIB`` / ``FAKE_LLAMA_KV_MIB`` / ``FAKE_LLAMA_COMPUTE_MIB`` (defaults 1.23 /
12.00 / 5.00)
    the sizes printed in the ``model``/``KV``/``compute buffer size`` load lines.
``FAKE_LLAMA_EMBED_NULL=1``
    every embedding's first component is ``null``, as llama-server writes a NaN or an Inf.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shlex
import signal
import socket
import string
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

VERSION_LINE = "version: 0.5.0-dev (build 1, commit 0c1e570)"
BUILD_INFO = "b1-0c1e570"
GEN_TOKEN_BASE = 2_000_000
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_T0 = time.monotonic()

# ---------------------------------------------------------------------------------------------
# Command line and environment
# ---------------------------------------------------------------------------------------------

_VALUE_FLAGS = {
    "-m": "model", "--model": "model", "-a": "alias", "--alias": "alias", "--host": "host",
    "--port": "port", "-c": "ctx", "--ctx-size": "ctx", "-np": "parallel", "--parallel": "parallel",
    "-ngl": "ngl", "--gpu-layers": "ngl", "--n-gpu-layers": "ngl", "-t": "threads",
    "--threads": "threads", "-cram": "cache_ram", "--cache-ram": "cache_ram",
    "-lv": "verbosity", "--verbosity": "verbosity", "--log-verbosity": "verbosity",
    "--log-colors": "log_colors", "-b": "batch", "--batch-size": "batch", "-ub": "ubatch",
    "--ubatch-size": "ubatch", "--keep": "keep", "-n": "n_predict", "--predict": "n_predict",
    "--n-predict": "n_predict", "--api-key": "api_key", "--log-file": "log_file",
}
_INT_OPTIONS = {"port", "ctx", "parallel", "threads", "cache_ram", "verbosity", "batch", "ubatch",
                "keep", "n_predict"}
_BOOL_FLAGS = {
    "--no-webui": ("ui", False), "--no-ui": ("ui", False), "--webui": ("ui", True),
    "--ui": ("ui", True), "--jinja": ("jinja", True), "--no-jinja": ("jinja", False),
    "--metrics": ("metrics", True), "--offline": ("offline", True),
    "--log-prefix": ("log_prefix", True), "--log-timestamps": ("log_timestamps", True),
    "--props": ("props", True), "--slots": ("slots", True), "--no-slots": ("slots", False),
    "--embedding": ("embedding", True), "--embeddings": ("embedding", True),
    "--rerank": ("rerank", True), "--reranking": ("rerank", True),
    "-kvu": ("kv_unified", True), "--kv-unified": ("kv_unified", True),
    "-no-kvu": ("kv_unified", False), "--no-kv-unified": ("kv_unified", False),
    "-v": ("verbosity", 99), "--verbose": ("verbosity", 99), "--version": ("version", True),
    "-h": ("help", True), "--help": ("help", True), "--log-disable": ("verbosity", -1),
}


@dataclass
class Options:
    argv: list[str]
    model: str | None = None
    alias: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    ctx: int = 0
    parallel: int = -1
    threads: int = 8
    verbosity: int = 3
    n_predict: int = -1
    kv_unified: bool | None = None
    log_prefix: bool = False
    log_timestamps: bool = False
    ui: bool = True
    metrics: bool = False
    props: bool = False
    slots: bool = True
    embedding: bool = False
    rerank: bool = False
    api_key: str | None = None
    version: bool = False
    help: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str]) -> Options:
    """Lenient llama-server style parsing; bad integers exit 1 like the real one."""
    opts = Options(argv=argv)
    i = 0
    while i < len(argv):
        arg, value = argv[i], None
        if arg.startswith("--") and "=" in arg:
            arg, value = arg.split("=", 1)
        arg = arg.replace("_", "-") if arg.startswith("--") else arg
        i += 1
        if arg in _BOOL_FLAGS:
            name, flag_value = _BOOL_FLAGS[arg]
            setattr(opts, name, flag_value)
        elif arg in _VALUE_FLAGS:
            if value is None:
                if i >= len(argv):
                    sys.stderr.write(f'error while handling argument "{arg}": expected value for argument\n')
                    sys.exit(1)
                value, i = argv[i], i + 1
            name = _VALUE_FLAGS[arg]
            if name in _INT_OPTIONS:
                try:
                    setattr(opts, name, int(value))
                except ValueError:
                    sys.stderr.write(f'error while handling argument "{arg}": stoi\n')
                    sys.exit(1)
            elif hasattr(opts, name):
                setattr(opts, name, value)
            else:
                opts.extra[name] = value
        elif arg.startswith("-") and value is None and i < len(argv) and not _looks_like_flag(argv[i]):
            opts.extra[arg] = argv[i]  # unknown flag with a value: ignored
            i += 1
        else:
            opts.extra[arg] = value  # unknown boolean flag or stray positional: ignored
    return opts


def _looks_like_flag(token: str) -> bool:
    return token.startswith("-") and not token.lstrip("-").replace(".", "", 1).isdigit()


@dataclass
class Switches:
    load_seconds: float = 0.05
    load_forever: bool = False
    exit_on_load: int | None = None
    oom_above_ctx: int | None = None
    oom_while_running: str | None = None
    crash_after_tokens: int | None = None
    ignore_sigterm: bool = False
    token_interval: float = 0.001
    default_tokens: int = 16
    child: bool = False
    pidfile: str | None = None
    n_ctx_train: int = 32768
    model_mib: float = 1.23
    kv_mib: float = 12.0
    compute_mib: float = 5.0
    embed_null: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Switches:
        def num(name: str, default: Any, kind: Any = float) -> Any:
            raw = env.get(name, "").strip()
            return kind(raw) if raw else default

        def flag(name: str) -> bool:
            return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")

        return cls(
            load_seconds=num("FAKE_LLAMA_LOAD_SECONDS", 0.05),
            load_forever=flag("FAKE_LLAMA_LOAD_FOREVER"),
            exit_on_load=num("FAKE_LLAMA_EXIT_ON_LOAD", None, int),
            oom_above_ctx=num("FAKE_LLAMA_OOM_ABOVE_CTX", None, int),
            oom_while_running=env.get("FAKE_LLAMA_OOM_WHILE_RUNNING") or None,
            crash_after_tokens=num("FAKE_LLAMA_CRASH_AFTER_TOKENS", None, int),
            ignore_sigterm=flag("FAKE_LLAMA_IGNORE_SIGTERM"),
            token_interval=num("FAKE_LLAMA_TOKEN_INTERVAL", 0.001),
            default_tokens=num("FAKE_LLAMA_DEFAULT_TOKENS", 16, int),
            child=flag("FAKE_LLAMA_CHILD"),
            pidfile=env.get("FAKE_LLAMA_PIDFILE") or None,
            n_ctx_train=num("FAKE_LLAMA_N_CTX_TRAIN", 32768, int),
            model_mib=num("FAKE_LLAMA_MODEL_MIB", 1.23),
            kv_mib=num("FAKE_LLAMA_KV_MIB", 12.0),
            compute_mib=num("FAKE_LLAMA_COMPUTE_MIB", 5.0),
            embed_null=flag("FAKE_LLAMA_EMBED_NULL"),
        )


# ---------------------------------------------------------------------------------------------
# Logging: common/log.cpp text mode (stderr, optional "I "/"W "/"E " and timestamp prefixes)
# ---------------------------------------------------------------------------------------------

class Log:
    LEVELS = {"E": 1, "W": 2, "I": 3, "T": 4, "D": 5}

    def __init__(self, verbosity: int, prefix: bool, timestamps: bool) -> None:
        self.verbosity, self.prefix, self.timestamps = verbosity, prefix, timestamps

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            try:
                data = data[os.write(2, data):]
            except InterruptedError:
                continue
            except OSError:
                return  # stderr closed: nobody is listening

    def log(self, level: str, msg: str) -> None:
        if self.LEVELS[level] > self.verbosity:
            return
        head = ""
        if self.prefix:
            if self.timestamps:
                us = int((time.monotonic() - _T0) * 1e6)
                head = f"{us // 60_000_000}.{us // 1_000_000 % 60:02d}.{us // 1000 % 1000:03d}.{us % 1000:03d} "
            head += {"T": "I", "E": "E", "W": "W", "I": "I", "D": "D"}[level] + " "
        self.write(head + msg + "\n")

    def err(self, msg: str) -> None: self.log("E", msg)
    def wrn(self, msg: str) -> None: self.log("W", msg)
    def inf(self, msg: str) -> None: self.log("I", msg)
    def trc(self, msg: str) -> None: self.log("T", msg)

    def srv(self, level: str, func: str, msg: str) -> None:
        self.log(level, f"srv  {func[:12]:>12}: {msg}")

    def slot(self, level: str, func: str, slot_id: int, task_id: int, msg: str) -> None:
        self.log(level, f"slot {func[:12]:>12}: id {slot_id:2d} | task {task_id} | {msg}")

    def fake(self, msg: str) -> None:
        """Test-only lines: always printed, never prefixed."""
        self.write(f"fake: {msg}\n")


def crash(log: Log) -> None:
    """Die like a failed GGML_ASSERT: message on stderr, then abort() (SIGABRT, no core)."""
    log.write("ggml/src/ggml.c:1234: GGML_ASSERT(fake) failed\n")
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    signal.signal(signal.SIGABRT, signal.SIG_DFL)
    os.abort()


# ---------------------------------------------------------------------------------------------
# Model, tokenizer, slots
# ---------------------------------------------------------------------------------------------

def tokenize(text: str) -> list[int]:
    return [ord(ch) for ch in text]


def piece(token: int) -> str:
    if token >= GEN_TOKEN_BASE:
        i = token - GEN_TOKEN_BASE
        return f"tok{i}" if i == 0 else f" tok{i}"
    if 0 <= token < 0x110000 and not 0xD800 <= token < 0xE000:
        return chr(token)
    return ""


def _pad256(n: int) -> int:
    return (n + 255) // 256 * 256


class ApiError(Exception):
    def __init__(self, code: int, err_type: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.body = {"error": {"code": code, "message": message, "type": err_type, **extra}}
        self.code = code


@dataclass
class Slot:
    id: int
    n_ctx: int
    busy: bool = False
    id_task: int = -1
    cache: list[int] = field(default_factory=list)
    n_prompt: int = 0
    n_decoded: int = 0
    prompt: str = ""
    generated: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "n_ctx": self.n_ctx, "speculative": False, "is_processing": self.busy,
            "id_task": self.id_task, "n_prompt_tokens": self.n_prompt,
            "next_token": [{"has_next_token": self.busy, "has_new_line": False,
                            "n_remain": -1, "n_decoded": self.n_decoded}],
            "prompt": self.prompt, "generated": self.generated,
        }


@dataclass
class Params:
    n_predict: int
    default_length: bool
    stop: list[str]
    stream: bool
    include_usage: bool
    timings_per_token: bool
    return_tokens: bool
    cache_prompt: bool
    id_slot: int
    raw: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        seed = self.raw.get("seed")
        return {"n_predict": self.n_predict, "seed": -1 if seed is None else seed,
                "temperature": self.raw.get("temperature", 0.8), "top_k": self.raw.get("top_k", 40),
                "top_p": self.raw.get("top_p", 0.95), "min_p": self.raw.get("min_p", 0.05),
                "repeat_penalty": self.raw.get("repeat_penalty", 1.0), "stop": self.stop,
                "stream": self.stream, "grammar": "", "samplers": ["penalties", "dry", "top_n_sigma",
                "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"], "lora": []}


class Server:
    """All mutable state of the fake; runs on one asyncio loop (no locks needed)."""

    def __init__(self, opts: Options, sw: Switches, log: Log) -> None:
        self.opts, self.sw, self.log = opts, sw, log
        self.ready = False
        aliases = sorted(a for a in (opts.alias or "").split(",") if a)
        self.model_name = aliases[0] if aliases else (opts.model or "")
        self.aliases = aliases or [self.model_name]
        n_slots = opts.parallel if opts.parallel > 0 else 4
        unified = opts.kv_unified if opts.kv_unified is not None else opts.parallel <= 0
        self.n_ctx = _pad256(opts.ctx if opts.ctx > 0 else sw.n_ctx_train)
        n_ctx_seq = self.n_ctx if unified else _pad256(self.n_ctx // n_slots)
        if not unified:
            self.n_ctx = n_ctx_seq * n_slots
        self.kv_unified = unified
        self.n_ctx_slot = min(n_ctx_seq, sw.n_ctx_train)
        self.slots = [Slot(i, self.n_ctx_slot) for i in range(n_slots)]
        self._waiters: list[asyncio.Future[None]] = []
        self.next_task = 0
        self.deferred = 0
        self.media_marker = "<__media_" + "".join(random.choices(string.ascii_letters, k=16)) + "__>"
        self.m = {"prompt_tokens_total": 0, "prompt_seconds_total": 0.0, "tokens_predicted_total": 0,
                  "tokens_predicted_seconds_total": 0.0, "n_decode_total": 0, "n_tokens_max": 0,
                  "prompt_tokens_cached_total": 0}
        self.stopping = False

    # -- slots ---------------------------------------------------------------------------------

    def new_task_id(self) -> int:
        self.next_task += 1
        return self.next_task

    def _pick(self, id_slot: int) -> Slot | None:
        if id_slot >= 0:
            slot = self.slots[id_slot % len(self.slots)]
            return None if slot.busy else slot
        return next((s for s in self.slots if not s.busy), None)

    async def acquire(self, task_id: int, id_slot: int) -> Slot:
        slot = self._pick(id_slot)
        if slot is None:
            self.deferred += 1
            try:
                while (slot := self._pick(id_slot)) is None:
                    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    self._waiters.append(fut)
                    try:
                        await fut
                    finally:
                        self._waiters.remove(fut)
            finally:
                self.deferred -= 1
        slot.busy, slot.id_task, slot.n_decoded, slot.generated = True, task_id, 0, ""
        self.log.slot("I", "launch_slot_with_task", slot.id, task_id, "processing task")
        return slot

    def release(self, slot: Slot) -> None:
        if not slot.busy:
            return
        self.log.slot("I", "release", slot.id, slot.id_task,
                      f"stop processing: n_tokens = {len(slot.cache)}, truncated = 0")
        slot.busy, slot.id_task = False, -1
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        if not any(s.busy for s in self.slots):
            self.log.srv("I", "update_slots", "all slots are idle")

    # -- request parsing -----------------------------------------------------------------------

    def params(self, body: dict[str, Any], chat: bool = False) -> Params:
        n_predict: Any = None
        for key in ("n_predict", "max_completion_tokens", "max_tokens"):
            if body.get(key) is not None:
                n_predict = body[key]
                break
        if n_predict is not None and (not isinstance(n_predict, int) or isinstance(n_predict, bool)):
            raise ApiError(400, "invalid_request_error", "Field 'n_predict': must be an integer")
        if n_predict is not None and n_predict < -1:
            raise ApiError(400, "invalid_request_error", "Field 'n_predict': must be >= -1")
        default_length = False
        if n_predict is None or n_predict == -1:
            if self.opts.n_predict >= 0:
                n_predict = self.opts.n_predict
            else:
                n_predict, default_length = self.sw.default_tokens, True
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str) and s]
        stream_options = body.get("stream_options") or {}
        return Params(
            n_predict=n_predict, default_length=default_length, stop=stop,
            stream=bool(body.get("stream", False)),
            include_usage=bool(chat and stream_options.get("include_usage", False)),
            timings_per_token=bool(body.get("timings_per_token", False)),
            return_tokens=bool(body.get("return_tokens", False)),
            cache_prompt=body.get("cache_prompt", True) is not False,
            id_slot=int(body.get("id_slot", -1) if body.get("id_slot") is not None else -1),
            raw=body,
        )

    @staticmethod
    def prompt_tokens(prompt: Any) -> list[int]:
        if isinstance(prompt, str):
            return tokenize(prompt)
        if isinstance(prompt, list):
            out: list[int] = []
            for item in prompt:
                if isinstance(item, bool) or not isinstance(item, (int, str)):
                    raise ApiError(400, "invalid_request_error", "Prompt contains invalid tokens")
                out.extend(tokenize(item) if isinstance(item, str) else [item])
            return out
        if isinstance(prompt, dict) and isinstance(prompt.get("prompt_string"), str):
            if prompt.get("multimodal_data"):
                raise ApiError(400, "invalid_request_error",
                               "Multimodal data provided, but model does not support multimodal requests.")
            return tokenize(prompt["prompt_string"])
        raise ApiError(400, "invalid_request_error", "\"prompt\" must be a string, a list of tokens, "
                       "a list of mixed strings & tokens, or a list of prompts")

    @classmethod
    def split_prompts(cls, prompt: Any) -> list[list[int]]:
        """A list without any int is a list of prompts (server-common.cpp:972-1029)."""
        if isinstance(prompt, list) and prompt and not any(
                isinstance(x, int) and not isinstance(x, bool) for x in prompt):
            return [cls.prompt_tokens(p) for p in prompt]
        return [cls.prompt_tokens(prompt)]


def render_chat(messages: Any, add_generation_prompt: bool = True) -> str:
    if not isinstance(messages, list):
        raise ApiError(400, "invalid_request_error", "'messages' is required")
    out = []
    for msg in messages:
        if not isinstance(msg, dict) or "role" not in msg:
            raise ApiError(500, "server_error", "Failed to parse messages: Missing 'role' in message")
        content = msg.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        out.append(f"<|im_start|>{msg['role']}\n{content or ''}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

@dataclass
class Gen:
    """One completion task in a slot; `run` produces pieces through `emit`."""

    srv: Server
    slot: Slot
    task_id: int
    tokens: list[int]
    p: Params
    content: str = ""
    sent: int = 0
    n_decoded: int = 0
    out_tokens: list[int] = field(default_factory=list)
    stop_type: str = "none"
    stopping_word: str = ""
    truncated: bool = False
    cache_n: int = 0
    prompt_ms: float = 0.0
    gen_ms: float = 0.0

    def timings(self) -> dict[str, Any]:
        prompt_n = len(self.tokens) - self.cache_n
        pms, gms = max(self.prompt_ms, 1e-3), max(self.gen_ms, 1e-3)
        return {"cache_n": self.cache_n, "prompt_n": prompt_n, "prompt_ms": self.prompt_ms,
                "prompt_per_token_ms": self.prompt_ms / max(prompt_n, 1),
                "prompt_per_second": 1e3 / pms * prompt_n,
                "predicted_n": self.n_decoded, "predicted_ms": self.gen_ms,
                "predicted_per_token_ms": self.gen_ms / max(self.n_decoded, 1),
                "predicted_per_second": 1e3 / gms * self.n_decoded}

    def _flush_text(self, final: bool) -> str:
        """Return newly releasable text; detect stop strings; hold back partial matches."""
        for stop in self.p.stop:
            pos = self.content.find(stop, max(0, self.sent - len(stop)))
            if pos >= 0:
                self.content = self.content[:pos]
                self.stop_type, self.stopping_word = "word", stop
                final = True
        hold = 0
        if not final:
            for stop in self.p.stop:
                for k in range(min(len(stop) - 1, len(self.content) - self.sent), 0, -1):
                    if self.content.endswith(stop[:k]):
                        hold = max(hold, k)
                        break
        end = len(self.content) - hold
        text, self.sent = self.content[self.sent:end], max(self.sent, end)
        return text

    async def run(self, emit: Any) -> None:
        """emit(text, token_id) is awaited per decoded token (text may be "" while held back)."""
        srv, slot, sw = self.srv, self.slot, self.srv.sw
        t0 = time.perf_counter()
        if self.p.cache_prompt:
            common = 0
            for a, b in zip(slot.cache, self.tokens):
                if a != b:
                    break
                common += 1
            self.cache_n = min(common, max(len(self.tokens) - 1, 0))
        slot.prompt = "".join(piece(t) for t in self.tokens)
        slot.n_prompt = len(self.tokens)
        slot.cache = list(self.tokens)
        await asyncio.sleep(0)
        self.prompt_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        crash_after = sw.crash_after_tokens
        if crash_after == 0:
            crash(srv.log)
        while self.stop_type == "none":
            if self.n_decoded >= self.p.n_predict:
                self.stop_type = "eos" if self.p.default_length else "limit"
                break
            if len(self.tokens) + self.n_decoded >= slot.n_ctx:
                self.stop_type, self.truncated = "limit", True
                break
            if self.n_decoded and sw.token_interval > 0:
                await asyncio.sleep(sw.token_interval)
            tok = GEN_TOKEN_BASE + self.n_decoded
            self.n_decoded += 1
            slot.n_decoded = self.n_decoded
            self.out_tokens.append(tok)
            slot.cache.append(tok)
            self.content += piece(tok)
            text = self._flush_text(final=False)
            slot.generated = self.content
            self.gen_ms = (time.perf_counter() - t1) * 1e3
            if self.stop_type == "none" or text:
                await emit(text, tok)
            if crash_after is not None and self.n_decoded >= crash_after:
                crash(srv.log)
        tail = self._flush_text(final=True)
        if tail:
            await emit(tail, None)
        self.gen_ms = (time.perf_counter() - t1) * 1e3
        m = srv.m
        m["prompt_tokens_total"] += len(self.tokens) - self.cache_n
        m["prompt_tokens_cached_total"] += self.cache_n
        m["prompt_seconds_total"] += self.prompt_ms / 1e3
        m["tokens_predicted_total"] += self.n_decoded
        m["tokens_predicted_seconds_total"] += self.gen_ms / 1e3
        m["n_decode_total"] += self.n_decoded + 1
        m["n_tokens_max"] = max(m["n_tokens_max"], len(slot.cache))
        t = self.timings()
        for label, ms, n in (("prompt eval time", t["prompt_ms"], t["prompt_n"]),
                             ("       eval time", t["predicted_ms"], t["predicted_n"])):
            srv.log.slot("I", "print_timing", slot.id, self.task_id,
                         f"{label} = {ms:10.2f} ms / {n:5d} tokens ({ms / max(n, 1):8.2f} ms per token, "
                         f"{1e3 / max(ms, 1e-3) * n:8.2f} tokens per second)")
        srv.log.slot("I", "print_timing", slot.id, self.task_id,
                     f"      total time = {t['prompt_ms'] + t['predicted_ms']:10.2f} ms / "
                     f"{t['prompt_n'] + t['predicted_n']:5d} tokens")

    def final_native(self, stream: bool) -> dict[str, Any]:
        return {
            "index": 0, "content": "" if stream else self.content,
            "tokens": [] if stream or not self.p.return_tokens else self.out_tokens,
            "id_slot": self.slot.id, "stop": True, "model": self.srv.model_name,
            "tokens_predicted": self.n_decoded, "tokens_evaluated": len(self.tokens),
            "generation_settings": self.p.to_json(),
            "prompt": "".join(piece(t) for t in self.tokens), "has_new_line": "\n" in self.content,
            "truncated": self.truncated, "stop_type": self.stop_type,
            "stopping_word": self.stopping_word, "tokens_cached": len(self.slot.cache),
            "timings": self.timings(),
        }

    def usage(self) -> dict[str, Any]:
        return {"completion_tokens": self.n_decoded, "prompt_tokens": len(self.tokens),
                "total_tokens": self.n_decoded + len(self.tokens),
                "prompt_tokens_details": {"cached_tokens": self.cache_n}}

    def finish_reason(self) -> str:
        return "stop" if self.stop_type in ("eos", "word") else "length"


# ---------------------------------------------------------------------------------------------
# HTTP layer (aiohttp is imported lazily so that --version and bind errors stay fast)
# ---------------------------------------------------------------------------------------------

def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def build_app(srv: Server) -> Any:
    from aiohttp import web

    log = srv.log

    def jresp(obj: Any, status: int = 200) -> web.Response:
        return web.Response(body=dumps(obj), status=status, content_type="application/json", charset="utf-8")

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not srv.ready:
            return jresp({"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}, 503)
        if srv.opts.api_key and request.path not in ("/health", "/v1/health"):
            keys = srv.opts.api_key.split(",")
            auth = request.headers.get("Authorization", "")
            given = auth[7:] if auth.startswith("Bearer ") else request.headers.get("X-Api-Key", "")
            if given not in keys:
                log.srv("W", "operator()", "unauthorized: Invalid API Key")
                return jresp({"error": {"code": 401, "message": "Invalid API Key",
                                        "type": "authentication_error"}}, 401)
        conv = request.headers.get("X-Conversation-Id")
        if conv is not None:
            log.fake(f"X-Conversation-Id {conv}")
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return jresp({"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}, 404)
        except ApiError as e:
            return jresp(e.body, e.code)
        except json.JSONDecodeError as e:
            msg = f"[json.exception.parse_error.101] parse error at line {e.lineno}, column {e.colno}: {e.msg}"
            return jresp({"error": {"code": 500, "message": msg, "type": "server_error"}}, 500)
        except (TypeError, ValueError, AttributeError, KeyError) as e:  # bad field types in a body
            body = {"error": {"code": 400, "message": f"fake: {e}", "type": "invalid_request_error"}}
            log.srv("W", "operator()", f"got exception: {dumps(body).decode()}")
            return jresp(body, 400)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "llama.cpp"

    async def body_of(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        body = json.loads(raw.decode("utf-8", "replace") or "{}") if raw.strip() else {}
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request_error", "request body must be a JSON object")
        return body

    async def health(request: web.Request) -> web.Response:
        return jresp({"status": "ok"})

    async def props(request: web.Request) -> web.Response:
        if request.method == "POST":
            if not srv.opts.props:
                raise ApiError(501, "not_supported_error", "This server does not support changing global "
                               "properties. Start it with `--props`")
            return jresp({"success": True})
        return jresp({
            "default_generation_settings": {"params": srv.params({}).to_json(), "n_ctx": srv.n_ctx_slot},
            "total_slots": len(srv.slots), "model_alias": srv.model_name, "model_ftype": "F16",
            "model_path": srv.opts.model, "modalities": {"vision": False, "video": False, "audio": False},
            "media_marker": srv.media_marker, "endpoint_slots": srv.opts.slots,
            "endpoint_props": srv.opts.props, "endpoint_metrics": srv.opts.metrics, "ui": srv.opts.ui,
            "ui_settings": {}, "chat_template": CHATML_TEMPLATE,
            "chat_template_caps": {"supports_tools": False, "supports_system_role": True},
            "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "build_info": BUILD_INFO,
            "is_sleeping": False, "cors_proxy_enabled": False,
        })

    async def models(request: web.Request) -> web.Response:
        name = srv.model_name
        try:
            size = os.path.getsize(srv.opts.model or "")
        except OSError:
            size = 0
        return jresp({
            "models": [{"name": name, "model": name, "modified_at": "", "size": "", "digest": "",
                        "type": "model", "description": "", "tags": [""], "capabilities": ["completion"],
                        "parameters": "", "details": {"parent_model": "", "format": "gguf", "family": "",
                        "families": [""], "parameter_size": "", "quantization_level": ""}}],
            "object": "list",
            "data": [{"id": name, "aliases": srv.aliases, "tags": [], "object": "model",
                      "created": int(time.time()), "owned_by": "llamacpp",
                      "meta": {"vocab_type": 2, "n_vocab": 0x110000, "n_ctx": srv.n_ctx_slot,
                               "n_ctx_train": srv.sw.n_ctx_train, "n_embd": 8, "n_params": 1_000_000,
                               "size": size, "ftype": "F16"}}],
        })

    async def slots(request: web.Request) -> web.Response:
        if not srv.opts.slots:
            raise ApiError(501, "not_supported_error", "This server does not support slots endpoint. "
                           "Start it with `--slots`")
        if request.query.get("fail_on_no_slot") in ("1", "true") and all(s.busy for s in srv.slots):
            raise ApiError(503, "unavailable_error", "no slot available")
        return jresp([s.to_json() for s in srv.slots])

    async def metrics(request: web.Request) -> web.Response:
        if not srv.opts.metrics:
            raise ApiError(501, "not_supported_error",
                           "This server does not support metrics endpoint. Start it with `--metrics`")
        m, busy = srv.m, sum(s.busy for s in srv.slots)
        rows = [(k, "counter", v) for k, v in m.items() if k != "n_tokens_max"] + [
            ("n_tokens_max", "counter", m["n_tokens_max"]),
            ("prompt_tokens_seconds", "gauge", m["prompt_tokens_total"] / max(m["prompt_seconds_total"], 1e-9)),
            ("predicted_tokens_seconds", "gauge",
             m["tokens_predicted_total"] / max(m["tokens_predicted_seconds_total"], 1e-9)),
            ("requests_processing", "gauge", busy), ("requests_deferred", "gauge", srv.deferred),
            ("n_busy_slots_per_decode", "gauge", float(busy))]
        text = "".join(f"# HELP llamacpp:{k} {k}.\n# TYPE llamacpp:{k} {kind}\nllamacpp:{k} {v}\n"
                       for k, kind, v in rows)
        return web.Response(text=text, headers={"Content-Type": "text/plain; version=0.0.4",
                                                "Process-Start-Time-Unix": str(int(time.time() - time.monotonic() + _T0))})

    async def tokenize_h(request: web.Request) -> web.Response:
        body = await body_of(request)
        content = body.get("content")
        if content is None:
            return jresp({"tokens": []})
        toks = Server.prompt_tokens(content)
        if body.get("with_pieces"):
            return jresp({"tokens": [{"id": t, "piece": piece(t)} for t in toks]})
        return jresp({"tokens": toks})

    async def detokenize_h(request: web.Request) -> web.Response:
        body = await body_of(request)
        return jresp({"content": "".join(piece(int(t)) for t in body.get("tokens") or [])})

    async def apply_template(request: web.Request) -> web.Response:
        body = await body_of(request)
        return jresp({"prompt": render_chat(body.get("messages"), body.get("add_generation_prompt", True))})

    async def run_task(request: web.Request, tokens: list[int], p: Params, kind: str,
                       index: int, box: list[web.StreamResponse | None]) -> Gen:
        """Acquire a slot, generate, stream when asked (the stream response lives in box[0])."""
        if len(tokens) >= srv.n_ctx_slot:
            raise ApiError(400, "exceed_context_size_error",
                           f"request ({len(tokens)} tokens) exceeds the available context size "
                           f"({srv.n_ctx_slot} tokens), try increasing it",
                           n_prompt_tokens=len(tokens), n_ctx=srv.n_ctx_slot)
        task_id = srv.new_task_id()
        slot: Slot | None = None
        cmpl_id = "chatcmpl-" + "".join(random.choices(string.ascii_letters + string.digits, k=32))
        created = int(time.time())
        try:
            slot = await srv.acquire(task_id, p.id_slot)
            gen = Gen(srv, slot, task_id, tokens, p)
            if p.stream and box[0] is None:
                stream = web.StreamResponse(status=200, headers={
                    "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
                await stream.prepare(request)
                box[0] = stream
            resp = box[0]

            def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
                if kind == "chat":
                    choices = [] if delta is None else [{"finish_reason": finish, "index": index, "delta": delta}]
                    obj = "chat.completion.chunk"
                else:
                    choices = [{"text": (delta or {}).get("content", ""), "index": index,
                                "logprobs": None, "finish_reason": finish}]
                    obj = "text_completion"
                return {"choices": choices, "created": created, "id": cmpl_id, "model": srv.model_name,
                        "system_fingerprint": BUILD_INFO, "object": obj}

            async def emit(text: str, tok: int | None) -> None:
                if not p.stream or resp is None:
                    return
                events: list[dict[str, Any]] = []
                if kind == "native":
                    ev = {"index": index, "content": text, "tokens": [tok] if tok is not None else [],
                          "stop": False, "id_slot": -1, "tokens_predicted": gen.n_decoded,
                          "tokens_evaluated": len(tokens)}
                    events.append(ev)
                else:
                    if kind == "chat" and gen.n_decoded == 1 and tok is not None:
                        events.append(chunk({"role": "assistant", "content": None}))
                    if text:
                        events.append(chunk({"content": text}))
                if events and p.timings_per_token:
                    events[-1]["timings"] = gen.timings()
                for ev in events:
                    await resp.write(b"data: " + dumps(ev) + b"\n\n")

            await gen.run(emit)
            if p.stream and resp is not None:
                if kind == "native":
                    finals = [gen.final_native(stream=True)]
                else:
                    finals = [chunk({}, gen.finish_reason())]
                    if kind == "chat" and p.include_usage:
                        finals.append(chunk(None))
                        finals[-1]["usage"] = gen.usage()
                    elif kind == "text":
                        finals[-1]["usage"] = gen.usage()
                    finals[-1]["timings"] = gen.timings()
                for ev in finals:
                    await resp.write(b"data: " + dumps(ev) + b"\n\n")
            return gen
        except (asyncio.CancelledError, ConnectionError):
            log.srv("W", "stop", f"cancel task, id_task = {task_id}")
            raise
        finally:
            if slot is not None:
                srv.release(slot)

    async def completion_like(request: web.Request, kind: str) -> web.StreamResponse:
        body = await body_of(request)
        if kind == "chat":
            if body.get("messages") is None:
                raise ApiError(400, "invalid_request_error", "'messages' is required")
            prompts = [tokenize(render_chat(body["messages"], body.get("add_generation_prompt", True)))]
        else:
            if "prompt" not in body:
                raise ApiError(400, "invalid_request_error",
                               "[json.exception.out_of_range.403] key 'prompt' not found")
            prompts = Server.split_prompts(body["prompt"])
        p = srv.params(body, chat=kind == "chat")
        box: list[web.StreamResponse | None] = [None]
        results: list[Gen] = []
        try:
            for i, toks in enumerate(prompts):
                results.append(await run_task(request, toks, p, kind, i, box))
        except ConnectionError:
            if box[0] is None:
                raise
            return box[0]
        except ApiError as e:
            if box[0] is None:
                raise
            await box[0].write(b"data: " + dumps(e.body) + b"\n\n")
        resp = box[0]
        if resp is not None:
            if kind != "native":
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        if kind == "native":
            out = [g.final_native(stream=False) for g in results]
            for i, o in enumerate(out):
                o["index"] = i
            return jresp(out[0] if len(out) == 1 else out)
        g = results[0]
        if kind == "chat":
            return jresp({"choices": [{"finish_reason": g.finish_reason(), "index": 0,
                                       "message": {"role": "assistant", "content": g.content}}],
                          "created": int(time.time()), "model": srv.model_name,
                          "system_fingerprint": BUILD_INFO, "object": "chat.completion",
                          "usage": g.usage(), "id": "chatcmpl-" + "".join(
                              random.choices(string.ascii_letters + string.digits, k=32)),
                          "timings": g.timings()})
        return jresp({"choices": [{"text": g.content, "index": i, "logprobs": None,
                                   "finish_reason": r.finish_reason()} for i, r in enumerate(results)],
                      "created": int(time.time()), "model": srv.model_name, "system_fingerprint": BUILD_INFO,
                      "object": "text_completion", "usage": g.usage(),
                      "id": "chatcmpl-" + "".join(random.choices(string.ascii_letters + string.digits, k=32)),
                      "timings": g.timings()})

    async def completion(request: web.Request) -> web.StreamResponse:
        return await completion_like(request, "native")

    async def chat(request: web.Request) -> web.StreamResponse:
        return await completion_like(request, "chat")

    async def oai_completion(request: web.Request) -> web.StreamResponse:
        return await completion_like(request, "text")

    def embed(text: str) -> list[float | None]:
        digest = hashlib.sha256(text.encode()).digest()
        vec = [b / 255.0 - 0.5 for b in digest[:8]]
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        out: list[float | None] = [v / norm for v in vec]
        if srv.sw.embed_null:
            out[0] = None  # how llama-server's JSON writer prints a NaN or an Inf
        return out

    def embed_inputs(body: dict[str, Any], key: str) -> list[str]:
        inp = body.get(key)
        if inp is None or inp == "" or inp == []:
            raise ApiError(400, "invalid_request_error", "Input content cannot be empty")
        items = inp if isinstance(inp, list) and not any(isinstance(x, int) for x in inp) else [inp]
        return ["".join(piece(t) for t in Server.prompt_tokens(x)) for x in items]

    async def embeddings(request: web.Request) -> web.Response:
        if not srv.opts.embedding:
            raise ApiError(501, "not_supported_error",
                           "This server does not support embeddings. Start it with `--embeddings`")
        body = await body_of(request)
        oai = request.path == "/v1/embeddings" and "content" not in body
        texts = embed_inputs(body, "input" if oai or "content" not in body else "content")
        if oai:
            n = sum(len(t) for t in texts)
            return jresp({"model": body.get("model", srv.model_name), "object": "list",
                          "usage": {"prompt_tokens": n, "total_tokens": n},
                          "data": [{"embedding": embed(t), "index": i, "object": "embedding"}
                                   for i, t in enumerate(texts)]})
        return jresp([{"index": i, "embedding": [embed(t)]} for i, t in enumerate(texts)])

    async def rerank(request: web.Request) -> web.Response:
        if not srv.opts.rerank:
            raise ApiError(501, "not_supported_error",
                           "This server does not support reranking. Start it with `--reranking`")
        body = await body_of(request)
        query, docs = body.get("query"), body.get("documents") or body.get("texts")
        if not isinstance(query, str) or not docs:
            raise ApiError(400, "invalid_request_error", "\"query\" and \"documents\" must be provided")
        qwords = set(query.lower().split())
        scores = [len(qwords & set(str(d).lower().split())) / (len(qwords) or 1) for d in docs]
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: int(body.get("top_n") or len(docs))]
        n = len(query) + sum(len(str(d)) for d in docs)
        return jresp({"model": srv.model_name, "object": "list", "usage": {"prompt_tokens": n, "total_tokens": n},
                      "results": [{"index": i, "relevance_score": scores[i]} for i in order]})

    async def lora(request: web.Request) -> web.Response:
        return jresp({"success": True} if request.method == "POST" else [])

    app = web.Application(middlewares=[middleware], client_max_size=64 * 1024 * 1024)
    app.on_response_prepare.append(on_prepare)
    r = app.router
    for path in ("/health", "/v1/health"):
        r.add_get(path, health, allow_head=False)
    r.add_get("/props", props, allow_head=False)
    r.add_post("/props", props)
    for path in ("/models", "/v1/models"):
        r.add_get(path, models, allow_head=False)
    r.add_get("/slots", slots, allow_head=False)
    r.add_get("/metrics", metrics, allow_head=False)
    for path, h in (("/tokenize", tokenize_h), ("/detokenize", detokenize_h), ("/apply-template", apply_template),
                    ("/completion", completion), ("/completions", completion), ("/v1/completions", oai_completion),
                    ("/chat/completions", chat), ("/v1/chat/completions", chat),
                    ("/embedding", embeddings), ("/embeddings", embeddings), ("/v1/embeddings", embeddings),
                    ("/rerank", rerank), ("/reranking", rerank), ("/v1/rerank", rerank), ("/v1/reranking", rerank)):
        r.add_post(path, h)
    r.add_get("/lora-adapters", lora, allow_head=False)
    r.add_post("/lora-adapters", lora)
    return app


# ---------------------------------------------------------------------------------------------
# Process lifecycle
# ---------------------------------------------------------------------------------------------

def bind_sockets(opts: Options, log: Log) -> tuple[list[socket.socket], list[str]]:
    socks, addrs = [], []
    for host in [h for h in opts.host.split(",") if h] or ["127.0.0.1"]:
        try:
            if host.endswith(".sock"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(host)
                addrs.append(f"unix://{host}")
            else:
                family, _, _, _, sa = socket.getaddrinfo(host, opts.port, type=socket.SOCK_STREAM)[0]
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(sa)
                port = s.getsockname()[1]
                addrs.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
            s.listen(512)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            log.srv("E", "start", f"couldn't bind HTTP server socket, hostname: {host}, port: {opts.port}")
            log.srv("I", "operator()", "operator(): cleaning up before exit...")
            log.srv("E", "llama_server", "exiting due to HTTP server error")
            sys.exit(1)
    return socks, addrs


def _alive(pidfile: str | None) -> bool:
    """Whether the process whose pid ``pidfile`` holds is running (not a zombie)."""
    if pidfile is None:
        return False
    try:
        pid = int(open(pidfile).read().strip())
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def fail_load(log: Log, model: str, first_lines: list[str], code: int) -> None:
    for line in first_lines:
        log.err(line)
    log.err("llama_model_load_from_file_impl: failed to load model")
    log.srv("E", "load_model", f"failed to load model, '{model}'")
    log.srv("I", "operator()", "operator(): cleaning up before exit...")
    log.srv("E", "llama_server", "exiting due to model loading error")
    os._exit(code)


async def serve(opts: Options, sw: Switches, log: Log, socks: list[socket.socket], addrs: list[str]) -> int:
    import logging

    from aiohttp import web

    for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.internal"):
        logging.getLogger(name).disabled = True
    srv = Server(opts, sw, log)
    runner = web.AppRunner(build_app(srv), handle_signals=False, access_log=None, handler_cancellation=True,
                           shutdown_timeout=0.1)
    await runner.setup()
    for s in socks:
        await web.SockSite(runner, s).start()

    model = opts.model or ""
    log.srv("I", "load_model", f"loading model '{model}'")
    if sw.load_forever:
        await asyncio.Event().wait()
    half = max(sw.load_seconds, 0.0) / 2
    if not os.path.isfile(model):
        fail_load(log, model, [f"gguf_init_from_file: failed to open GGUF file '{model}' (No such file or directory)",
                               f"llama_model_load: error loading model: llama_model_loader: failed to load "
                               f"model from {model}"], 1)
    await asyncio.sleep(half)
    if sw.exit_on_load is not None:
        fail_load(log, model, ["llama_model_load: error loading model: fake failure"], sw.exit_on_load)
    log.trc(f"llama_model_loader: loaded meta data with 24 key-value pairs and 3 tensors from {model} "
            "(version GGUF V3 (latest))")
    log.trc(f"print_info: file size   = {sw.model_mib:.2f} MiB (16.00 BPW) ")
    log.trc("load_tensors: loading model tensors, this can take a while... (mmap = true, direct_io = false)")
    log.trc(f"load_tensors: {'CPU_Mapped':>12} model buffer size = {sw.model_mib:8.2f} MiB")
    await asyncio.sleep(half)
    if (sw.oom_above_ctx is not None and srv.n_ctx > sw.oom_above_ctx) or _alive(sw.oom_while_running):
        size = srv.n_ctx * 1024
        fail_load(log, model, [f"ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size {size}",
                               "llama_init_from_model: failed to initialize the context: failed to allocate buffer "
                               "for kv cache"], 1)
    for key, value in (("n_seq_max", len(srv.slots)), ("n_ctx", srv.n_ctx),
                       ("n_ctx_seq", srv.n_ctx if srv.kv_unified else srv.n_ctx_slot),
                       ("n_batch", 2048), ("n_ubatch", 512), ("flash_attn", "auto"),
                       ("kv_unified", str(srv.kv_unified).lower())):
        log.trc(f"llama_context: {key:<21} = {value}")
    log.trc(f"llama_context: {'CPU':>10}  output buffer size = {0.12:8.2f} MiB")
    log.trc(f"llama_kv_cache: {'CPU':>10} KV buffer size = {sw.kv_mib:8.2f} MiB")
    log.trc(f"llama_kv_cache: size = {sw.kv_mib:7.2f} MiB ({srv.n_ctx:6d} cells,   2 layers, "
            f"{len(srv.slots):2d}/{1 if srv.kv_unified else len(srv.slots)} seqs), K (f16): "
            f"{sw.kv_mib / 2:7.2f} MiB, V (f16): {sw.kv_mib / 2:7.2f} MiB")
    log.trc(f"sched_reserve: {'CPU':>10} compute buffer size = {sw.compute_mib:8.2f} MiB")
    log.srv("I", "load_model", f"initializing, n_slots = {len(srv.slots)}, n_ctx_slot = {srv.n_ctx_slot}, "
                               f"kv_unified = '{str(srv.kv_unified).lower()}'")
    srv.ready = True
    log.srv("I", "llama_server", "model loaded")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if sw.ignore_sigterm:
            log.fake("ignoring SIGTERM")
            return
        if srv.stopping:
            log.write("Received second interrupt, terminating immediately.\n")
            os._exit(1)
        srv.stopping = True
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, on_signal)
    loop.add_signal_handler(signal.SIGINT, on_signal)
    for addr in addrs:
        log.srv("I", "llama_server", f"listening on {addr}")
        if addr.endswith(":8080"):
            log.srv("W", "llama_server", "notice: server default port will be changed to :9931 in a future "
                                         "release (ref: https://github.com/ggml-org/llama.cpp/pull/26508)")
    if os.environ.get("LLAMA_SERVER_ROUTER_PORT") is not None:
        threading.Thread(target=watch_stdin, args=(log,), daemon=True).start()
    log.srv("I", "update_slots", "all slots are idle")
    await stop.wait()
    log.srv("I", "operator()", "operator(): cleaning up before exit...")
    try:
        await asyncio.wait_for(runner.cleanup(), timeout=0.3)
    except (asyncio.TimeoutError, Exception):
        pass
    return 0


def watch_stdin(log: Log) -> None:
    log.srv("I", "operator()", "child server monitoring thread started, waiting for EOF on stdin...")
    try:
        while sys.stdin.buffer.readline():
            pass
    except (OSError, ValueError, AttributeError):
        pass
    log.srv("I", "operator()", "EOF on stdin detected, forcing shutdown...")
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    if opts.version:
        sys.stderr.write(f"{VERSION_LINE}\nbuilt with GNU 12.2.0 for Linux x86_64\n")
        return 0
    if opts.help:
        sys.stdout.write("usage: llama-server [options]\n(fake llama-server: see the module docstring)\n")
        return 0
    sw = Switches.from_env(dict(os.environ))
    log = Log(opts.verbosity, opts.log_prefix, opts.log_timestamps)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # until loaded, signals kill, like the real one
    if sw.ignore_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: log.fake("ignoring SIGTERM"))
    if sw.pidfile:
        with open(sw.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    log.fake(f"argv {shlex.join(argv)}")
    for name in sorted(os.environ):
        if name.startswith("LLAMA_ARG_") or name in ("LLAMA_SERVER_ROUTER_PORT", "LLAMA_API_KEY"):
            log.fake(f"env {name}={os.environ[name]}")
    if sw.child:
        import subprocess
        child = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        log.fake(f"child pid {child.pid}")
    log.srv("I", "llama_server", "initializing ...")
    log.trc("cmn  common_param: common_params_print_info: build 1 (0c1e570) with GNU 12.2.0 for Linux x86_64")
    log.inf(f"cmn  common_param: common_params_print_info: verbosity = {opts.verbosity} "
            "(adjust with the `-lv N` CLI arg)")
    log.trc(f"cmn  common_param: system_info: n_threads = {opts.threads} (n_threads_batch = {opts.threads}) / {os.cpu_count()} "
            "| CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | ")
    if not opts.model:
        log.err("fake: no -m given; router mode is not imitated")
        return 1
    socks, addrs = bind_sockets(opts, log)
    if not opts.ui:
        log.srv("I", "init", "The UI is disabled")
    return asyncio.run(serve(opts, sw, log, socks, addrs))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
