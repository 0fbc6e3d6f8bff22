"""Token chunks sent to the client from the runner connection's read callback (the relay).

A streamed reply is a loop: a runner event arrives, becomes an Ollama chunk, and is written to the
client. Pulled through the async generators from the route down to the socket, every token wakes
the request's task and walks that chain; with many streams at once that wake-up is most of what
llamasup spends per token. So once the route has sent the first chunk (the status and headers are
out, and errors from then on are ``error`` lines), it sets a ``Relay`` for its task, and ``pump``
diverts the runner stream to it: each later event is turned into a chunk by the same ``handle``
and sent by the relay inside the read callback. The generators above only see the end of the
stream (or its error), then go on as before (the final chunk, a second pass, ...).

The rule this needs: layers between ``pump`` and the route pass token chunks through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from contextvars import ContextVar
from typing import Any, Protocol

from ..runner.client import EventStream

Chunk = dict[str, Any]
Event = dict[str, Any]
Handle = Callable[[Event], Chunk | None]


class Relay(Protocol):
    def send(self, chunk: Chunk) -> bool:
        """Write one chunk now; True when the client's side is congested (then ``drain``)."""

    async def drain(self) -> None: ...


RELAY: ContextVar[Relay | None] = ContextVar("llamasup_relay", default=None)


async def pump(stream: EventStream, handle: Handle) -> AsyncGenerator[Chunk, None]:
    """The chunks ``handle`` makes of ``stream``'s events (None: no chunk for that event): yielded,
    until the task has a relay; from then on sent by the relay as the events arrive."""
    async with aclosing(stream):
        async for event in stream:
            chunk = handle(event)
            if chunk is None:
                continue
            yield chunk
            relay = RELAY.get()
            if relay is not None:
                stream.divert(_sink(handle, relay), relay.drain)


def _sink(handle: Handle, relay: Relay) -> Callable[[Event], bool]:
    def sink(event: Event) -> bool:
        chunk = handle(event)
        return chunk is not None and relay.send(chunk)

    return sink
