"""The interactive ``llamasup run`` session: lines read with GNU readline (Ollama's history file),
handed to ``Repl`` (``interactive.py``, pure) which says what to do, and the I/O each step asks for
(an answer streamed through ``Run``, ``/show``, ``/load``, ``/save``, ``/list``).

A Ctrl+C while a step runs stops that step (``Run.step`` raises ``KeyboardInterrupt``) and the prompt
comes back; at the prompt it prints Ollama's hint; Ctrl+D ends the session.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import LlamasupError
from ..store.names import ModelName
from .commands import list_models
from .display import WordWrap, show_text, terminal_width
from .interactive import (INTERRUPT_HINT, Exit, ListModels, Load, Repl, Save, Say, Send, Session, Show, Step,
                          create_body, infer_think, media_extensions)  # fmt: skip
from .show import show_info

if TYPE_CHECKING:
    from .run import Run



class _LineReader:
    """Lines from the terminal through GNU readline, with Ollama's history file (``~/.ollama/history``,
    the last 100 entries). Every line goes into the in-memory history; the file is written only while
    history is on (``/set history``; off with ``OLLAMA_NOHISTORY``). Without a readline module input
    still works, without editing or history."""

    LIMIT = 100

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:
            self._readline: ModuleType | None = None
            return
        self._readline = readline
        readline.set_history_length(self.LIMIT)
        with contextlib.suppress(OSError):
            readline.read_history_file(self.file)

    @property
    def file(self) -> Path:
        return Path.home() / ".ollama" / "history"

    def read(self, prompt: str, *, save: bool) -> str:
        line = input(prompt)
        if line and save and self._readline is not None:
            with contextlib.suppress(OSError):
                self.file.parent.mkdir(parents=True, exist_ok=True)
                self._readline.write_history_file(self.file)
        return line


class ChatLoop:
    """The REPL driver: reads lines, lets ``Repl`` decide, and does the I/O each step asks for."""

    def __init__(self, run: Run, session: Session) -> None:
        self.run_ = run
        self.repl = Repl(session)
        self.out = run.out
        self.err = run.err

    @property
    def session(self) -> Session:
        return self.repl.session

    def loop(self, show: dict[str, Any]) -> int:
        self.run_.step(self.run_.load(self.session))
        self._print_messages(show.get("messages") or [])
        reader = _LineReader()
        while True:
            try:
                line = reader.read(self.repl.prompt, save=self.session.history)
            except EOFError:
                self.out.write("\n")
                return 0
            except KeyboardInterrupt:
                self.out.write(f"\n{INTERRUPT_HINT}\n")
                self.out.flush()
                self.repl.interrupt()
                continue
            step = self.repl.feed(line)
            if step is None:
                continue
            if isinstance(step, Exit):
                return 0
            try:
                self._do(step)
            except KeyboardInterrupt:
                self.out.flush()  # the answer (or the call) was stopped; back to the prompt

    def _print_messages(self, messages: list[dict[str, Any]]) -> None:
        """The conversation stored with the model (``MESSAGE`` lines), as if it had just happened."""
        for msg in messages:
            if msg.get("role") == "user":
                self.out.write(f">>> {msg.get('content', '')}\n")
            elif msg.get("role") == "assistant":
                wrap = WordWrap(terminal_width(), enabled=self.session.wordwrap)
                self.out.write(wrap.feed(str(msg.get("content") or "")) + "\n\n")
        self.out.flush()

    def _do(self, step: Step) -> None:
        if isinstance(step, Say):
            self.err.write(step.err)
            self.err.flush()
            self.out.write(step.out)
            self.out.flush()
        elif isinstance(step, Send):
            self._send(step.text)
        elif isinstance(step, Show):
            self._show(step.topic)
        elif isinstance(step, Load):
            self._load(step.model)
        elif isinstance(step, Save):
            self._save(step.model)
        elif isinstance(step, ListModels):
            self.run_.step(list_models(self.run_.api, step.prefix or None, self.out))

    def _send(self, text: str) -> None:
        s = self.session
        message: dict[str, Any] = {"role": "user", "content": text}
        if s.multimodal:
            message["content"], images = self.run_.attach(text, s.media_extensions)
            if images:
                message["images"] = images
        s.messages.append(message)
        try:
            reply = self.run_.step(self.run_.chat(s))
        except LlamasupError as e:
            if "does not support thinking" in e.message or "invalid think value" in e.message:
                self.out.write(f"error: {e.message}\n")
                return
            raise
        s.messages.append(reply)

    def _show(self, topic: str) -> None:
        s = self.session
        body: dict[str, Any] = {"model": s.model}
        if s.system:
            body["system"] = s.system
        if s.options:
            body["options"] = s.options
        try:
            resp = self.run_.step(self.run_.api.call("POST", "/api/show", body))
        except LlamasupError:
            self.out.write("error: couldn't get model\n")
            raise
        if topic == "info":
            self.err.write(show_info(resp, False))
        else:
            self.out.write(show_text(topic, resp, s.system, s.options))
        self.out.flush()

    def _load(self, model: str) -> None:
        """``/load``: switch model, starting a new conversation; an unknown model changes nothing."""
        self.out.write(f"Loading model '{model}'\n")
        self.out.flush()
        try:
            show = self.run_.step(self.run_.api.show(model))
        except LlamasupError as e:
            if "not found" not in e.message:
                raise
            self.out.write(f"Couldn't find model '{model}'\n")
            return
        new = self.session.copy()
        caps = list(show.get("capabilities") or [])
        new.model, new.messages = model, []
        new.capabilities, new.media_extensions = tuple(caps), media_extensions(show)
        new.parent_model = str((show.get("details") or {}).get("parent_model") or "")
        new.think = infer_think(new.think, new.think_explicit, caps)
        try:
            self.run_.step(self.run_.load(new))
        except LlamasupError as e:
            if "not found" in e.message:
                self.out.write(f"Couldn't find model '{model}'\n")
                return
            if "does not support thinking" in e.message:
                self.out.write(f"error: {e.message}\n")
                return
            raise
        self.repl.session = new

    def _save(self, name: str) -> None:
        """``/save``: a new model made of this one plus the session's system, parameters and messages."""
        s = self.session
        body = create_body(name, s, ModelName.try_parse(s.parent_model) is not None)

        async def create() -> None:
            async for _ in self.run_.api.stream("/api/create", body):
                pass

        try:
            self.run_.step(create())
        except LlamasupError as e:
            if "invalid model name" not in e.message:
                raise
            self.out.write(f"error: The model name '{name}' is invalid\n")
            return
        self.out.write(f"Created new model '{name}'\n")
        self.out.flush()
