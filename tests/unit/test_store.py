"""The model store: layout, manifests, listing and lookup, atomic blob and manifest writes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from supervisor.errors import BadRequest, StoreError
from supervisor.store import (
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    BlobWriter,
    ConfigV2,
    Manifest,
    ModelName,
    ModelStore,
    StoreLayout,
    digest_from_blob_name,
    is_valid_digest,
    normalize_digest,
    verify_blob,
    write_blob_bytes,
    write_blob_from_file,
    write_blob_from_stream,
)

HEX = "a" * 64
# A config blob as the registry serves older models: it still carries "rootfs".
REGISTRY_CONFIG = (
    b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
    b'"model_type":"3.2B","file_type":"Q4_K_M","architecture":"amd64","os":"linux",'
    b'"rootfs":{"type":"layers","diff_ids":["sha256:' + HEX.encode() + b'"]}}'
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(root: Path, data: bytes) -> tuple[str, int]:
    """Write a blob the way Ollama names it; return (digest, size)."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    digest = sha(data)
    (blobs / digest.replace(":", "-")).write_bytes(data)
    return digest, len(data)


def layer(media_type: str, digest: str, size: int, from_: str | None = None) -> dict[str, object]:
    out: dict[str, object] = {"mediaType": media_type, "digest": digest, "size": size}
    if from_ is not None:
        out["from"] = from_
    return out


def ollama_manifest_bytes(config: tuple[str, int], layers: list[dict[str, object]]) -> bytes:
    """A manifest exactly as Ollama's create writes it (Go JSON plus a newline)."""
    body = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config[0],
            "size": config[1],
        },
        "layers": layers,
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def put_manifest(root: Path, parts: tuple[str, str, str, str], data: bytes, mtime: int) -> Path:
    path = root.joinpath("manifests", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime, mtime))
    return path


T0 = 1_700_000_000 * 10**9


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """A store with three models: a created llama3.2, a pulled hf.co model, a namespaced one."""
    root = tmp_path / "models"
    weights = put_blob(root, b"GGUF-weights-1")
    template = put_blob(root, b"{{ .Prompt }}")
    system = put_blob(root, b"You are helpful.")
    params = put_blob(root, b'{"stop":["<|eot_id|>"],"temperature":0.6}')
    lic1 = put_blob(root, b"LICENSE ONE")
    lic2 = put_blob(root, b"LICENSE TWO")
    config = put_blob(root, REGISTRY_CONFIG)
    created = ollama_manifest_bytes(
        config,
        [
            layer(MEDIA_TYPE_MODEL, *weights, from_="llama3.2:1b"),
            layer(MEDIA_TYPE_TEMPLATE, *template),
            layer(MEDIA_TYPE_SYSTEM, *system),
            layer(MEDIA_TYPE_PARAMS, *params),
            layer(MEDIA_TYPE_LICENSE, *lic1),
            layer(MEDIA_TYPE_LICENSE, *lic2),
        ],
    )
    put_manifest(root, ("registry.ollama.ai", "library", "llama3.2", "latest"), created, T0)

    # Pulled from a registry: pretty-printed, unknown keys at every level, no trailing newline.
    weights2 = put_blob(root, b"GGUF-weights-2")
    config2 = put_blob(root, b'{"model_format":"gguf","model_family":"qwen2","rootfs":{}}')
    pulled = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config2[0],
            "size": config2[1],
            "annotations": {"x": "y"},
        },
        "layers": [
            {**layer(MEDIA_TYPE_MODEL, *weights2), "urls": ["https://cdn"], "annotations": {}},
        ],
        "annotations": {"org.opencontainers.image.created": "2025-01-01"},
        "subject": None,
    }
    put_manifest(
        root, ("hf.co", "bartowski", "Qwen2-GGUF", "Q4_K_M"), json.dumps(pulled, indent=3).encode(), T0 + 2 * 10**9
    )

    put_manifest(
        root,
        ("registry.ollama.ai", "jmorgan", "Mistral", "7B"),
        ollama_manifest_bytes(config, [layer(MEDIA_TYPE_MODEL, *weights)]),
        T0 + 1 * 10**9,
    )
    return ModelStore(StoreLayout(root))


# -- layout and digests ----------------------------------------------------------------------------


def test_layout_paths(tmp_path: Path) -> None:
    """Manifest and blob paths follow Ollama's layout, keeping the name's case."""
    layout = StoreLayout(tmp_path)
    name = ModelName.parse("Llama3.2")
    assert layout.manifest_path(name) == tmp_path / "manifests/registry.ollama.ai/library/Llama3.2/latest"
    assert layout.blob_path("sha256:" + "AB" * 32) == tmp_path / "blobs" / ("sha256-" + "ab" * 32)
    assert layout.blob_path("sha256-" + HEX) == tmp_path / "blobs" / ("sha256-" + HEX)
    assert not tmp_path.joinpath("manifests").exists()  # computing paths creates nothing


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("sha256:" + HEX, "sha256:" + HEX),
        ("sha256-" + HEX, "sha256:" + HEX),
        ("sha256:" + "A" * 64, "sha256:" + HEX),
        ("sha256:" + "0123456789abcdefABCDEF" * 2 + "0" * 20, "sha256:" + ("0123456789abcdefabcdef" * 2 + "0" * 20)),
        ("sha256:" + "a" * 63, None),
        ("sha256:" + "a" * 65, None),
        ("sha256:" + "g" * 64, None),
        ("sha512:" + HEX, None),
        ("SHA256:" + HEX, None),
        ("sha256_" + HEX, None),
        (HEX, None),
        ("sha256:" + HEX + "\n", None),
        (" sha256:" + HEX, None),
        ("", None),
    ],
)
def test_digest_validation(text: str, normal: str | None) -> None:
    """Digests match ^sha256[:-][0-9a-fA-F]{64}$ and normalise to sha256:<lower hex>."""
    assert is_valid_digest(text) is (normal is not None)
    if normal is None:
        with pytest.raises(BadRequest, match="^invalid digest format$"):
            normalize_digest(text)
    else:
        assert normalize_digest(text) == normal


def test_digest_from_blob_name() -> None:
    """Only real blob file names map back to digests; temp and partial files do not."""
    assert digest_from_blob_name("sha256-" + HEX) == "sha256:" + HEX
    assert digest_from_blob_name("sha256-" + HEX + "-partial") is None
    assert digest_from_blob_name("sha256-abc123.tmp") is None


# -- listing ---------------------------------------------------------------------------------------


def test_list_models_sorted_newest_first(store: ModelStore) -> None:
    """list_models returns every manifest, newest mtime first, names as stored on disk."""
    models = store.list_models()
    assert [m.name.display for m in models] == [
        "hf.co/bartowski/Qwen2-GGUF:Q4_K_M",
        "jmorgan/Mistral:7B",
        "llama3.2:latest",
    ]


def test_list_models_digest_size_and_time(store: ModelStore) -> None:
    """digest is sha256 of the manifest bytes, size sums layers and config, modified_at is local mtime."""
    by_name = {m.name.display: m for m in store.list_models()}
    m = by_name["llama3.2:latest"]
    raw = m.path.read_bytes()
    assert m.digest == hashlib.sha256(raw).hexdigest()
    assert len(m.digest) == 64
    manifest = json.loads(raw)
    assert m.size == manifest["config"]["size"] + sum(la["size"] for la in manifest["layers"])
    assert m.modified_at.tzinfo is not None
    assert m.modified_at.utcoffset() is not None
    assert m.modified_at.timestamp() == pytest.approx(T0 / 1e9)
    pulled = by_name["hf.co/bartowski/Qwen2-GGUF:Q4_K_M"]
    assert pulled.digest == hashlib.sha256(pulled.path.read_bytes()).hexdigest()
    assert pulled.modified_at - m.modified_at == timedelta(seconds=2)


def test_manifest_with_unknown_keys_is_read(store: ModelStore) -> None:
    """A registry manifest with extra keys at every level parses; layer fields are read."""
    pulled = store.resolve(ModelName.parse("hf.co/bartowski/Qwen2-GGUF:Q4_K_M"))
    assert pulled is not None
    assert pulled.manifest.layers[0].media_type == MEDIA_TYPE_MODEL
    assert pulled.manifest.config.size > 0
    assert store.read_config(pulled).model_family == "qwen2"


def test_corrupt_manifest_is_skipped_with_warning(store: ModelStore) -> None:
    """An unparseable manifest is logged and left out; the others are still listed."""
    root = store.layout.root
    bad = put_manifest(root, ("registry.ollama.ai", "library", "broken", "latest"), b"{not json", T0 + 9 * 10**9)
    put_manifest(root, ("registry.ollama.ai", "library", "nolayers", "x"), b'{"schemaVersion":2}', T0)
    with capture_logs() as logs:
        names = [m.name.display for m in store.list_models()]
    assert "broken:latest" not in names and "nolayers:x" not in names
    assert len(names) == 3
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert {e["path"] for e in warned} == {str(bad), str(root / "manifests/registry.ollama.ai/library/nolayers/x")}


def test_stray_files_are_not_models(store: ModelStore) -> None:
    """Files at the wrong depth, temp files and invalid names are ignored silently."""
    root = store.layout.root
    (root / "manifests" / "README").write_text("hi")
    (root / "manifests/registry.ollama.ai/library/stray").write_text("hi")
    put_manifest(root, ("registry.ollama.ai", "library", "llama3.2", ".latest.abc.tmp"), b"{", T0)
    put_manifest(root, ("registry.ollama.ai", "bad.ns", "m", "latest"), b"{", T0)
    (root / "manifests/registry.ollama.ai/library/llama3.2/dir-as-tag").mkdir()
    with capture_logs() as logs:
        assert len(store.list_models()) == 3
    assert logs == []


def test_empty_or_missing_store(tmp_path: Path) -> None:
    """A store without a manifests directory lists nothing and resolves nothing."""
    store = ModelStore(StoreLayout(tmp_path / "nothing"))
    assert store.list_models() == []
    assert store.resolve(ModelName.parse("llama3.2")) is None


# -- lookup ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("LLAMA3.2", "llama3.2:latest"),
        ("Registry.Ollama.AI/LIBRARY/llama3.2:LATEST", "llama3.2:latest"),
        ("jmorgan/mistral:7b", "jmorgan/Mistral:7B"),
        ("HF.CO/Bartowski/qwen2-gguf:q4_k_m", "hf.co/bartowski/Qwen2-GGUF:Q4_K_M"),
    ],
)
def test_resolve_ignores_case(store: ModelStore, query: str, stored: str) -> None:
    """resolve matches every part case-insensitively and returns the on-disk spelling."""
    model = store.resolve(ModelName.parse(query))
    assert model is not None
    assert model.name.display == stored


@pytest.mark.parametrize("query", ["llama3.2:1b", "mistral:7b", "other/llama3.2", "example.com/library/llama3.2"])
def test_resolve_absent(store: ModelStore, query: str) -> None:
    """resolve returns None for a model that is not in the store."""
    assert store.resolve(ModelName.parse(query)) is None


def test_resolve_prefers_exact_case(store: ModelStore) -> None:
    """When names differing only in case both exist, the exact spelling wins."""
    root = store.layout.root
    src = root / "manifests/registry.ollama.ai/library/llama3.2/latest"
    put_manifest(root, ("registry.ollama.ai", "library", "Llama3.2", "latest"), src.read_bytes(), T0)
    exact = store.resolve(ModelName.parse("Llama3.2"))
    assert exact is not None and exact.name.model == "Llama3.2"
    exact = store.resolve(ModelName.parse("llama3.2"))
    assert exact is not None and exact.name.model == "llama3.2"


def test_resolve_corrupt_manifest_raises(store: ModelStore) -> None:
    """Asking by name for a model whose manifest is corrupt is a StoreError, not 'not found'."""
    put_manifest(store.layout.root, ("registry.ollama.ai", "library", "broken", "latest"), b"[]", T0)
    with pytest.raises(StoreError, match="invalid manifest"):
        store.resolve(ModelName.parse("broken"))


# -- reading layers --------------------------------------------------------------------------------


def test_read_config_ignores_rootfs(store: ModelStore) -> None:
    """The config blob is read, with the legacy rootfs key ignored."""
    model = store.resolve(ModelName.parse("llama3.2"))
    assert model is not None
    config = store.read_config(model)
    assert config == ConfigV2(
        model_format="gguf",
        model_family="llama",
        model_families=["llama"],
        model_type="3.2B",
        file_type="Q4_K_M",
        architecture="amd64",
        os="linux",
    )


def test_missing_config_blob_is_store_error(store: ModelStore) -> None:
    """A missing config blob raises StoreError naming the model and the digest."""
    model = store.resolve(ModelName.parse("llama3.2"))
    assert model is not None
    store.layout.blob_path(model.manifest.config.digest).unlink()
    with pytest.raises(StoreError, match=r"'llama3.2:latest' is missing blob sha256:[0-9a-f]{64}"):
        store.read_config(model)


def test_model_blob(store: ModelStore) -> None:
    """model_blob is the model layer's blob path; a missing blob is a StoreError."""
    model = store.resolve(ModelName.parse("llama3.2"))
    assert model is not None
    path = store.model_blob(model)
    assert path.read_bytes() == b"GGUF-weights-1"
    assert model.manifest.layers_of(MEDIA_TYPE_MODEL)[0].from_ == "llama3.2:1b"
    assert store.layer_blobs(model, MEDIA_TYPE_PROJECTOR) == []
    path.unlink()
    with pytest.raises(StoreError, match="missing its weights"):
        store.model_blob(model)


def test_model_without_model_layer(tmp_path: Path) -> None:
    """A manifest with no model layer makes model_blob a StoreError."""
    config = put_blob(tmp_path, b"{}")
    put_manifest(tmp_path, ("registry.ollama.ai", "library", "empty", "latest"), ollama_manifest_bytes(config, []), T0)
    store = ModelStore(StoreLayout(tmp_path))
    model = store.resolve(ModelName.parse("empty"))
    assert model is not None
    with pytest.raises(StoreError, match="no model layer"):
        store.model_blob(model)
    assert store.read_params(model) == {}
    assert store.read_text_layer(model, MEDIA_TYPE_TEMPLATE) is None
    assert store.read_messages(model) == []


def test_text_layers_and_params(store: ModelStore) -> None:
    """Template, system, licenses (joined) and params are read from their layers."""
    model = store.resolve(ModelName.parse("llama3.2"))
    assert model is not None
    assert store.read_text_layer(model, MEDIA_TYPE_TEMPLATE) == "{{ .Prompt }}"
    assert store.read_text_layer(model, MEDIA_TYPE_SYSTEM) == "You are helpful."
    assert store.read_text_layer(model, MEDIA_TYPE_LICENSE) == "LICENSE ONE\nLICENSE TWO"
    assert store.read_params(model) == {"stop": ["<|eot_id|>"], "temperature": 0.6}
    other = store.resolve(ModelName.parse("jmorgan/mistral:7b"))
    assert other is not None
    assert store.read_text_layer(other, MEDIA_TYPE_SYSTEM) is None
    assert store.read_params(other) == {}


def test_legacy_prompt_layer_is_a_template(tmp_path: Path) -> None:
    """An old 'prompt' media-type layer is read as the template."""
    config = put_blob(tmp_path, b"{}")
    prompt = put_blob(tmp_path, b"[INST] {{ .Prompt }} [/INST]")
    data = ollama_manifest_bytes(config, [layer("application/vnd.ollama.image.prompt", *prompt)])
    put_manifest(tmp_path, ("registry.ollama.ai", "library", "old", "latest"), data, T0)
    store = ModelStore(StoreLayout(tmp_path))
    model = store.resolve(ModelName.parse("old"))
    assert model is not None
    assert store.read_text_layer(model, MEDIA_TYPE_TEMPLATE) == "[INST] {{ .Prompt }} [/INST]"


# -- manifest encoding and writing -----------------------------------------------------------------


def test_manifest_to_bytes_matches_go_encoding(store: ModelStore) -> None:
    """Re-encoding a created manifest reproduces Ollama's bytes (field order, omitempty, newline)."""
    model = store.resolve(ModelName.parse("llama3.2"))
    assert model is not None
    assert model.manifest.to_bytes() == model.path.read_bytes()
    assert Manifest.parse(model.manifest.to_bytes()) == model.manifest


def test_config_to_bytes_omits_empty() -> None:
    """ConfigV2.to_bytes writes Go's field order and leaves empty omitempty fields out."""
    data = ConfigV2(model_format="gguf", model_family="llama", model_families=["llama"], architecture="amd64", os="linux")
    assert data.to_bytes() == (
        b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
        b'"model_type":"","file_type":"","architecture":"amd64","os":"linux"}'
    )


def test_write_manifest_is_atomic_and_listed(tmp_path: Path) -> None:
    """write_manifest creates directories, stores the exact bytes, leaves no temp file."""
    store = ModelStore(StoreLayout(tmp_path / "models"))
    config = put_blob(store.layout.root, b"{}")
    data = ollama_manifest_bytes(config, [])
    written = store.write_manifest(ModelName.parse("ns/new:v1"), data)
    path = store.layout.manifest_path(written)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    [model] = store.list_models()
    assert model.name.display == "ns/new:v1"
    assert model.digest == hashlib.sha256(data).hexdigest()


def test_write_manifest_replaces_case_insensitively(store: ModelStore) -> None:
    """Writing FOO over an existing foo replaces foo's manifest instead of adding a second one."""
    config = put_blob(store.layout.root, b"{}")
    data = ollama_manifest_bytes(config, [])
    written = store.write_manifest(ModelName.parse("LLAMA3.2"), data)
    assert written.display == "llama3.2:latest"
    assert len(store.list_models()) == 3
    model = store.resolve(ModelName.parse("llama3.2"))
    assert model is not None and model.path.read_bytes() == data


def test_write_manifest_rejects_garbage(tmp_path: Path) -> None:
    """Bytes that are not a manifest are refused before anything is written."""
    store = ModelStore(StoreLayout(tmp_path))
    with pytest.raises(StoreError):
        store.write_manifest(ModelName.parse("x"), b"not json")
    assert not (tmp_path / "manifests").exists()


# -- blobs -----------------------------------------------------------------------------------------


def blob_dir_names(layout: StoreLayout) -> list[str]:
    return sorted(p.name for p in layout.blobs_dir.iterdir())


def test_write_blob_bytes(tmp_path: Path) -> None:
    """write_blob_bytes stores content under its digest with mode 0644 and no temp files."""
    layout = StoreLayout(tmp_path / "models")
    digest = write_blob_bytes(layout, b"hello")
    assert digest == sha(b"hello")
    path = layout.blob_path(digest)
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert blob_dir_names(layout) == [path.name]
    assert verify_blob(layout, digest)


def test_existing_blob_is_touched_not_rewritten(tmp_path: Path) -> None:
    """Writing a blob that exists keeps the file and refreshes its mtime."""
    layout = StoreLayout(tmp_path)
    digest = write_blob_bytes(layout, b"same")
    path = layout.blob_path(digest)
    os.utime(path, ns=(T0, T0))
    inode = path.stat().st_ino
    assert write_blob_bytes(layout, b"same") == digest
    assert path.stat().st_ino == inode
    assert path.stat().st_mtime_ns > T0
    assert blob_dir_names(layout) == [path.name]


def test_write_blob_from_file(tmp_path: Path) -> None:
    """write_blob_from_file hashes while copying and leaves the source alone."""
    src = tmp_path / "model.gguf"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    src.write_bytes(data)
    layout = StoreLayout(tmp_path / "models")
    digest = write_blob_from_file(layout, src)
    assert digest == sha(data)
    assert layout.blob_path(digest).read_bytes() == data
    assert src.read_bytes() == data


def test_write_blob_from_missing_file(tmp_path: Path) -> None:
    """A missing source file is a StoreError."""
    with pytest.raises(StoreError):
        write_blob_from_file(StoreLayout(tmp_path), tmp_path / "nope.gguf")


class FailingStream(io.BytesIO):
    """Yields some bytes, then fails like a disk or network error."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.left = good

    def read(self, size: int | None = -1) -> bytes:
        if self.left <= 0:
            raise OSError("source went away")
        n = min(size if size and size > 0 else 4096, self.left, 4096)
        self.left -= n
        return b"x" * n


def test_failed_source_read_leaves_no_temp_file(tmp_path: Path) -> None:
    """A source that fails mid-way raises and leaves neither a temp file nor a blob behind."""
    layout = StoreLayout(tmp_path)
    with pytest.raises(OSError, match="source went away"):
        write_blob_from_stream(layout, FailingStream(10_000))
    assert blob_dir_names(layout) == []


def test_rejected_digest_leaves_no_temp_file(tmp_path: Path) -> None:
    """Leaving a BlobWriter without commit (e.g. a digest mismatch) discards the temp file."""
    layout = StoreLayout(tmp_path)
    with pytest.raises(BadRequest):
        with BlobWriter(layout) as writer:
            writer.write(b"abc")
            if writer.digest != "sha256:" + HEX:
                raise BadRequest("digest mismatch")
            writer.commit()
    assert blob_dir_names(layout) == []


def test_verify_blob_detects_corruption(tmp_path: Path) -> None:
    """verify_blob is false for a missing blob or one whose content no longer matches."""
    layout = StoreLayout(tmp_path)
    digest = write_blob_bytes(layout, b"content")
    assert verify_blob(layout, digest)
    layout.blob_path(digest).write_bytes(b"tampered")
    assert not verify_blob(layout, digest)
    assert not verify_blob(layout, "sha256:" + HEX)


def test_resolve_sees_a_manifest_replaced_under_the_same_name(store: ModelStore, tmp_path: Path) -> None:
    """Parsed manifests are kept by file identity; one replaced as writers do (a new file renamed
    over it), even with the same size and mtime, is read again, and a deleted one is gone."""
    name = ModelName.parse("jmorgan/Mistral:7B")
    before = store.resolve(name)
    assert before is not None and store.resolve(name) is before  # kept, not parsed again
    root = tmp_path / "models"
    old = before.path.read_bytes()
    new = old.replace(b'"schemaVersion":2', b'"schemaVersion": 2')
    new = new[: len(old)] if len(new) > len(old) else new
    replacement = put_manifest(root, ("registry.ollama.ai", "jmorgan", "Mistral", "7B.new"), new + b" " * (len(old) - len(new)), T0 + 1 * 10**9)  # fmt: skip
    os.replace(replacement, before.path)
    after = store.resolve(name)
    assert after is not None and after.digest == hashlib.sha256(after.path.read_bytes()).hexdigest() != before.digest
    after.path.unlink()
    assert store.resolve(name) is None
    assert store.resolve(ModelName.parse("JMORGAN/mistral:7b")) is None
