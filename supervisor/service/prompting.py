"""Which messages a request renders, how, and how they are made to fit the context.

Ollama's rules (reference/ollama-api.md §2.2, §2.3, §11): a chat gets the Modelfile's MESSAGEs in
front of its own and the model's SYSTEM first unless it brings a system message; a generate becomes
one user message after the request's (or model's) system prompt. Two renderers produce the text:
``GoRenderer`` executes a Go TEMPLATE here, ``NativeRenderer`` asks llama-server to apply the GGUF's
Jinja template (``/apply-template``). Both count tokens with the runner's ``/tokenize``.

Fitting is done only when needed: a prompt is sent as is, and when llama-server answers that it
exceeds the slot context (``ContextOverflow``) the oldest messages are dropped — system messages
and the last message are always kept — choosing the fewest drops that fit (a binary search over the
start, since a shorter history never renders longer), and the request is retried. Chats that fit,
nearly all of them, pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from ..protocol.llama_server import chat_body
from ..protocol.ollama_requests import GenerateRequest, Message, Think
from ..runner.client import RunnerClient
from ..templates import TemplateSet
from ..templates.prompt import IMAGE_TAG, render_messages, strip_old_thinking, tag_images
from .resolve import ResolvedModel

IMAGE_TOKENS = 768  # what Ollama counts per image when fitting a history to the context


def _modelfile_messages(model: ResolvedModel) -> list[Message]:
    return [Message(role=str(m.get("role", "")), content=str(m.get("content", ""))) for m in model.messages]


def chat_messages(model: ResolvedModel, messages: Sequence[Message]) -> list[Message]:
    """The request's messages after the Modelfile's, with the model's SYSTEM first when needed."""
    out = _modelfile_messages(model) + list(messages)
    if model.system and (not messages or messages[0].role != "system"):
        out.insert(0, Message(role="system", content=model.system))
    if model.family == "qwen3" or model.name.model.lower() == "deepseek-r1":
        out = strip_old_thinking(out)
    return out


def generate_messages(model: ResolvedModel, req: GenerateRequest) -> list[Message]:
    """A generate as messages: system (the request's, else the model's), MESSAGEs unless ``context``
    continues an earlier answer, and the prompt as the user's message."""
    out: list[Message] = []
    system = req.system or model.system
    if system:
        out.append(Message(role="system", content=system))
    if req.context is None:
        out += _modelfile_messages(model)
    out.append(Message(role="user", content=req.prompt, images=list(req.images)))
    return out


def keep_from(messages: Sequence[Message], start: int) -> list[Message]:
    """``messages[start:]`` with the system messages of the dropped part kept in front."""
    return [m for m in messages[:start] if m.role == "system"] + list(messages[start:])


async def fit_messages(
    messages: Sequence[Message], count: Callable[[list[Message]], Awaitable[int]], limit: int
) -> list[Message]:
    """The longest suffix of the history (system messages kept) whose prompt is under ``limit``
    tokens; the last message is kept even when it alone is too long."""
    low, high = 0, len(messages) - 1  # the answer is in [low, high]; high always qualifies
    while low < high:
        mid = (low + high) // 2
        if await count(keep_from(messages, mid)) < limit:
            high = mid
        else:
            low = mid + 1
    return keep_from(messages, low)


def mark_images(prompt: str, images: Sequence[bytes], marker: str) -> tuple[str, list[bytes]]:
    """``[img-N]`` tags → llama-server's media marker, with the images in the order they appear."""
    used: list[bytes] = []

    def swap(match: Any) -> str:
        n = int(match.group(1))
        if n >= len(images):
            return str(match.group(0))
        used.append(images[n])
        return marker

    text = IMAGE_TAG.sub(swap, prompt)
    if used and text.endswith(marker):
        # this llama-server aborts (GGML_ASSERT batch.size() > 0) on a prompt that ends with an image
        text += "\n"
    return text, used


class Rendering(NamedTuple):
    """A rendered prompt: ``text`` as sent (media markers), ``shown`` as ``_debug_render_only`` shows
    it (``[img-N]`` tags on the template path), and the images in marker order."""

    text: str
    shown: str
    images: list[bytes]


class Renderer:
    """Turns messages into a prompt (with image markers) and counts its tokens."""

    def __init__(
        self,
        client: RunnerClient,
        marker: str,
        has_projector: bool,
        tools: Sequence[dict[str, Any]],
        think: Think | None,
    ) -> None:
        self.client = client
        self.marker = marker
        self.has_projector = has_projector
        self.tools = tools
        self.think = think

    async def render(self, messages: Sequence[Message]) -> Rendering:
        raise NotImplementedError

    async def count(self, messages: list[Message]) -> int:
        rendering = await self.render(messages)
        text = rendering.text.replace(self.marker, "")
        tokens = await self.client.post_json("/tokenize", {"content": text, "add_special": True})
        return len(tokens.get("tokens", ())) + (IMAGE_TOKENS * len(rendering.images) if self.has_projector else 0)


class GoRenderer(Renderer):
    """A Go TEMPLATE executed by llamasup."""

    def __init__(self, tset: TemplateSet, client: RunnerClient, marker: str, has_projector: bool,
                 tools: Sequence[dict[str, Any]], think: Think | None) -> None:  # fmt: skip
        super().__init__(client, marker, has_projector, tools, think)
        self.tset = tset

    async def render(self, messages: Sequence[Message]) -> Rendering:
        tagged, images = tag_images(messages)
        shown = render_messages(self.tset, tagged, self.tools, self.think)
        text, used = mark_images(shown, images, self.marker)
        return Rendering(text, shown, used)


class NativeRenderer(Renderer):
    """The GGUF's Jinja template, applied by llama-server."""

    async def render(self, messages: Sequence[Message]) -> Rendering:
        body = chat_body(messages, self.tools, self.think)
        text = str((await self.client.post_json("/apply-template", body)).get("prompt", ""))
        return Rendering(text, text, [i for m in messages for i in m.images])

