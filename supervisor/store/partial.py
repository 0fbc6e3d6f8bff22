"""A blob being downloaded: ranged parts written at their offsets, resumable, verified before use.

Files, in ``blobs/`` next to the finished blobs and named as Ollama names them, so a pull that either
of them started can be resumed by the other (reference/ollama-api.md §9.1):

- ``sha256-<hex>-partial``: the blob's bytes, each part written at its own offset;
- ``sha256-<hex>-partial-<n>``: part ``n``'s state, ``{"N", "Offset", "Size", "Completed"}``, replaced
  atomically after each write, so after a process crash at any moment the recorded ``Completed``
  never exceeds what was written (the data is written, then the state; a resumed part re-fetches at
  most the bytes written after the last state). Data is not fsynced per write: after a power loss
  the state may claim bytes that never reached the disk, which the final digest check catches.

Nothing here is visible as a blob until ``commit``: the whole file is hashed, and only a file whose
sha256 is the digest is renamed onto ``sha256-<hex>`` (then the state files go). A mismatch
deletes the partial and its state, so nothing corrupt is left behind. Start-up pruning keeps
partials younger than its grace period (``prune.py``) and deletes older ones.

Blocking file I/O; async callers use threads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from .blobs import BLOB_MODE, CHUNK_SIZE, ensure_dirs, fsync_dir
from .layout import StoreLayout, blob_file_name

MIN_PART = 100_000_000  # decimal MB, as Ollama
MAX_PART = 1_000_000_000
PARTS = 16


class DigestMismatch(StoreError):
    def __init__(self, digest: str, actual: str) -> None:
        super().__init__(f"digest mismatch, file must be downloaded again: want {digest}, got {actual}")


@dataclass
class Part:
    """A byte range of the blob: ``size`` bytes at ``offset``, of which ``completed`` are on disk."""

    n: int
    offset: int
    size: int
    completed: int = 0

    @property
    def next_byte(self) -> int:
        return self.offset + self.completed

    @property
    def last_byte(self) -> int:
        return self.offset + self.size - 1

    @property
    def done(self) -> bool:
        return self.completed >= self.size

    def to_json(self) -> bytes:
        return json.dumps({"N": self.n, "Offset": self.offset, "Size": self.size, "Completed": self.completed}).encode()


def plan_parts(total: int) -> list[Part]:
    """Ollama's split: ``total / 16`` per part, clamped to 100 MB .. 1000 MB (pure)."""
    size = min(max(total // PARTS, MIN_PART), MAX_PART)
    return [Part(n, offset, min(size, total - offset)) for n, offset in enumerate(range(0, total, size))]


class PartialBlob:
    """The download of one blob; ``open`` resumes what an earlier attempt left."""

    def __init__(self, layout: StoreLayout, digest: str, total: int, parts: list[Part]) -> None:
        self.layout, self.digest, self.total, self.parts = layout, digest, total, parts
        self.path = layout.blobs_dir / (blob_file_name(digest) + "-partial")

    @classmethod
    def open(cls, layout: StoreLayout, digest: str, total: int) -> PartialBlob:
        """The partial download of ``digest`` (``total`` bytes): the recorded parts when they describe
        this size and the data file is there, else a fresh start (any leftovers removed)."""
        ensure_dirs(layout.blobs_dir)
        blob = cls(layout, digest, total, [])
        parts = blob._recorded()
        if parts is None or not blob.path.exists():
            blob.discard()
            parts = plan_parts(total)
            with open(blob.path, "wb") as f:
                f.truncate(total)
            os.chmod(blob.path, BLOB_MODE)
            for part in parts:
                blob._save(part)
        blob.parts = parts
        return blob

    @property
    def completed(self) -> int:
        return sum(min(p.completed, p.size) for p in self.parts)

    def _state_path(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}-{n}")

    def _state_paths(self) -> list[Path]:
        prefix = self.path.name + "-"
        return [p for p in self.layout.blobs_dir.glob(prefix + "*") if p.name[len(prefix) :].isdigit()]

    def _recorded(self) -> list[Part] | None:
        """The parts the state files describe, if they tile exactly ``total`` bytes."""
        parts = []
        for path in self._state_paths():
            try:
                data = json.loads(path.read_bytes())
                part = Part(int(data["N"]), int(data["Offset"]), int(data["Size"]), int(data["Completed"]))
            except (OSError, ValueError, KeyError, TypeError):
                return None
            parts.append(part)
        parts.sort(key=lambda p: p.offset)
        offset = 0
        for part in parts:
            if part.offset != offset or part.size <= 0 or not 0 <= part.completed <= part.size:
                return None
            offset += part.size
        return parts if parts and offset == self.total else None

    def _save(self, part: Part) -> None:
        path = self._state_path(part.n)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(part.to_json())
        os.replace(tmp, path)

    def write(self, part: Part, data: bytes) -> None:
        """``data`` is the next bytes of ``part``: written at their offset, then recorded."""
        if part.completed + len(data) > part.size:
            raise StoreError(f"part {part.n} of {self.digest} would exceed its {part.size} bytes")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, part.next_byte)
        finally:
            os.close(fd)
        part.completed += len(data)
        self._save(part)

    def commit(self) -> None:
        """Verify the whole file against the digest, then make it the blob (``DigestMismatch`` removes it)."""
        if any(not p.done for p in self.parts):
            raise StoreError(f"download of {self.digest} is incomplete")
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                h.update(chunk)
            os.fsync(f.fileno())
        actual = "sha256:" + h.hexdigest()
        if actual != self.digest:
            self.discard()
            raise DigestMismatch(self.digest, actual)
        os.replace(self.path, self.layout.blob_path(self.digest))
        fsync_dir(self.layout.blobs_dir)
        for path in self._state_paths():
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the partial data and its state."""
        self.path.unlink(missing_ok=True)
        for path in self._state_paths():
            path.unlink(missing_ok=True)
