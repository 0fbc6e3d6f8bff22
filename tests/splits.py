"""Ways to cut a streamed output into pieces, for parsers that must not care where chunks end."""

from __future__ import annotations

import random
from collections.abc import Iterator


def splits(text: str) -> Iterator[list[str]]:
    """The output whole, cut at every point in two, one character at a time, and some seeded
    random multi-way cuts (empty pieces included)."""
    yield [text]
    for i in range(1, len(text)):
        yield [text[:i], text[i:]]
    yield list(text)
    for seed in range(8):
        rng = random.Random(seed)
        cuts = sorted(rng.choices(range(len(text) + 1), k=rng.randint(2, 6)))
        bounds = [0, *cuts, len(text)]
        yield [text[a:b] for a, b in zip(bounds, bounds[1:])]
