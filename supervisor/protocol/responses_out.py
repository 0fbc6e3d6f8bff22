"""``/v1/responses`` replies: the chat use case's Ollama chunks as Responses output items (pure).

Items come in the order the chunks bring them: a ``reasoning`` item for thinking, a ``message`` item
for text, a ``function_call`` item per tool call. ``ResponseStream`` writes them as named
server-sent events (``event: <type>``, each with a ``sequence_number``) and ends with
``response.completed`` or ``response.incomplete`` carrying the whole response; a non-streamed reply
is that same final response (the collected reply run through the same machine, so both agree).
The request side is protocol/responses.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .ollama import dumps
from .ollama_requests import Message
from .openai_stream import tool_call
from .responses import Chunk, IdFactory, ResponsesRequest, arguments_object, new_id

def usage(final: Chunk) -> dict[str, Any]:
    prompt, output = int(final.get("prompt_eval_count", 0)), int(final.get("eval_count", 0))
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + output}  # fmt: skip


def response_object(
    head: ResponsesRequest, status: str, output: list[dict[str, Any]], *, final: Chunk | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` object: its state, output items and usage, and the request's fields."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {"id": head.ident, "object": "response", "created_at": head.created_at, "status": status,
            "background": False, "error": error, "incomplete_details": incomplete, **head.echo,
            "store": head.store, "service_tier": "default", "top_logprobs": 0, "max_tool_calls": None,
            "output": output, "usage": usage(final) if final is not None else None}  # fmt: skip


def output_message(response: Mapping[str, Any]) -> Message:
    """The assistant turn a response's output items make, for the conversation kept in the store."""
    message = Message(role="assistant")
    for item in response.get("output") or ():
        kind = item.get("type")
        if kind == "reasoning":
            message.thinking += "".join(s.get("text", "") for s in item.get("summary") or ())
        elif kind == "message":
            message.content += "".join(p.get("text", "") for p in item.get("content") or ())
        elif kind == "function_call":
            function = {"index": len(message.tool_calls), "name": item["name"], "arguments": arguments_object(item["arguments"])}  # fmt: skip
            message.tool_calls.append({"id": item["call_id"], "function": function})
    return message


@dataclass
class _Open:
    """The reasoning or message item being streamed: its index, id and text so far."""

    kind: str  # "reasoning" | "message"
    index: int
    ident: str
    text: str = ""

    def item(self, status: str) -> dict[str, Any]:
        if self.kind == "reasoning":
            return {"id": self.ident, "type": "reasoning", "summary": [{"type": "summary_text", "text": self.text}]}
        return {"id": self.ident, "type": "message", "status": status, "role": "assistant",
                "content": [_output_text(self.text)]}  # fmt: skip


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


class ResponseStream:
    """Ollama chat chunks → Responses server-sent events (a ``Framing``); ``final`` holds the
    finished response (completed or incomplete) once the last chunk has been written.

    Text that is only whitespace is held back until real text follows: a reply that is only tool
    calls has no message item (as OpenAI's), and a reply with neither gets an empty one.
    """

    content_type = "text/event-stream"

    def __init__(self, head: ResponsesRequest, ids: IdFactory = new_id) -> None:
        self.head, self.ids = head, ids
        self.sequence = 0
        self.started = False
        self.items: list[dict[str, Any]] = []  # finished output items, in order
        self.open: _Open | None = None
        self.pending = ""  # whitespace text not yet shown
        self.messages = self.calls = 0  # message and function_call items so far
        self.final: dict[str, Any] | None = None

    # -- events
    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence} | fields
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        response = response_object(self.head, "in_progress", [])
        return self._event("response.created", response=response) + self._event("response.in_progress", response=response)

    def _item_event(self, kind: str, index: int, **fields: Any) -> bytes:
        return self._event(kind, output_index=index, **fields)

    def _open(self, kind: str) -> bytes:
        """Opens a reasoning or message item (closing another first)."""
        if self.open is not None and self.open.kind == kind:
            return b""
        out = self._close()
        prefix = "rs" if kind == "reasoning" else "msg"
        self.open = item = _Open(kind, len(self.items), self.ids(prefix))
        if kind == "reasoning":
            added = {"id": item.ident, "type": "reasoning", "summary": []}
            out += self._item_event("response.output_item.added", item.index, item=added)
            out += self._item_event("response.reasoning_summary_part.added", item.index, item_id=item.ident,
                                    summary_index=0, part={"type": "summary_text", "text": ""})  # fmt: skip
        else:
            self.messages += 1
            added = {"id": item.ident, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            out += self._item_event("response.output_item.added", item.index, item=added)
            out += self._item_event("response.content_part.added", item.index, item_id=item.ident,
                                    content_index=0, part=_output_text(""))  # fmt: skip
        return out

    def _close(self, status: str = "completed") -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        done = item.item(status)
        if item.kind == "reasoning":
            out = self._item_event("response.reasoning_summary_text.done", item.index, item_id=item.ident,
                                   summary_index=0, text=item.text)  # fmt: skip
            out += self._item_event("response.reasoning_summary_part.done", item.index, item_id=item.ident,
                                    summary_index=0, part=done["summary"][0])  # fmt: skip
        else:
            out = self._item_event("response.output_text.done", item.index, item_id=item.ident, content_index=0,
                                   text=item.text, logprobs=[])  # fmt: skip
            out += self._item_event("response.content_part.done", item.index, item_id=item.ident, content_index=0,
                                    part=done["content"][0])  # fmt: skip
        self.items.append(done)
        return out + self._item_event("response.output_item.done", item.index, item=done)

    def _thinking(self, text: str) -> bytes:
        out = self._open("reasoning")
        assert self.open is not None
        self.open.text += text
        return out + self._item_event("response.reasoning_summary_text.delta", self.open.index,
                                      item_id=self.open.ident, summary_index=0, delta=text)  # fmt: skip

    def _text(self, text: str) -> bytes:
        if (self.open is None or self.open.kind != "message") and not (self.pending + text).strip():
            self.pending += text
            return b""
        out = self._open("message")
        assert self.open is not None
        text, self.pending = self.pending + text, ""
        self.open.text += text
        return out + self._item_event("response.output_text.delta", self.open.index, item_id=self.open.ident,
                                      content_index=0, delta=text, logprobs=[])  # fmt: skip

    def _call(self, call: dict[str, Any]) -> bytes:
        out = self._close()
        wire = tool_call(call, self.calls)
        self.calls += 1
        ident, index = self.ids("fc"), len(self.items)
        name, arguments = wire["function"]["name"], wire["function"]["arguments"]
        item = {"id": ident, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": wire["id"], "name": name}  # fmt: skip
        out += self._item_event("response.output_item.added", index, item=item)
        out += self._item_event("response.function_call_arguments.delta", index, item_id=ident, delta=arguments)
        out += self._item_event("response.function_call_arguments.done", index, item_id=ident, arguments=arguments)
        done = item | {"status": "completed", "arguments": arguments}
        self.items.append(done)
        return out + self._item_event("response.output_item.done", index, item=done)

    def _finish(self, final: Chunk) -> bytes:
        length = final.get("done_reason") == "length"
        status = "incomplete" if length else "completed"
        out = b""
        if self.messages == 0 and self.calls == 0:  # a reply always has a message, even empty
            text, self.pending = self.pending, ""
            out += self._open("message")
            assert self.open is not None
            self.open.text = text
            if text:
                out += self._item_event("response.output_text.delta", self.open.index, item_id=self.open.ident,
                                        content_index=0, delta=text, logprobs=[])  # fmt: skip
        out += self._close(status if self.open is not None and self.open.kind == "message" else "completed")
        self.final = response_object(self.head, status, list(self.items), final=final)
        return out + self._event(f"response.{status}", response=self.final)

    # -- Framing
    def chunk(self, chunk: Chunk) -> bytes:
        out = self._start()
        message = chunk.get("message") or {}
        if message.get("thinking"):
            out += self._thinking(message["thinking"])
        if message.get("content"):
            out += self._text(message["content"])
        for call in message.get("tool_calls") or ():
            out += self._call(call)
        if chunk.get("done"):
            out += self._finish(chunk)
        return out

    def end(self) -> bytes:
        return b""  # the Responses stream has no [DONE]: response.completed ends it

    def error(self, message: str, status: int) -> bytes:
        """``response.failed`` with what was produced so far and the error."""
        out = self._start()
        output = self.items + ([self.open.item("incomplete")] if self.open is not None else [])
        code = "server_error" if status >= 500 else "invalid_prompt"
        response = response_object(self.head, "failed", output, error={"code": code, "message": message})
        return out + self._event("response.failed", response=response)

    # -- not streamed
    def reply(self, collected: Chunk) -> Chunk:
        """The non-streamed response: the collected reply (``service.output.collect``) written as
        one chunk, the events dropped; ``final`` is set as after a stream."""
        self.chunk(collected)
        assert self.final is not None
        return self.final
