"""Client side of ``llamasup create``: a Modelfile becomes the JSON ``/api/create`` request.

Ollama parses Modelfiles in the client, and the server only ever sees JSON plus blobs uploaded by
digest (reference §10.3); llamasup's CLI does the same, so any Ollama-compatible server works.

The work is split so each step can be tested on its own: ``plan_create`` decides which local files
go under which names (it only stats and lists directories), ``sha256_file`` hashes one file in
chunks (blocking: run it in a thread), the client uploads, and ``build_request`` is a pure function
of the plan and the digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelfileError
from .parser import Command, Modelfile, parse_modelfile

HASH_CHUNK = 1 << 20
ERR_NO_FILES = "no Modelfile or safetensors files found"
ERR_NO_MODELFILE = "specified Modelfile wasn't found"

# Weight files of a model directory, first pattern that matches wins (Ollama's order). The two
# adapter names are not in the reference's list; they let ``ADAPTER <dir>`` find PEFT/MLX adapters.
_WEIGHT_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("model*.safetensors", "*/model*.safetensors"),
    ("adapters.safetensors",),
    ("adapter_model.safetensors",),
    ("consolidated*.safetensors",),
    ("pytorch_model*.bin",),
    ("consolidated*.pth",),
    ("*.gguf",),
    ("*.bin",),
)
# Configuration and tokenizer files that travel with whichever weights were chosen.
_EXTRA_PATTERNS = ("*.json", "*/*.json", "chat_template.jinja", "tokenizer.model")


@dataclass(frozen=True)
class LocalFile:
    """A file to upload: ``name`` is its key in the request, relative to the directory given."""

    name: str
    path: Path


@dataclass(frozen=True)
class CreatePlan:
    """Everything the request needs except digests: plain fields, and the files per request map."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: tuple[LocalFile, ...] = ()
    adapters: tuple[LocalFile, ...] = ()
    draft_files: tuple[LocalFile, ...] = ()
    warnings: tuple[str, ...] = ()

    def paths(self) -> list[Path]:
        """Every file to hash and upload, each once, in request order."""
        return list(dict.fromkeys(f.path for f in (*self.files, *self.adapters, *self.draft_files)))


def read_modelfile(path_arg: str | None, cwd: Path) -> tuple[Modelfile, Path]:
    """The Modelfile to build and the directory its relative paths start from.

    Without ``-f``, ``./Modelfile`` if there is one, else ``FROM .`` (build from the current
    directory's weights); a ``-f`` file that does not exist is an error.
    """
    if path_arg is None:
        path = cwd / "Modelfile"
        if not path.is_file():
            return Modelfile((Command("from", "."),)), cwd
    else:
        path = expand_path(path_arg, cwd)
        if not path.exists():
            raise ModelfileError(ERR_NO_MODELFILE)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelfileError(f"read {path}: {e.strerror or e}") from e
    return parse_modelfile(data.decode("utf-8", errors="replace")), path.parent


def expand_path(arg: str, base_dir: Path) -> Path:
    """``~`` and ``~user`` expanded; a relative path taken from the Modelfile's directory."""
    path = Path(arg).expanduser()
    return path if path.is_absolute() else base_dir / path


def model_files(directory: Path) -> list[Path]:
    """The files of a model directory to upload: its weights plus config and tokenizer files."""
    weights: list[Path] = []
    for patterns in _WEIGHT_PATTERNS:
        weights = _glob(directory, patterns)
        if weights:
            break
    else:
        raise ModelfileError(ERR_NO_FILES)
    return list(dict.fromkeys([*weights, *_glob(directory, _EXTRA_PATTERNS)]))


def _glob(directory: Path, patterns: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        found += sorted(p for p in directory.glob(pattern) if p.is_file())
    return found


def local_files(path: Path) -> list[LocalFile]:
    """A file as itself (by base name), a directory as its model files (by relative name)."""
    if path.is_dir():
        return [LocalFile(p.relative_to(path).as_posix(), p) for p in model_files(path)]
    return [LocalFile(path.name, path)]


def _existing(arg: str, base_dir: Path) -> Path | None:
    path = expand_path(arg, base_dir)
    try:
        return path if path.exists() else None
    except OSError as e:
        raise ModelfileError(f"stat {path}: {e.strerror or e}") from e


def plan_create(modelfile: Modelfile, base_dir: Path, *, quantize: str = "") -> CreatePlan:
    """Map the commands onto ``/api/create`` fields; ``FROM`` an existing path becomes ``files``.

    Single-valued fields (``from``, TEMPLATE, SYSTEM, …) take the last occurrence, as in Ollama;
    files from several FROM/ADAPTER/DRAFT paths are merged (a later name replaces an earlier one).
    """
    fields: dict[str, Any] = {}
    files: dict[str, dict[str, LocalFile]] = {"files": {}, "adapters": {}, "draft_files": {}}
    licenses: list[str] = []
    messages: list[dict[str, str]] = []
    for cmd in modelfile.commands:
        if cmd.name in ("from", "adapter", "draft"):
            key = {"from": "files", "adapter": "adapters", "draft": "draft_files"}[cmd.name]
            path = _existing(cmd.args, base_dir)
            if path is not None:
                files[key].update((f.name, f) for f in local_files(path))
            elif cmd.name == "from":
                fields["from"] = cmd.args
            else:
                raise ModelfileError(f"{cmd.name.upper()} {cmd.args}: no such file or directory", line=cmd.line)
        elif cmd.name in ("template", "system", "renderer", "parser", "requires"):
            fields[cmd.name] = cmd.args
        elif cmd.name == "license":
            licenses.append(cmd.args)
        elif cmd.name == "message":
            messages.append({"role": cmd.key, "content": cmd.args})
    if licenses:
        fields["license"] = licenses
    if messages:
        fields["messages"] = messages
    if modelfile.parameters:
        fields["parameters"] = dict(modelfile.parameters)
    if quantize:
        fields["quantize"] = quantize
    return CreatePlan(
        fields=fields,
        files=tuple(files["files"].values()),
        adapters=tuple(files["adapters"].values()),
        draft_files=tuple(files["draft_files"].values()),
        warnings=modelfile.warnings,
    )


def sha256_file(path: Path, chunk_size: int = HASH_CHUNK) -> str:
    """``sha256:<hex>`` of a file, read in chunks so multi-GB weights never sit in memory."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def build_request(model: str, plan: CreatePlan, digests: Mapping[Path, str]) -> dict[str, Any]:
    """The ``/api/create`` body: ``model``, the plan's fields, and each file map as name → digest."""
    body: dict[str, Any] = {"model": model, **plan.fields}
    for key, entries in (("files", plan.files), ("adapters", plan.adapters), ("draft_files", plan.draft_files)):
        if entries:
            body[key] = {f.name: digests[f.path] for f in entries}
    return body
