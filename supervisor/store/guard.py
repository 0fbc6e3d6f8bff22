"""Keeping concurrent changes to the store from deleting each other's blobs.

A create writes its blobs first and its manifest last, so for a while its blobs are referenced by no
manifest; a delete or a create over another name that prunes at that moment would remove them. The
guard is the one owner of that hazard: a create ``pin``s the digests it will reference for its whole
run, pruning skips pinned digests, and writing a manifest plus the pruning that follows happen under
``lock`` so two of them never interleave. Upload of a blob needs no guard: blobs are immutable and
renamed into place atomically.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Pins:
    """The digests one create has pinned (see ``StoreGuard.pin``)."""

    def __init__(self, counts: Counter[str]) -> None:
        self._counts = counts
        self.digests: set[str] = set()

    def add(self, digest: str) -> None:
        if digest not in self.digests:
            self.digests.add(digest)
            self._counts[digest] += 1

    def release(self) -> None:
        for digest in self.digests:
            self._counts[digest] -= 1
            if self._counts[digest] <= 0:
                del self._counts[digest]
        self.digests.clear()


class StoreGuard:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._counts: Counter[str] = Counter()

    @contextmanager
    def pin(self) -> Iterator[Pins]:
        """Digests added to the yielded ``Pins`` are protected from pruning until the block ends."""
        pins = Pins(self._counts)
        try:
            yield pins
        finally:
            pins.release()

    def pinned(self) -> frozenset[str]:
        """Digests some create in progress will reference."""
        return frozenset(self._counts)
