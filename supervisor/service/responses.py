"""The stored responses of ``/v1/responses``: what ``previous_response_id``, retrieve and delete read.

``ResponseStore`` is the one owner of them. Each entry is the response object as it was returned and
the conversation that led to it plus its own output (Ollama ``Message``s, without ``instructions``),
which is what a request that continues it puts before its new input.

Bounds: at most ``max_entries`` (the oldest go first) and each for ``ttl`` seconds after it was
stored; an expired entry is gone as if deleted (an unknown id and an expired one read the same). The
store is in memory: a restart forgets every response. Every method is synchronous, so no other task
runs between a read and the write it leads to.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NotFound
from ..protocol.ollama_requests import Message

Clock = Callable[[], float]


@dataclass(frozen=True)
class _Entry:
    response: dict[str, Any]
    conversation: tuple[Message, ...]
    expires_at: float


class ResponseStore:
    def __init__(self, max_entries: int, ttl: float, clock: Clock = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # oldest first: one ttl, one clock

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def _expire(self) -> None:
        now = self.clock()
        while self._entries:
            ident, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            del self._entries[ident]

    def put(self, response: dict[str, Any], conversation: list[Message]) -> None:
        """Keeps ``response`` (by its ``id``) and the conversation it ends, unless it says
        ``"store": false``; the oldest entries make room. Both are copied: the caller may go on
        changing its own."""
        self._expire()
        if self.max_entries <= 0 or response.get("store") is False:
            return
        ident = str(response["id"])
        entry = _Entry(copy.deepcopy(response), tuple(copy.deepcopy(conversation)), self.clock() + self.ttl)
        self._entries.pop(ident, None)
        self._entries[ident] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _entry(self, ident: str, message: str) -> _Entry:
        self._expire()
        entry = self._entries.get(ident)
        if entry is None:
            raise NotFound(message.format(ident=ident))
        return entry

    def response(self, ident: str) -> dict[str, Any]:
        """The stored response object (a copy)."""
        return copy.deepcopy(self._entry(ident, "Response with id '{ident}' not found.").response)

    def conversation(self, ident: str) -> list[Message]:
        """The messages to continue ``ident`` from (copies); OpenAI's 404 when it is not stored."""
        entry = self._entry(ident, "Previous response with id '{ident}' not found.")
        return copy.deepcopy(list(entry.conversation))

    def delete(self, ident: str) -> None:
        self._entry(ident, "Response with id '{ident}' not found.")
        del self._entries[ident]
