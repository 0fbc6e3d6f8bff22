"""GGUF files used in place (``LLAMASUP_MODEL_DIRS``): models that live outside the store.

Beyond Ollama (its issues #7254 and #7997): people keep GGUFs where they downloaded them and do not
want a second copy in ``blobs/``. Every ``*.gguf`` below a listed directory (symlinks followed, as in a
Hugging Face cache, a few levels deep) becomes a model named after its file, tag ``latest``:
``Qwen2.5-0.5B-Instruct-Q4_K_M.gguf`` → ``Qwen2.5-0.5B-Instruct-Q4_K_M:latest``. Characters a model
name cannot hold become ``-``. Split files (``…-00001-of-00003.gguf``) are one model named without the
suffix, served from the first part (llama-server finds the others beside it). Projector files
(``mmproj*.gguf``) are not models; one is attached to the models of its directory when it is the only
projector there, or when its name contains the model's name.

The directories are read-only to llamasup: nothing here writes, and deleting such a model is refused
by the catalog. The identity (``digest``) of an in-place model is the sha256 of its path, size and
mtime, so listing never reads gigabytes; it changes when the file does.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import structlog

from ..errors import InvalidModelName
from .names import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName

log = structlog.get_logger(__name__)

MAX_DEPTH = 6  # directories below each listed one (HF cache: models--org--repo/snapshots/<rev>/)
_SPLIT_RE = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_MODEL_LEN = 80


@dataclass(frozen=True)
class InPlaceModel:
    """One GGUF model outside the store."""

    name: ModelName
    path: Path  # the GGUF (first part of a split model)
    projector: Path | None
    size: int  # every part, plus the projector
    modified_at: datetime  # newest mtime of those files, local time zone
    digest: str  # sha256 hex of path, sizes and mtimes: changes when the file does

    @property
    def display_name(self) -> str:
        return self.name.display


def model_name_for(stem: str) -> ModelName | None:
    """The model name of a GGUF file stem, or ``None`` if nothing usable is left of it."""
    text = _BAD_CHARS.sub("-", stem).lstrip("-.")[:_MAX_MODEL_LEN]
    try:
        return ModelName(DEFAULT_HOST, DEFAULT_NAMESPACE, text, DEFAULT_TAG)
    except InvalidModelName:
        return None


def is_split_part(file_name: str) -> bool:
    """Whether a file name is one part of a split GGUF (``…-00001-of-00003.gguf``)."""
    stem = file_name[: -len(".gguf")] if file_name.lower().endswith(".gguf") else ""
    return _SPLIT_RE.match(stem) is not None


def is_projector_file(file_name: str) -> bool:
    return file_name.lower().startswith("mmproj") and file_name.lower().endswith(".gguf")


@dataclass(frozen=True)
class _Found:
    path: Path
    stem: str  # split suffix removed
    parts: tuple[Path, ...]


def _walk(root: Path) -> Iterable[tuple[Path, list[str]]]:
    """(directory, file names) below ``root``, at most ``MAX_DEPTH`` levels, each real dir once."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            st = directory.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue
        files: list[str] = []
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    if depth < MAX_DEPTH:
                        stack.append((Path(entry.path), depth + 1))
                elif entry.is_file(follow_symlinks=True) and entry.name.lower().endswith(".gguf"):
                    files.append(entry.name)
            except OSError:
                continue
        yield directory, sorted(files)


def _group(directory: Path, files: list[str]) -> tuple[list[_Found], list[Path]]:
    """The models (split parts grouped) and projectors of one directory."""
    projectors = [directory / f for f in files if is_projector_file(f)]
    singles: list[_Found] = []
    splits: dict[str, list[tuple[int, Path]]] = {}
    for f in files:
        if is_projector_file(f):
            continue
        stem = f[: -len(".gguf")]
        m = _SPLIT_RE.match(stem)
        if m:
            splits.setdefault(m.group("prefix"), []).append((int(m.group("index")), directory / f))
        else:
            singles.append(_Found(directory / f, stem, (directory / f,)))
    for prefix, parts in splits.items():
        parts.sort()
        if parts[0][0] != 1:
            log.warning("split GGUF without its first part", directory=str(directory), model=prefix)
            continue
        singles.append(_Found(parts[0][1], prefix, tuple(p for _, p in parts)))
    return singles, projectors


def _projector_for(stem: str, projectors: list[Path]) -> Path | None:
    if len(projectors) == 1:
        return projectors[0]
    matching = [p for p in projectors if stem.lower() in p.name.lower()]
    return matching[0] if len(matching) == 1 else None


def _describe(found: _Found, name: ModelName, projector: Path | None) -> InPlaceModel | None:
    files = [*found.parts, *([projector] if projector else [])]
    h = hashlib.sha256()
    size = 0
    mtime_ns = 0
    for f in files:
        try:
            st = f.stat()
        except OSError:
            return None
        size += st.st_size
        mtime_ns = max(mtime_ns, st.st_mtime_ns)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return InPlaceModel(
        name=name,
        path=found.path,
        projector=projector,
        size=size,
        modified_at=datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).astimezone(),
        digest=h.hexdigest(),
    )


def scan_model_dirs(dirs: Sequence[Path]) -> list[InPlaceModel]:
    """Every in-place model below ``dirs``; on a name clash the first directory (then path) wins."""
    models: list[InPlaceModel] = []
    taken: set[tuple[str, str, str, str]] = set()
    for root in dirs:
        for directory, files in _walk(root):
            found, projectors = _group(directory, files)
            for item in sorted(found, key=lambda f: f.path.name):
                name = model_name_for(item.stem)
                if name is None:
                    continue
                if name.casefold_key in taken:
                    log.warning("in-place model name taken", path=str(item.path), name=name.display)
                    continue
                model = _describe(item, name, _projector_for(item.stem, projectors))
                if model is not None:
                    taken.add(name.casefold_key)
                    models.append(model)
    return models
