"""A blob being downloaded: ranged parts written at their offsets, resumable, verified before use.

Files, in ``blobs/`` next to the finished blobs and named as Ollama names them, so a pull that either
of them started can be resumed by the other (reference/ollama-api.md §9.1):

- ``sha256-<hex>-partial``: the blob's bytes, each part written at its own offset;
- ``sha256-<hex>-partial-<n>``: part ``n``'s state, ``{"N", "Offset", "Size", "Completed"}``, replaced
  atomically every ``SAVE_EVERY`` bytes of the part and when a fetch of it stops (``checkpoint``), so
  after a process crash at any moment the recorded ``Completed`` never exceeds what was written (the
  data is written, then the state; a resumed part re-fetches at most the bytes written after the
  last state). Data is not fsynced per write: after a power loss the state may claim bytes that
  never reached the disk, which the final digest check catches.

Nothing here is visible as a blob until ``commit``: only a file whose sha256 is the digest is renamed
onto ``sha256-<hex>`` (then the state files go). A mismatch deletes the partial and its state, so
nothing corrupt is left behind. The hash is computed in file order while the download goes on
(``hash_written`` hashes whatever has arrived after the bytes already hashed, read back from the page
cache), so ``commit`` only hashes the rest. Start-up pruning keeps partials younger than its grace
period (``prune.py``) and deletes older ones.

Blocking file I/O; async callers use threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from .blobs import BLOB_MODE, CHUNK_SIZE, ensure_dirs, fsync_dir
from .layout import StoreLayout, blob_file_name

MIN_PART = 100_000_000  # decimal MB, as Ollama
MAX_PART = 1_000_000_000
PARTS = 16
SAVE_EVERY = 16 << 20  # bytes of a part written between two records of its state
_IOV_MAX = 512  # buffers per pwritev (the system's limit is at least 1024)


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
        self._saved: dict[int, int] = {}  # part n -> the Completed last recorded
        self._hash = hashlib.sha256()
        self._hashed = 0  # bytes from offset 0 in ``_hash``
        self._hash_lock = threading.Lock()

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
        blob._saved = {p.n: p.completed for p in parts}
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
        self._saved[part.n] = part.completed

    def write(self, part: Part, data: bytes | Sequence[bytes]) -> None:
        """``data`` (bytes, or pieces written in order without joining them) is the next bytes of
        ``part``: written at their offset; the state is recorded every ``SAVE_EVERY`` bytes."""
        chunks = [data] if isinstance(data, bytes) else list(data)
        size = sum(len(c) for c in chunks)
        if part.completed + size > part.size:
            raise StoreError(f"part {part.n} of {self.digest} would exceed its {part.size} bytes")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            _pwrite_all(fd, chunks, part.next_byte)
        finally:
            os.close(fd)
        part.completed += size
        if part.done or part.completed - self._saved.get(part.n, 0) >= SAVE_EVERY:
            self._save(part)

    def checkpoint(self, part: Part) -> None:
        """Record ``part``'s state if bytes were written since it was last recorded."""
        if part.completed != self._saved.get(part.n):
            self._save(part)

    def _contiguous(self) -> int:
        """Where the bytes written from offset 0 without a gap end."""
        end = 0
        for part in self.parts:
            end = part.offset + part.completed
            if not part.done:
                break
        return end

    def hash_written(self, limit: int | None = None) -> int:
        """Hash (in file order) up to ``limit`` bytes of what was written after the bytes already
        hashed; returns how many. Safe to call from one thread while others write."""
        with self._hash_lock:
            end = self._contiguous()
            if limit is not None:
                end = min(end, self._hashed + limit)
            start = self._hashed
            if end <= start:
                return 0
            buf = bytearray(min(CHUNK_SIZE, end - start))
            view = memoryview(buf)
            with open(self.path, "rb", buffering=0) as f:
                f.seek(start)
                while self._hashed < end:
                    got = f.readinto(view[: min(len(buf), end - self._hashed)])
                    if not got:
                        raise StoreError(f"{self.path} ends before its {end} written bytes")
                    self._hash.update(view[:got])
                    self._hashed += got
            return end - start

    def commit(self) -> None:
        """Verify the whole file against the digest, then make it the blob (``DigestMismatch`` removes it)."""
        if any(not p.done for p in self.parts):
            raise StoreError(f"download of {self.digest} is incomplete")
        self.hash_written()
        with self._hash_lock:
            actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            self.discard()
            raise DigestMismatch(self.digest, actual)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.path, self.layout.blob_path(self.digest))
        fsync_dir(self.layout.blobs_dir)
        for path in self._state_paths():
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the partial data and its state."""
        self.path.unlink(missing_ok=True)
        for path in self._state_paths():
            path.unlink(missing_ok=True)


def _pwrite_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """Write ``chunks`` in order at ``offset`` (short writes continued)."""
    for i in range(0, len(chunks), _IOV_MAX):
        batch = [memoryview(c) for c in chunks[i : i + _IOV_MAX]]
        while batch:
            written = os.pwritev(fd, batch, offset)
            offset += written
            while batch and written >= len(batch[0]):
                written -= len(batch[0])
                batch.pop(0)
            if batch and written:
                batch[0] = batch[0][written:]
