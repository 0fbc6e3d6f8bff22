"""Messages → the prompt text a Go TEMPLATE makes of them, with Ollama's semantics (pure).

reference/ollama-api.md §11.3. A template that names ``.Messages`` is executed once with every
message (after collation: consecutive messages of one role merged with a blank line, except tool
results) and ``.System`` = every system message joined. A legacy template (``.System``, ``.Prompt``,
``.Response`` only) is executed once per user→assistant turn; the last turn is executed with the tree
cut right after ``.Response``, so the prompt ends where the model's answer begins.

Images become ``[img-N]`` (N counting from 0 over the request), put where the message says ``[img]``
or else in front of its text; the service swaps them for llama-server's media marker.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from ..protocol.ollama_requests import Message, Think
from .goexec import execute
from .gotemplate import ollama_vars, walk
from .gotemplate_nodes import (
    ActionNode,
    BranchNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    TemplateSet,
)
from .ollama_values import TemplateValues, message_value, tools_value

IMAGE_TAG = re.compile(r"\[img-(\d+)\]")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def uses_messages(tset: TemplateSet) -> bool:
    """Messages mode: the template names ``.Messages``."""
    return "messages" in ollama_vars(tset)


def tag_images(messages: Sequence[Message]) -> tuple[list[Message], list[bytes]]:
    """Messages with ``[img-N]`` tags in their text, and the images in N order."""
    images: list[bytes] = []
    out = []
    for m in messages:
        if not m.images:
            out.append(m)
            continue
        content, prefix = m.content, ""
        for data in m.images:
            tag = f"[img-{len(images)}]"
            images.append(data)
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        out.append(dataclasses.replace(m, content=prefix + content))
    return out, images


def strip_old_thinking(messages: Sequence[Message]) -> list[Message]:
    """``<think>…</think>`` removed from assistant turns before the last user message (Ollama does
    this for qwen3 and deepseek-r1, whose templates would otherwise replay old reasoning)."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return [
        dataclasses.replace(m, content=_THINK_BLOCK.sub("", m.content))
        if i < last_user and m.role == "assistant"
        else m
        for i, m in enumerate(messages)
    ]


def collate(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """``.System`` (system contents joined by blank lines) and the merged message list."""
    system = [m.content for m in messages if m.role == "system"]
    merged: list[Message] = []
    for m in messages:
        if merged and merged[-1].role == m.role and m.role != "tool":
            merged[-1] = dataclasses.replace(merged[-1], content=merged[-1].content + "\n\n" + m.content)
        else:
            merged.append(m)
    return "\n\n".join(system), merged


def _think_fields(think: Think | None) -> dict[str, Any]:
    return {
        "Think": bool(think and think.enabled),
        "ThinkLevel": think.template_level if think else "",
        "IsThinkSet": think is not None and think.explicit,
    }


def render_messages(
    tset: TemplateSet, messages: Sequence[Message], tools: Sequence[dict[str, Any]], think: Think | None
) -> str:
    """The prompt for ``messages`` (images already tagged) in either execution mode."""
    if uses_messages(tset):
        system, merged = collate(messages)
        values = TemplateValues(
            System=system,
            Messages=[message_value(m.to_json()) for m in merged],
            Tools=tools_value(list(tools)),
            Response="",
            **_think_fields(think),
        )
        return execute(tset, values)
    return _render_legacy(tset, collate(messages)[1], think)


def render_suffix(tset: TemplateSet, prompt: str, suffix: str, think: Think | None) -> str:
    """Fill-in-the-middle: the template executed with ``.Prompt`` and ``.Suffix``."""
    return execute(tset, TemplateValues(Prompt=prompt, Suffix=suffix, Response="", **_think_fields(think)))


def _render_legacy(tset: TemplateSet, messages: Sequence[Message], think: Think | None) -> str:
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}
    flags = _think_fields(think)

    def flush() -> None:
        out.append(execute(tset, {**turn, **flags}))
        turn.update(System="", Prompt="", Response="")

    for m in messages:
        if m.role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = m.content
        elif m.role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = m.content
        elif m.role == "assistant":
            turn["Response"] = m.content
    out.append(execute(cut_after_response(tset), {**turn, **flags}))
    return "".join(out)


def _names_response(node: Node) -> bool:
    return isinstance(node, FieldNode) and "Response" in node.ident


def _mentions_response(node: Node) -> bool:
    return any(_names_response(n) for n, _ in walk(node))


def _cut(node: Node, state: list[bool]) -> Node | None:
    """``node`` without everything after the first action printing ``.Response`` (``None`` when all
    of it goes); inside an ``if``/``range``/``with`` the rest of that body goes too."""
    if state[0]:
        return None
    if isinstance(node, ListNode):
        kept = []
        for child in node.nodes:
            new = _cut(child, state)
            if new is not None:
                kept.append(new)
        return dataclasses.replace(node, nodes=tuple(kept))
    if isinstance(node, (ActionNode, PipeNode)):
        if _mentions_response(node):
            state[0] = True
        return node
    if isinstance(node, BranchNode):  # the condition never triggers the cut, as in Ollama
        body = _cut(node.body, state)
        else_body = _cut(node.else_body, state) if node.else_body is not None else None
        assert isinstance(body, ListNode)
        assert else_body is None or isinstance(else_body, ListNode)
        return dataclasses.replace(node, body=body, else_body=else_body)
    return node


def cut_after_response(tset: TemplateSet) -> TemplateSet:
    """The main template with every node after ``.Response`` removed (Ollama's last-turn tree)."""
    root = _cut(tset.main.root, [False])
    assert isinstance(root, ListNode)
    trees = {**tset.trees, tset.name: dataclasses.replace(tset.main, root=root)}
    return dataclasses.replace(tset, trees=trees)
