"""Where things live in an Ollama model store (``$OLLAMA_MODELS``). Pure: computes paths, touches nothing.

::

    <root>/blobs/sha256-<64 hex>                       content-addressed files
    <root>/manifests/<host>/<namespace>/<model>/<tag>  manifest JSON

Digests are written ``sha256:<64 lowercase hex>`` everywhere in JSON and ``sha256-<hex>`` in file
names; the server accepts either separator and either case of hex (``^sha256[:-][0-9a-fA-F]{64}$``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadRequest
from .names import ModelName

# Used with fullmatch: Python's "$" would also accept a trailing newline, Go's does not.
DIGEST_RE = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
INVALID_DIGEST_MESSAGE = "invalid digest format"


def is_valid_digest(text: str) -> bool:
    """Whether ``text`` is a digest Ollama accepts (``sha256:`` or ``sha256-`` and 64 hex digits)."""
    return DIGEST_RE.fullmatch(text) is not None


def normalize_digest(text: str) -> str:
    """``sha256:<lowercase hex>`` for any accepted spelling; ``BadRequest("invalid digest format")``."""
    m = DIGEST_RE.fullmatch(text)
    if m is None:
        raise BadRequest(INVALID_DIGEST_MESSAGE)
    return "sha256:" + m.group(1).lower()


def digest_hex(digest: str) -> str:
    """The 64 lowercase hex digits of a digest (the form ``/api/tags`` shows)."""
    return normalize_digest(digest).removeprefix("sha256:")


def blob_file_name(digest: str) -> str:
    """``sha256-<hex>``: the file name of a blob."""
    return "sha256-" + digest_hex(digest)


def digest_from_blob_name(file_name: str) -> str | None:
    """The digest a blob file name stands for, or ``None`` for temp/partial/foreign files."""
    m = DIGEST_RE.fullmatch(file_name)
    return None if m is None else "sha256:" + m.group(1).lower()


@dataclass(frozen=True)
class StoreLayout:
    """The paths of one model store; creating directories is the writers' explicit step."""

    root: Path

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @functools.lru_cache(maxsize=1024)  # holds the layout: one per store, as long as the process
    def manifest_path(self, name: ModelName) -> Path:
        """``manifests/<host>/<namespace>/<model>/<tag>``, with the case of ``name`` as given (kept:
        every request looks up its model's manifest)."""
        return self.manifests_dir.joinpath(*name.parts)

    def blob_path(self, digest: str) -> Path:
        """``blobs/sha256-<hex>``; raises ``BadRequest("invalid digest format")`` for a bad digest."""
        return self.blobs_dir / blob_file_name(digest)
