"""The interactive session of ``llamasup run``, as a pure state machine: what each typed line does.

``Repl.feed`` takes one line as the terminal returned it and answers with one step: text to print
(``Say``), a message to send (``Send``), an action that needs the server (``Show``, ``Load``, ``Save``,
``ListModels``), ``Exit``, or ``None`` when nothing happens yet (an empty line, or a multi-line
message still open). Settings that need no server (``/set …``, ``/clear``) change the ``Session``
right here. The driver in ``chat_loop.py`` does the I/O; keeping the decisions here lets them be tested
line by line.

Behaviour follows Ollama's ``generateInteractive``:

* ``\"\"\"`` at the start of a line opens a multi-line message, closed by a line that ends with
  ``\"\"\"``; the lines are joined with newlines (the prompt is ``... `` meanwhile).
  ``/set system \"\"\"…`` does the same for the system message.
* Commands are recognised by prefix, as Ollama does (``/bye`` and ``/byebye`` both exit), and are
  only looked for outside a multi-line message.
* A line starting with ``/`` that is no command is an error, except for a model that takes images
  or audio when the line is a file path (``/tmp/cat.png what is this?``).
* Help goes to stderr, confirmations and ``/show`` output to stdout, as Ollama's do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..errors import ModelfileError
from ..modelfile.parser import go_quote, parse_parameter
from ..protocol.ollama import BOOL_OPTIONS, FLOAT_OPTIONS, INT_OPTIONS
from .display import HELP_PARAMETERS, HELP_SET, HELP_SHORTCUTS, HELP_SHOW, help_text

Message = dict[str, Any]
Think = bool | str | None

PROMPT = ">>> "
CONTINUATION = "... "
TRIPLE = '"""'
INTERRUPT_HINT = "Use Ctrl + d or /bye to exit."
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
AUDIO_EXTENSIONS = ("wav",)
SHOW_TOPICS = ("info", "license", "modelfile", "parameters", "system", "template")
KNOWN_PARAMETERS = INT_OPTIONS | FLOAT_OPTIONS | BOOL_OPTIONS | {"stop"}

# -- the session ------------------------------------------------------------------------------------------


@dataclass
class Session:
    """What the conversation sends with each message, and the display switches."""

    model: str
    capabilities: tuple[str, ...] = ()
    media_extensions: tuple[str, ...] = ()  # file types found in prompts and attached
    parent_model: str = ""
    system: str = ""
    messages: list[Message] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    format: str = ""
    think: Think = None
    think_explicit: bool = False  # set by --think or /set think: kept across /load
    hide_thinking: bool = False
    wordwrap: bool = True
    verbose: bool = False
    history: bool = True
    keep_alive: str | int | None = None

    @property
    def multimodal(self) -> bool:
        return bool(self.media_extensions)

    def copy(self) -> Session:
        return replace(self, messages=[dict(m) for m in self.messages], options=dict(self.options))

    def clear(self) -> None:
        """Forget the conversation; the system message (if set) stays as its first message."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def set_system(self, text: str) -> None:
        """A new system message replaces a system message that is the last message, else is added."""
        self.system = text
        message: Message = {"role": "system", "content": text}
        if self.messages and self.messages[-1].get("role") == "system":
            self.messages[-1] = message
        else:
            self.messages.append(message)


def media_extensions(show: dict[str, Any]) -> tuple[str, ...]:
    """File types a model takes from ``/api/show``: images for vision models (a projector, the
    ``vision`` capability, or vision keys in its GGUF), audio for the ``audio`` capability."""
    caps = show.get("capabilities") or []
    info = show.get("model_info") or {}
    vision = "vision" in caps or bool(show.get("projector_info")) or any(".vision." in k for k in info)
    return (IMAGE_EXTENSIONS if vision else ()) + (AUDIO_EXTENSIONS if "audio" in caps else ())


def infer_think(explicit: Think, is_explicit: bool, capabilities: Sequence[str]) -> Think:
    """``think`` to send: the user's choice, else ``True`` for a model that can think, else nothing."""
    if is_explicit:
        return explicit
    return True if "thinking" in capabilities else None


# -- parameters -------------------------------------------------------------------------------------------


class ParameterError(ValueError):
    """A ``/set parameter`` the options do not accept; ``str()`` is Ollama's message."""


def parameter_value(name: str, values: Sequence[str]) -> Any:
    """The typed value of ``/set parameter <name> <values…>``: every value for ``stop``, the first
    otherwise, checked as Ollama's ``FormatParams`` does."""
    if name not in KNOWN_PARAMETERS:
        raise ParameterError(f"unknown parameter '{name}'")
    if name == "stop":
        return list(values)
    try:
        return parse_parameter(name, values[0])
    except ModelfileError:
        kind = "int" if name in INT_OPTIONS else "float" if name in FLOAT_OPTIONS else "bool"
        raise ParameterError(f"invalid {kind} value [{' '.join(values)}]") from None


# -- file paths in prompts --------------------------------------------------------------------------------

_UNESCAPE = re.compile(r"\\([ ()\[\]{}$&;'\\*?~])")


def media_paths(text: str, extensions: Sequence[str]) -> list[tuple[str, str]]:
    """``(as written, as a path)`` for every file path in ``text`` with one of ``extensions``: starting
    with ``/``, ``./`` or ``\\`` (or a drive letter), spaces allowed (escaped or not), shell escapes
    such as ``\\ `` and ``\\(`` undone."""
    if not extensions:
        return []
    pattern = r"(?:[a-zA-Z]:)?(?:\./|/|\\)[^\t\n\f\r]+?\.(?i:" + "|".join(map(re.escape, extensions)) + r")\b"
    return [(raw, _UNESCAPE.sub(r"\1", raw)) for raw in re.findall(pattern, text)]


def remove_path(text: str, raw: str, path: str) -> str:
    """``text`` without an attached file's path (quoted or not)."""
    for spelled in (f"'{path}'", f"'{raw}'", raw):
        text = text.replace(spelled, "")
    return text


def sniff_media(head: bytes) -> str:
    """The content type of a file from its first bytes: the four Ollama accepts (JPEG, PNG, WebP, WAV),
    else a generic name for the error message."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:14] == b"WEBPVP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wave"
    try:
        head.decode()
        return "text/plain; charset=utf-8"
    except UnicodeDecodeError:
        return "application/octet-stream"


# -- requests ---------------------------------------------------------------------------------------------


def request_format(fmt: str) -> Any:
    """``format`` as sent: ``"json"``, a JSON schema (given as JSON text), or nothing. Text that is not
    JSON is sent as it is, so the server names the problem."""
    if not fmt:
        return None
    if fmt == "json":
        return "json"
    try:
        return json.loads(fmt)
    except ValueError:
        return fmt


def chat_body(session: Session) -> dict[str, Any]:
    """The ``/api/chat`` request for the conversation so far."""
    body: dict[str, Any] = {"model": session.model, "messages": session.messages}
    if (fmt := request_format(session.format)) is not None:
        body["format"] = fmt
    if session.options:
        body["options"] = session.options
    if session.think is not None:
        body["think"] = session.think
    if session.keep_alive is not None:
        body["keep_alive"] = session.keep_alive
    return body


def generate_body(session: Session, prompt: str, images: list[str]) -> dict[str, Any]:
    """The ``/api/generate`` request of a one-shot ``run`` (images base64-encoded)."""
    body: dict[str, Any] = {"model": session.model, "prompt": prompt}
    if images:
        body["images"] = images
    if (fmt := request_format(session.format)) is not None:
        body["format"] = fmt
    if session.system:
        body["system"] = session.system
    if session.options:
        body["options"] = session.options
    if session.keep_alive is not None:
        body["keep_alive"] = session.keep_alive
    if session.think is not None:
        body["think"] = session.think
    return body


def create_body(name: str, session: Session, parent_is_valid: bool) -> dict[str, Any]:
    """``/save``'s ``/api/create``: from the model's parent (when it names a valid model) or the model
    itself, with the session's system message, parameters and conversation."""
    body: dict[str, Any] = {"model": name, "from": session.parent_model if parent_is_valid and session.parent_model else session.model}
    if session.system:
        body["system"] = session.system
    if session.options:
        body["parameters"] = session.options
    if session.messages:
        body["messages"] = session.messages
    return body


# -- steps ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Print ``err`` on stderr, then ``out`` on stdout."""

    out: str = ""
    err: str = ""


@dataclass(frozen=True)
class Send:
    """Send ``text`` as the next user message."""

    text: str


@dataclass(frozen=True)
class Show:
    topic: str


@dataclass(frozen=True)
class Load:
    model: str


@dataclass(frozen=True)
class Save:
    model: str


@dataclass(frozen=True)
class ListModels:
    prefix: str


@dataclass(frozen=True)
class Exit:
    pass


Step = Say | Send | Show | Load | Save | ListModels | Exit


def _cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    return (text[: -len(suffix)], True) if text.endswith(suffix) else (text, False)


class Repl:
    """The line-by-line logic of the session (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._open: Literal["", "prompt", "system"] = ""  # the multi-line message being written, if any
        self._text = ""

    @property
    def prompt(self) -> str:
        return CONTINUATION if self._open else PROMPT

    def interrupt(self) -> None:
        """Ctrl+C at the prompt: whatever was being written is dropped."""
        self._open, self._text = "", ""

    def feed(self, line: str) -> Step | None:
        s = self.session
        if self._open:
            before, closed = _cut_suffix(line, TRIPLE)
            self._text += before
            if not closed:
                self._text += "\n"
                return None
            kind, self._open = self._open, ""
            if kind == "system":
                text, self._text = self._text, ""
                s.set_system(text)
                return Say("Set system message.\n")
        elif line.startswith(TRIPLE):
            rest, closed = _cut_suffix(line[len(TRIPLE) :], TRIPLE)
            self._text += rest
            if not closed:
                self._text += "\n"
                self._open = "prompt"
                return None
        elif line.startswith("/"):
            step = self._command(line)
            if step is not None or self._open or not self._text:
                return step
        else:
            self._text += line
        if not self._text:
            return None
        text, self._text = self._text, ""
        return Send(text)

    def _command(self, line: str) -> Step | None:
        s = self.session
        args = line.split()
        if line.startswith("/list"):
            return ListModels(args[1] if len(args) > 1 else "")
        if line.startswith(("/load", "/save")):
            if len(args) != 2:
                return Say(f"Usage:\n  {args[0][:5]} <modelname>\n")
            return Load(args[1]) if line.startswith("/load") else Save(args[1])
        if line.startswith("/clear"):
            s.clear()
            return Say("Cleared session context\n")
        if line.startswith("/set"):
            return self._set(args)
        if line.startswith("/show"):
            if len(args) < 2:
                return Say(err=HELP_SHOW)
            if args[1] not in SHOW_TOPICS:
                return Say(f"Unknown command '/show {args[1]}'. Type /? for help\n")
            return Show(args[1])
        if line.startswith(("/help", "/?")):
            if len(args) < 2:
                return Say(err=help_text(s.multimodal))
            topic = args[1]
            if topic in ("set", "/set"):
                return Say(err=HELP_SET)
            if topic in ("show", "/show"):
                return Say(err=HELP_SHOW)
            if topic in ("shortcut", "shortcuts"):
                return Say(err=HELP_SHORTCUTS)
            return None
        if line.startswith(("/exit", "/bye")):
            return Exit()
        first = args[0] if args else line
        if any(path.startswith(first) for path, _ in media_paths(line, s.media_extensions)):
            self._text += line  # a file to attach, not a command
            return None
        return Say(f"Unknown command '{first}'. Type /? for help\n")

    def _set(self, args: list[str]) -> Step | None:
        s = self.session
        if len(args) < 2:
            return Say(err=HELP_SET)
        what = args[1]
        if what in ("history", "nohistory"):
            s.history = what == "history"
            return None
        if what in ("wordwrap", "nowordwrap", "verbose", "quiet", "hidethinking", "showthinking"):
            if what in ("wordwrap", "nowordwrap"):
                s.wordwrap = what == "wordwrap"
            elif what in ("verbose", "quiet"):
                s.verbose = what == "verbose"
            else:
                s.hide_thinking = what == "hidethinking"
            return Say(f"Set '{what}' mode.\n")
        if what in ("think", "nothink"):
            level = args[2] if what == "think" and len(args) > 2 else ""
            s.think = level or (what == "think")
            s.think_explicit = True
            warning = "" if "thinking" in s.capabilities else f'warning: model "{s.model}" does not support thinking output\n'
            said = f"Set 'think' mode to '{level}'.\n" if level else f"Set '{what}' mode.\n"
            return Say(said, warning)
        if what == "format":
            if len(args) < 3 or args[2] != "json":
                return Say("Invalid or missing format. For 'json' mode use '/set format json'\n")
            s.format = "json"
            return Say("Set format to 'json' mode.\n")
        if what == "noformat":
            s.format = ""
            return Say("Disabled format.\n")
        if what == "parameter":
            if len(args) < 4:
                return Say(err=HELP_PARAMETERS)
            name, values = args[2], args[3:]
            try:
                s.options[name] = parameter_value(name, values)
            except ParameterError as e:
                return Say(f"Couldn't set parameter: {go_quote(str(e))}\n")
            return Say(f"Set parameter '{name}' to '{', '.join(values)}'\n")
        if what == "system":
            if len(args) < 3:
                return Say(err=HELP_SET)
            text = " ".join(args[2:])
            if text.startswith(TRIPLE):
                text, closed = _cut_suffix(text[len(TRIPLE) :], TRIPLE)
                if not closed:
                    self._open, self._text = "system", text + "\n" if text else ""
                    return None
            s.set_system(text)
            return Say("Set system message.\n")
        return Say(f"Unknown command '/set {what}'. Type /? for help\n")
