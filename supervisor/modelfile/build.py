"""``/api/create`` on the server: layers from blobs, a base model or a conversion, then the manifest.

The order is what makes a crash harmless: every layer is a blob written atomically under its digest,
the config blob next, and the manifest last, by an atomic rename. A crash before the rename leaves only
unreferenced blobs (pruned at start-up) and the old manifest, if any, untouched; a crash after it leaves
a complete model. While a create runs, its digests are pinned so that a concurrent delete cannot prune
them before the manifest references them (``store/guard.py``).

Progress follows Ollama's stream (reference/ollama-api.md §10.4): ``using existing layer sha256:…``
for base layers and uploaded files, ``parsing GGUF``, ``converting model``, ``quantizing F16 model to
Q4_K_M`` with counts, ``creating new layer sha256:…`` for text layers llamasup writes, ``writing
manifest``, ``success``. Llamasup does not add a template by matching the GGUF's chat template
against a list (Ollama's autodetection): without a TEMPLATE, llama-server renders the GGUF's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from .. import gojson
from ..errors import BadRequest, LlamasupError, ModelNotFound, StoreError
from ..protocol.create import CreateRequest
from ..runner.binary import find_tool
from ..store import ModelStore, read_gguf_info
from ..store.blobs import adopt_file, temp_blob_path, write_blob_bytes, write_blob_from_file
from ..store.gguf_info import GGUFInfo, config_from_gguf
from ..store.guard import Pins, StoreGuard
from ..store.index import ModelIndex, ModelRef
from ..store.inplace import is_split_part
from ..store.manifests import (
    CONFIG_MEDIA_TYPE,
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    ConfigV2,
    Layer,
    Manifest,
)
from ..store.names import ModelName
from ..store.prune import remove_unreferenced
from ..templates import TemplateSyntaxError, parse_ollama_template
from .convert import convert, find_converter
from .quantize import check_quantizable, quantize, quantize_type

log = structlog.get_logger("supervisor.create")
Progress = dict[str, Any]
_QUANTIZE_DIGEST = "0000000000000000000"  # what Ollama puts in quantize progress lines


@dataclass(frozen=True)
class BuildContext:
    store: ModelStore
    index: ModelIndex
    guard: StoreGuard
    llama_server: Path  # llama-quantize and the converter are found beside it


def check_template(template: str | None) -> None:
    """A TEMPLATE must parse as a Go template (Ollama: ``template error: …``, 400)."""
    if template is None:
        return
    try:
        parse_ollama_template(template)
    except TemplateSyntaxError as e:
        raise BadRequest(f"template error: {e}") from e


def _layer_kind(info: GGUFInfo) -> str:
    """Model, adapter (LoRA) or projector (mmproj), from the GGUF's metadata."""
    general_type = info.metadata.get("general.type")
    if general_type == "adapter" or "adapter.type" in info.metadata:
        return MEDIA_TYPE_ADAPTER
    if general_type in ("mmproj", "clip") or any(k.startswith("clip.") for k in info.metadata):
        return MEDIA_TYPE_PROJECTOR
    return MEDIA_TYPE_MODEL


def _status(text: str) -> Progress:
    return {"status": text}


class _Builder:
    """One create: accumulates layers, writes the manifest, prunes what it replaced."""

    def __init__(self, ctx: BuildContext, req: CreateRequest, pins: Pins) -> None:
        self.ctx = ctx
        self.req = req
        self.pins = pins
        self.layers: list[Layer] = []
        self.config = ConfigV2()
        self.work: list[Path] = []  # temp files to remove at the end

    def blob_path(self, digest: str) -> Path:
        return self.ctx.store.layout.blob_path(digest)

    def _require_blob(self, file_name: str, digest: str) -> Path:
        path = self.blob_path(digest)
        if not path.is_file():
            raise BadRequest(f"blob {digest} for {file_name!r} not found; upload it with POST /api/blobs/{digest}")
        self.pins.add(digest)
        return path

    async def _text_layer(self, media_type: str, data: bytes) -> Progress:
        existed = self.blob_path_for_bytes(data).is_file()
        digest = await asyncio.to_thread(write_blob_bytes, self.ctx.store.layout, data)
        self.pins.add(digest)
        self.layers.append(Layer(mediaType=media_type, digest=digest, size=len(data)))
        verb = "using existing" if existed else "creating new"
        return _status(f"{verb} layer {digest}")

    def blob_path_for_bytes(self, data: bytes) -> Path:
        return self.blob_path("sha256:" + hashlib.sha256(data).hexdigest())

    def _drop(self, *media_types: str) -> None:
        self.layers = [layer for layer in self.layers if layer.media_type not in media_types]

    # -- sources --------------------------------------------------------------------------------------
    async def from_base(self) -> AsyncGenerator[Progress, None]:
        name = ModelName.parse(self.req.from_)
        ref = await asyncio.to_thread(self.ctx.index.find, name)
        if ref is None:
            raise ModelNotFound(self.req.from_)
        self.config = await asyncio.to_thread(self.ctx.index.config, ref)
        if ref.in_place is not None:
            async for p in self._import_in_place(ref):
                yield p
            return
        assert ref.local is not None
        for layer in ref.local.manifest.layers:
            self.pins.add(layer.digest)
            if layer.media_type == MEDIA_TYPE_MODEL:
                layer = layer.model_copy(update={"from_": ref.display_name})
            self.layers.append(layer)
            yield _status(f"using existing layer {layer.digest}")

    async def _import_in_place(self, ref: ModelRef) -> AsyncGenerator[Progress, None]:
        """A base that is an in-place GGUF is copied into the store (a model must own its blobs)."""
        assert ref.in_place is not None
        sources = [(MEDIA_TYPE_MODEL, ref.in_place.path)]
        if ref.in_place.projector is not None:
            sources.append((MEDIA_TYPE_PROJECTOR, ref.in_place.projector))
        for media_type, path in sources:
            yield _status(f"copying {path.name}")
            digest = await asyncio.to_thread(write_blob_from_file, self.ctx.store.layout, path)
            self.pins.add(digest)
            size = self.blob_path(digest).stat().st_size
            self.layers.append(Layer(mediaType=media_type, digest=digest, size=size, **{"from": str(path)}))
            yield _status(f"creating new layer {digest}")

    async def from_files(self) -> AsyncGenerator[Progress, None]:
        files = self.req.files
        if any(name.lower().endswith(".safetensors") for name in files):
            async for p in self._convert(files):
                yield p
            return
        for name in files:
            if is_split_part(name.rsplit("/", 1)[-1]):
                raise BadRequest(
                    f"split GGUF files ({name}) are not supported yet; merge them into one file first "
                    "(llama-gguf-split --merge), or use the file in place with LLAMASUP_MODEL_DIRS"
                )
        ggufs: list[tuple[str, str, Path]] = []
        for name, digest in files.items():
            path = self._require_blob(name, digest)
            if await asyncio.to_thread(_is_gguf, path):
                ggufs.append((name, digest, path))
        if not ggufs:
            raise BadRequest("supplied file was not in GGUF format" if len(files) == 1 else "unknown type")
        models: list[Layer] = []
        others: list[Layer] = []
        for _, digest, path in ggufs:
            yield _status("parsing GGUF")
            info = await asyncio.to_thread(read_gguf_info, path)
            kind = _layer_kind(info)
            layer = Layer(mediaType=kind, digest=digest, size=path.stat().st_size, **{"from": str(path)})
            if kind == MEDIA_TYPE_MODEL:
                models.append(layer)
                self.config = _config_for(info, self.config)
            else:
                others.append(layer)
        if len(models) > 1:
            raise BadRequest("more than one model GGUF was supplied; a model has one weights file")
        if not models and not any(layer.media_type == MEDIA_TYPE_MODEL for layer in self.layers):
            raise BadRequest("no model weights were supplied: every GGUF given is an adapter or a projector")
        if models:
            self._drop(MEDIA_TYPE_MODEL)
        self.layers = models + self.layers + others
        for layer in models + others:
            yield _status(f"using existing layer {layer.digest}")

    async def _convert(self, files: dict[str, str]) -> AsyncGenerator[Progress, None]:
        """Rebuild the safetensors directory from blobs (links, no copies) and convert it to GGUF."""
        workdir = Path(tempfile.mkdtemp(prefix="llamasup-convert-"))
        try:
            for name, digest in files.items():
                src = self._require_blob(name, digest)
                dst = workdir / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                if workdir.resolve() not in dst.resolve().parents:  # belt and braces over the name check
                    raise BadRequest("file path must be relative")
                os.symlink(src, dst)
            yield _status("converting model")
            script = find_converter(self.ctx.llama_server)
            blobs = self.ctx.store.layout.blobs_dir
            out = await convert(workdir, blobs, script=script, progress=lambda line: log.debug("convert", line=line))
            self.work.append(out)
            digest = await asyncio.to_thread(adopt_file, self.ctx.store.layout, out)
            self.pins.add(digest)
            path = self.blob_path(digest)
            info = await asyncio.to_thread(read_gguf_info, path)
            self.config = _config_for(info, self.config)
            self._drop(MEDIA_TYPE_MODEL)
            self.layers.insert(0, Layer(mediaType=MEDIA_TYPE_MODEL, digest=digest, size=path.stat().st_size))
            yield _status(f"creating new layer {digest}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def adapters(self) -> AsyncGenerator[Progress, None]:
        for name, digest in self.req.adapters.items():
            if name.lower().endswith(".safetensors"):
                raise BadRequest(
                    "safetensors adapters are not supported yet; convert the adapter with llama.cpp's "
                    "convert_lora_to_gguf.py and create with ADAPTER <file>.gguf"
                )
            path = self._require_blob(name, digest)
            if not await asyncio.to_thread(_is_gguf, path):
                raise BadRequest("supplied file was not in GGUF format")
            yield _status("parsing GGUF")
            self._drop(MEDIA_TYPE_ADAPTER)
            self.layers.append(
                Layer(mediaType=MEDIA_TYPE_ADAPTER, digest=digest, size=path.stat().st_size, **{"from": str(path)})
            )
            yield _status(f"using existing layer {digest}")

    async def quantize(self) -> AsyncGenerator[Progress, None]:
        target = quantize_type(self.req.quantize)
        index = next((i for i, layer in enumerate(self.layers) if layer.media_type == MEDIA_TYPE_MODEL), None)
        if index is None:
            raise BadRequest("there are no model weights to quantize")
        source = self.layers[index]
        src_path = self.blob_path(source.digest)
        info = await asyncio.to_thread(read_gguf_info, src_path)
        check_quantizable(info.file_type)
        out = temp_blob_path(self.ctx.store.layout, suffix=".gguf.tmp")
        self.work.append(out)
        status = f"quantizing {info.file_type} model to {target}"
        counts: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        task = asyncio.ensure_future(
            quantize(find_tool(self.ctx.llama_server, "llama-quantize"), src_path, out, target, progress=lambda d, t: counts.put_nowait((d, t)))
        )
        async for done, total in _drain(task, counts):
            yield {"status": status, "digest": _QUANTIZE_DIGEST, "total": total, "completed": done}
        yield _status("verifying conversion")
        digest = await asyncio.to_thread(adopt_file, self.ctx.store.layout, out)
        self.pins.add(digest)
        path = self.blob_path(digest)
        new_info = await asyncio.to_thread(read_gguf_info, path)
        self.config = self.config.model_copy(update={"file_type": new_info.file_type})
        self.layers[index] = Layer(mediaType=MEDIA_TYPE_MODEL, digest=digest, size=path.stat().st_size)
        yield _status(f"creating new layer {digest}")

    # -- overlays -------------------------------------------------------------------------------------
    async def overlays(self, base_params: dict[str, Any]) -> AsyncGenerator[Progress, None]:
        req = self.req
        if req.template is not None:
            self._drop(MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT)
            yield await self._text_layer(MEDIA_TYPE_TEMPLATE, req.template.encode())
        if req.system is not None:
            self._drop(MEDIA_TYPE_SYSTEM)
            yield await self._text_layer(MEDIA_TYPE_SYSTEM, req.system.encode())
        for text in req.licenses:
            yield await self._text_layer(MEDIA_TYPE_LICENSE, text.encode())
        if req.parameters:
            merged = dict(base_params)
            merged.update(req.parameters)
            self._drop(MEDIA_TYPE_PARAMS)
            yield await self._text_layer(MEDIA_TYPE_PARAMS, encode_params(merged))
        if req.messages is not None:
            self._drop(MEDIA_TYPE_MESSAGES)
            if req.messages:
                yield await self._text_layer(MEDIA_TYPE_MESSAGES, gojson.dumps(list(req.messages)))

    def base_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for layer in self.layers:
            if layer.media_type == MEDIA_TYPE_PARAMS:
                try:
                    value = orjson.loads(self.blob_path(layer.digest).read_bytes())
                except (OSError, ValueError) as e:
                    raise StoreError(f"reading the base model's parameters: {e}") from e
                if isinstance(value, dict):
                    params.update(value)
        return params

    # -- finishing ------------------------------------------------------------------------------------
    async def write(self) -> None:
        """Config blob, then the manifest (atomic), then prune what the old manifest alone used."""
        req = self.req
        config = self.config
        overrides = {k: v for k, v in (("renderer", req.renderer), ("parser", req.parser), ("requires", req.requires)) if v}
        if overrides:
            config = config.model_copy(update=overrides)
        config = config.model_copy(update={"architecture": "amd64", "os": "linux"})
        data = config.to_bytes()
        digest = await asyncio.to_thread(write_blob_bytes, self.ctx.store.layout, data)
        self.pins.add(digest)
        manifest = Manifest(
            config=Layer(mediaType=CONFIG_MEDIA_TYPE, digest=digest, size=len(data)), layers=self.layers
        )
        store = self.ctx.store
        async with self.ctx.guard.lock:
            old = await asyncio.to_thread(store.resolve, req.name)
            written = await asyncio.to_thread(store.write_manifest, req.name, manifest.to_bytes())
            if old is not None:
                pinned = self.ctx.guard.pinned() - self.pins.digests
                removed = await asyncio.to_thread(remove_unreferenced, store, old.manifest.digests, pinned)
                if removed:
                    log.info("removed unused layers", model=written.display, blobs=len(removed))
        log.info("created model", model=written.display, layers=len(self.layers))

    def cleanup(self) -> None:
        for path in self.work:
            path.unlink(missing_ok=True)


def encode_params(params: dict[str, Any]) -> bytes:
    """The params layer: keys sorted as Go marshals a map; whole floats written as Go does (``1``)."""
    def go_number(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
            return int(value)
        return value

    return gojson.dumps({k: go_number(params[k]) for k in sorted(params)})


def _config_for(info: GGUFInfo, previous: ConfigV2) -> ConfigV2:
    fresh = config_from_gguf(info)
    keep = {k: getattr(previous, k) for k in ("renderer", "parser", "requires") if getattr(previous, k)}
    return fresh.model_copy(update=keep) if keep else fresh


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


async def _drain(task: asyncio.Future[None], queue: asyncio.Queue[Any]) -> AsyncGenerator[Any, None]:
    """Yield what a running task reports through ``queue`` until it ends; its error is raised,
    and if the consumer goes away the task is cancelled (and cleans up after itself)."""
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            while not queue.empty():
                yield queue.get_nowait()
            task.result()
            return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, LlamasupError):
                pass


async def create_model(ctx: BuildContext, req: CreateRequest) -> AsyncGenerator[Progress, None]:
    """The progress stream of one create; errors before the first line are real HTTP errors."""
    check_template(req.template)
    if req.quantize:
        quantize_type(req.quantize)
    if req.from_ and not req.files:
        name = ModelName.try_parse(req.from_)
        if name is None or await asyncio.to_thread(ctx.index.find, name) is None:
            raise ModelNotFound(req.from_)
    with ctx.guard.pin() as pins:
        builder = _Builder(ctx, req, pins)
        try:
            steps: list[Callable[[], AsyncGenerator[Progress, None]]] = []
            if req.from_:
                steps.append(builder.from_base)
            if req.files:
                steps.append(builder.from_files)
            if req.adapters:
                steps.append(builder.adapters)
            if req.quantize:
                steps.append(builder.quantize)
            for step in steps:
                async for progress in step():
                    yield progress
            async for progress in builder.overlays(builder.base_params()):
                yield progress
            await builder.write()
            yield _status("writing manifest")
            yield _status("success")
        finally:
            builder.cleanup()
