"""Several generations for one request (OpenAI's ``n``), their chunks interleaved as they come.

Each generation runs in a task of its own and hands its chunks over a bounded queue (a slow
client holds all of them back); the first error ends the whole stream, and closing the merged
stream cancels and closes every generation (so each closes its runner stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from .relay import Chunk

async def merge(streams: list[AsyncGenerator[Chunk, None]], tag: Callable[[int, Chunk], Chunk]) -> AsyncGenerator[Chunk, None]:
    """The chunks of every stream, each passed through ``tag(index, chunk)``."""
    queue: asyncio.Queue[Chunk | Exception | None] = asyncio.Queue(maxsize=4 * len(streams))  # None: one ended

    async def pull(index: int, stream: AsyncGenerator[Chunk, None]) -> None:
        try:
            async with aclosing(stream):
                async for chunk in stream:
                    await queue.put(tag(index, chunk))
            await queue.put(None)
        except Exception as e:  # handed to the consumer, which raises it
            await queue.put(e)

    tasks = [asyncio.create_task(pull(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
