"""``llamasup run MODEL [PROMPT]``: talk to a model, as ``ollama run`` does, through the HTTP API.

Steps: ``/api/show`` (a 404 pulls the model with progress, then shows again); an embedding model
prints the vector of the prompt (``/api/embed``); otherwise the session is interactive when no prompt
was given and both stdin and stdout are terminals, and a single ``/api/generate`` otherwise (stdin,
when it is not a terminal, is read to the end and put before the prompt words).

The command is synchronous at the top and runs one ``asyncio.Runner`` for its whole life; the API
session is opened in that runner's loop and used by every step (``runner.run`` per step), so the REPL
can read lines with GNU readline between steps. Ctrl+C while an answer streams is the runner's
SIGINT handling: the step's task is cancelled (we yield to the loop after each chunk so that happens
promptly), ``runner.run`` raises ``KeyboardInterrupt``, the partial answer is dropped (Ollama keeps
the question but not the answer), and the prompt comes back. Outside an answer Ctrl+C ends the
command with status 130; at the prompt it prints a hint, as Ollama does.

Every error ends the command with one ``Error: <message>`` line on stderr and status 1, except those
Ollama reports and carries on from in the REPL (a model that cannot think, an unknown ``/load``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ..durations import DurationError, parse_go_duration
from ..errors import LlamasupError
from ..gojson import dumps
from .api import Api
from .chat_loop import ChatLoop
from .commands import pull
from .display import AnswerView, terminal_width
from .humanize import verbose_stats
from .interactive import (Session, chat_body, generate_body, infer_think, media_extensions, media_paths, remove_path,
                          sniff_media)  # fmt: skip
from .progress import spinning

T = TypeVar("T")
THINK_LEVELS = ("high", "medium", "low", "max")
MAX_MEDIA_BYTES = 100 * 1024 * 1024  # Ollama's limit for one attached file


@dataclass
class RunArgs:
    model: str
    prompt: list[str]  # words after MODEL
    format: str = ""  # --format json (or a JSON schema string)
    keepalive: str = ""  # --keepalive 5m (Go duration string, validated as Ollama does)
    verbose: bool = False  # --verbose
    insecure: bool = False  # --insecure
    nowordwrap: bool = False  # --nowordwrap
    think: str | None = None  # --think (None: not given; "true"/"false"/"high"/"medium"/"low")
    hidethinking: bool = False  # --hidethinking
    truncate: bool | None = None  # --truncate (embedding models)
    dimensions: int = 0  # --dimensions N (embedding models)


def run_command(
    base_url: str,
    args: RunArgs,
    *,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    env: Mapping[str, str],
) -> int:
    """Exit status: 0, 1 after printing 'Error: <message>' on stderr, 130 on Ctrl+C outside an answer.

    ``env`` (the process environment, passed by ``cli.py``) is read for ``OLLAMA_NOHISTORY`` only."""
    try:
        think = think_flag(args.think)
        keep_alive = keep_alive_value(args.keepalive)
        words = list(args.prompt)
        interactive = not words and stdin.isatty() and stdout.isatty()
        if not stdin.isatty():
            piped = stdin.read()
            if piped:
                words.insert(0, piped)
        with asyncio.Runner() as runner:
            return Run(runner, base_url, args, stdout, stderr).main(
                " ".join(words), interactive, think, keep_alive, history=not go_bool(env.get("OLLAMA_NOHISTORY", ""))
            )
    except LlamasupError as e:
        stdout.flush()
        stderr.write(f"Error: {e.message}\n")
        return 1
    except KeyboardInterrupt:
        stdout.flush()
        return 130


# -- flags --------------------------------------------------------------------------------------------------


def think_flag(value: str | None) -> bool | str | None:
    """``--think`` as sent: None when not given, a bool, or a level."""
    if value is None:
        return None
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in THINK_LEVELS:
        return value
    raise LlamasupError(f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)')


def keep_alive_value(text: str) -> str | int | None:
    """``--keepalive`` as sent: checked as Go's ``time.ParseDuration``; a negative one means forever
    (-1), as Ollama's client encodes it."""
    if not text:
        return None
    try:
        seconds = parse_go_duration(text)
    except DurationError as e:
        raise LlamasupError(str(e)) from None
    return -1 if seconds < 0 else text


def go_bool(value: str) -> bool:
    """An Ollama boolean variable: unset or false-like is false; anything else set is true."""
    return value.strip() not in ("", "0", "f", "F", "false", "FALSE", "False")


# -- the command ----------------------------------------------------------------------------------------------


class Run:
    """One ``run``: the runner, the API session opened in its loop, the streams and the flags."""

    def __init__(self, runner: asyncio.Runner, base_url: str, args: RunArgs, stdout: TextIO, stderr: TextIO) -> None:
        self.runner = runner
        self.api = Api(base_url)
        self.args = args
        self.out = stdout
        self.err = stderr

    def step(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step in the session's loop (a Ctrl+C in it raises ``KeyboardInterrupt`` here)."""
        return self.runner.run(coro)

    def main(self, prompt: str, interactive: bool, think: bool | str | None, keep_alive: str | int | None, *, history: bool) -> int:
        self.runner.run(self.api.__aenter__())
        try:
            show = self.step(self._show_or_pull())
            caps = list(show.get("capabilities") or [])
            if "embedding" in caps and "completion" not in caps:
                if not prompt:
                    raise LlamasupError(f'embedding models require input text. Usage: llamasup run {self.args.model} "your text here"')
                self.step(self._embed(prompt, keep_alive))
                return 0
            session = Session(
                model=self.args.model,
                capabilities=tuple(caps),
                media_extensions=media_extensions(show),
                parent_model=str((show.get("details") or {}).get("parent_model") or ""),
                format=self.args.format,
                think=infer_think(think, self.args.think is not None, caps),
                think_explicit=self.args.think is not None,
                hide_thinking=self.args.hidethinking,
                wordwrap=not self.args.nowordwrap,
                verbose=self.args.verbose,
                history=history,
                keep_alive=keep_alive,
            )
            if interactive:
                return ChatLoop(self, session).loop(show)
            try:
                self.step(self._generate(session, prompt))
            except KeyboardInterrupt:
                pass  # Ollama ends quietly when the answer is interrupted
            return 0
        finally:
            with contextlib.suppress(BaseException):
                self.runner.run(self.api.__aexit__(None, None, None))

    async def _show_or_pull(self) -> dict[str, Any]:
        try:
            return await self.api.show(self.args.model)
        except LlamasupError as e:
            if e.status != 404:
                raise
        await pull(self.api, self.args.model, insecure=self.args.insecure, err=self.err)
        return await self.api.show(self.args.model)

    async def _embed(self, text: str, keep_alive: str | int | None) -> None:
        body: dict[str, Any] = {"model": self.args.model, "input": text}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if self.args.truncate is not None:
            body["truncate"] = self.args.truncate
        if self.args.dimensions > 0:
            body["dimensions"] = self.args.dimensions
        embeddings = (await self.api.call("POST", "/api/embed", body)).get("embeddings") or []
        if not embeddings:
            raise LlamasupError("no embeddings returned")
        self.out.write(dumps(embeddings[0]).decode() + "\n")

    async def _generate(self, session: Session, prompt: str) -> None:
        """One answer to ``prompt``, printed as it arrives, then a blank line; stats on stderr."""
        images: list[str] = []
        if session.multimodal:
            prompt, images = self.attach(prompt, session.media_extensions)
        body = generate_body(session, prompt, images)
        plain = not self.out.isatty()
        # Wrapping writes cursor movements, so only a terminal gets it.
        view = AnswerView(width=terminal_width(), wrap=session.wordwrap and not plain, plain=plain,
                          hide_thinking=session.hide_thinking)  # fmt: skip
        last = await self.stream("/api/generate", body, view, _generate_parts)
        if prompt:
            self.out.write("\n\n")
            self.out.flush()
        if last.get("done") and session.verbose:
            self.err.write(verbose_stats(last))

    async def chat(self, session: Session) -> dict[str, Any]:
        """One answer to the conversation; returns the assistant message to keep."""
        view = AnswerView(width=terminal_width(), wrap=session.wordwrap, plain=False, hide_thinking=session.hide_thinking)
        last = await self.stream("/api/chat", chat_body(session), view, _chat_parts)
        if session.messages:
            self.out.write("\n\n")
            self.out.flush()
        if session.verbose:
            self.err.write(verbose_stats(last))
        role = str((last.get("message") or {}).get("role") or "assistant")
        reply: dict[str, Any] = {"role": role, "content": view.content}
        if view.thinking:
            reply["thinking"] = view.thinking
        return reply

    async def stream(
        self, path: str, body: dict[str, Any], view: AnswerView, parts: Callable[[dict[str, Any]], tuple[str, str, list[Any]]]
    ) -> dict[str, Any]:
        """Stream an answer into ``view`` with a spinner on stderr until something shows; returns the
        last object (the one with the metrics)."""
        last: dict[str, Any] = {}
        async with spinning(self.err) as spinner:
            try:
                async for msg in self.api.stream(path, body):
                    last = msg
                    thinking, content, calls = parts(msg)
                    if view.shows(thinking, content, calls):
                        spinner.stop()
                    if text := view.chunk(thinking, content, calls):
                        self.out.write(text)
                        self.out.flush()
                    await asyncio.sleep(0)  # a Ctrl+C (this task's cancellation) lands between chunks
            except asyncio.CancelledError:
                spinner.stop()
                self.out.write(view.interrupted())
                self.out.flush()
                raise
            except LlamasupError:
                if view.wrote:  # the error line (on stderr) should not continue the answer's line
                    self.out.write("\n")
                    self.out.flush()
                raise
        return last

    async def load(self, session: Session) -> None:
        """Load the model with a spinner: ``/api/generate`` with no prompt."""
        body: dict[str, Any] = {"model": session.model}
        if session.keep_alive is not None:
            body["keep_alive"] = session.keep_alive
        if session.think is not None:
            body["think"] = session.think
        async with spinning(self.err):
            async for _ in self.api.stream("/api/generate", body):
                pass

    def attach(self, text: str, extensions: tuple[str, ...]) -> tuple[str, list[str]]:
        """The prompt without the paths of the files it names, and those files base64-encoded
        (``Added image '<path>'`` on stderr for each). Paths that do not exist stay in the text."""
        files: list[str] = []
        for raw, path in media_paths(text, extensions):
            try:
                data = _read_media(Path(path))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                message = _os_message(path, e) if isinstance(e, OSError) else str(e)
                self.err.write(f'Couldn\'t process file: "{message}"\n')
                raise LlamasupError(message) from None
            kind = "audio" if path.lower().endswith(".wav") else "image"
            self.err.write(f"Added {kind} '{path}'\n")
            text = remove_path(text, raw, path)
            files.append(base64.b64encode(data).decode())
        return text.strip(), files


def _generate_parts(msg: dict[str, Any]) -> tuple[str, str, list[Any]]:
    return str(msg.get("thinking") or ""), str(msg.get("response") or ""), list(msg.get("tool_calls") or [])


def _chat_parts(msg: dict[str, Any]) -> tuple[str, str, list[Any]]:
    message = msg.get("message") or {}
    return str(message.get("thinking") or ""), str(message.get("content") or ""), list(message.get("tool_calls") or [])


def _read_media(path: Path) -> bytes:
    with path.open("rb") as f:
        head = f.read(512)
        if not head:
            raise ValueError("EOF")
        kind = sniff_media(head)
        if kind not in ("image/jpeg", "image/png", "image/webp", "audio/wave"):
            raise ValueError(f"invalid file type: {kind}")
        if os.fstat(f.fileno()).st_size > MAX_MEDIA_BYTES:
            raise ValueError("file size exceeds maximum limit (100MB)")
        return head + f.read()


def _os_message(path: str, e: OSError) -> str:
    reason = e.strerror or str(e)
    return f"open {path}: {reason[:1].lower()}{reason[1:]}"
