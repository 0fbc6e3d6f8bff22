"""Atomic, content-addressed blob writes.

A blob is streamed into a temp file inside ``blobs/`` while it is hashed, fsynced, and renamed onto
``blobs/sha256-<hex>`` only if no such blob exists (an existing one just gets its mtime touched, which
Ollama's pruning grace period relies on). Readers therefore never see a partial blob, and a failure at
any point removes the temp file. Temp files are named ``sha256-<random>.tmp`` like Ollama's
``CreateTemp(blobs, "sha256-")`` files, so an interrupted write (SIGKILL) is cleaned by pruning, which
removes names that are not digests.

Everything here is blocking file I/O; async callers run it in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from ..errors import StoreError
from .layout import StoreLayout

CHUNK_SIZE = 1 << 20
BLOB_MODE = 0o644
DIR_MODE = 0o755


def ensure_dirs(*paths: Path) -> None:
    """Create directories (mode 0755, parents too): the explicit step before a store write."""
    for path in paths:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def fsync_dir(path: Path) -> None:
    """Persist a rename in ``path``; best effort where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobWriter:
    """One blob being written: ``write`` chunks, read ``digest``, then ``commit`` or ``abort``.

    ``write``, ``commit`` and ``abort`` hold a lock, so an ``abort`` from a cancelled request waits
    for a ``write`` still running in a worker thread instead of closing the file under it.

    Used as a context manager, leaving the block without ``commit`` (an exception, a digest the
    caller rejected) aborts, so no temp file survives::

        with BlobWriter(layout) as w:
            for chunk in chunks:
                w.write(chunk)
            if expected and w.digest != expected:
                raise BadRequest(...)      # temp file removed on the way out
            w.commit()
    """

    def __init__(self, layout: StoreLayout) -> None:
        self._layout = layout
        self._hash = hashlib.sha256()
        self._size = 0
        self._lock = threading.Lock()
        try:
            ensure_dirs(layout.blobs_dir)
            fd, tmp = tempfile.mkstemp(dir=layout.blobs_dir, prefix="sha256-", suffix=".tmp")
        except OSError as exc:
            raise StoreError(f"creating a blob in {layout.blobs_dir}: {exc}") from exc
        self._tmp: Path | None = Path(tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        with self._lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise StoreError("blob writer already closed")
        try:
            self._file.write(data)
        except OSError as exc:
            self._abort()
            raise StoreError(f"writing blob: {exc}") from exc
        self._hash.update(data)
        self._size += len(data)

    def commit(self) -> str:
        """Flush, fsync and move the blob into place (or touch the existing one); returns its digest."""
        with self._lock:
            return self._commit()

    def _commit(self) -> str:
        if self._file is None or self._tmp is None:
            raise StoreError("blob writer already closed")
        digest = self.digest
        final = self._layout.blob_path(digest)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if final.exists():
                os.utime(final)
                self._tmp.unlink()
            else:
                os.chmod(self._tmp, BLOB_MODE)
                os.replace(self._tmp, final)
                fsync_dir(final.parent)
            self._tmp = None
        except OSError as exc:
            self._abort()
            raise StoreError(f"writing blob {digest}: {exc}") from exc
        return digest

    def abort(self) -> None:
        """Discard the temp file; safe to call more than once and after ``commit``."""
        with self._lock:
            self._abort()

    def _abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def write_blob_from_stream(layout: StoreLayout, src: BinaryIO) -> str:
    """Copy a readable binary stream into the store; returns ``sha256:<hex>``."""
    with BlobWriter(layout) as writer:
        while chunk := src.read(CHUNK_SIZE):
            writer.write(chunk)
        return writer.commit()


def write_blob_from_file(layout: StoreLayout, src_path: Path) -> str:
    """Copy a file into the store (the source is left alone); returns ``sha256:<hex>``."""
    try:
        src = src_path.open("rb")
    except OSError as exc:
        raise StoreError(f"reading {src_path}: {exc}") from exc
    with src:
        return write_blob_from_stream(layout, src)


def write_blob_bytes(layout: StoreLayout, data: bytes) -> str:
    """Store ``data`` as a blob; returns ``sha256:<hex>``."""
    with BlobWriter(layout) as writer:
        writer.write(data)
        return writer.commit()


def adopt_file(layout: StoreLayout, path: Path) -> str:
    """Move a finished file written inside ``blobs/`` (a quantize or conversion output) into place
    under its digest, without copying it; returns ``sha256:<hex>``. The file is gone afterwards."""
    try:
        digest = file_digest(path)
        final = layout.blob_path(digest)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        if final.exists():
            os.utime(final)
            path.unlink()
        else:
            os.chmod(path, BLOB_MODE)
            os.replace(path, final)
            fsync_dir(final.parent)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise StoreError(f"storing {path.name}: {exc}") from exc
    return digest


def temp_blob_path(layout: StoreLayout, suffix: str = ".tmp") -> Path:
    """A fresh, empty temp file in ``blobs/`` (same file system as the blobs, so a rename is atomic);
    its name is not a digest, so start-up pruning removes it if llamasup dies before using it."""
    try:
        ensure_dirs(layout.blobs_dir)
        fd, tmp = tempfile.mkstemp(dir=layout.blobs_dir, prefix="sha256-", suffix=suffix)
    except OSError as exc:
        raise StoreError(f"creating a file in {layout.blobs_dir}: {exc}") from exc
    os.close(fd)
    return Path(tmp)


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's contents, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def verify_blob(layout: StoreLayout, digest: str) -> bool:
    """Whether the blob exists and its contents hash to ``digest``."""
    path = layout.blob_path(digest)
    try:
        actual = file_digest(path)
    except OSError:
        return False
    return actual == "sha256:" + path.name.removeprefix("sha256-")
