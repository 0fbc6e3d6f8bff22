"""Store changes: pruning decisions, in-place GGUF discovery, the create request checks, the guard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.errors import BadRequest, InvalidJSON, InvalidModelName, InvalidOption
from supervisor.protocol.create import is_relative_file_name, parse_create_request
from supervisor.store.guard import StoreGuard
from supervisor.store.inplace import model_name_for, scan_model_dirs
from supervisor.store.prune import BlobFile, plan_prune
from supervisor.templates.capabilities import template_capabilities

HEX = "ab" * 32
OTHER = "cd" * 32


# -- pruning ----------------------------------------------------------------------------------------


def test_prune_keeps_referenced_and_young_blobs() -> None:
    """Only unreferenced blobs past the grace period are pruned."""
    files = [BlobFile(f"sha256-{HEX}", 7200), BlobFile(f"sha256-{OTHER}", 7200), BlobFile(f"sha256-{'ef' * 32}", 10)]
    plan = plan_prune(files, referenced={f"sha256:{HEX}"}, grace=3600)
    assert plan.blobs == (f"sha256-{OTHER}",)
    assert plan.junk == ()


def test_prune_removes_temp_files_at_once_and_partials_after_grace() -> None:
    """Upload temp files go immediately; download partials survive the grace period (resumable pulls)."""
    files = [
        BlobFile("sha256-k2j3h4.tmp", 1),
        BlobFile(f"sha256-{HEX}-partial", 10),
        BlobFile(f"sha256-{HEX}-partial-3", 10),
        BlobFile(f"sha256-{OTHER}-partial", 7200),
    ]
    plan = plan_prune(files, referenced=set(), grace=3600)
    assert plan.junk == (f"sha256-{OTHER}-partial", "sha256-k2j3h4.tmp")
    assert plan.blobs == ()


# -- in-place GGUFs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("Qwen2.5-0.5B-Instruct-Q4_K_M", "Qwen2.5-0.5B-Instruct-Q4_K_M:latest"),
        ("my model (v2)", "my-model-v2-:latest"),
        ("..hidden", "hidden:latest"),
        ("a" * 100, "a" * 80 + ":latest"),
    ],
)
def test_in_place_names_come_from_the_file_name(stem: str, expected: str) -> None:
    """A GGUF's file name becomes a valid model name (bad characters → '-', at most 80 chars)."""
    name = model_name_for(stem)
    assert name is not None and name.display == expected


def test_in_place_name_refused_when_nothing_is_left() -> None:
    """A stem with no usable character gives no model."""
    assert model_name_for("...") is None


def _touch(path: Path, data: bytes = b"GGUF") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_scan_finds_models_splits_and_projectors(tmp_path: Path) -> None:
    """Models are found below the directories; split parts are one model; a lone mmproj is attached."""
    root = tmp_path / "ggufs"
    _touch(root / "a.gguf")
    _touch(root / "vision" / "llava-7b.gguf")
    _touch(root / "vision" / "mmproj-llava-7b-f16.gguf")
    _touch(root / "big" / "big-00001-of-00002.gguf")
    _touch(root / "big" / "big-00002-of-00002.gguf", b"GGUF1234")
    _touch(root / "notes.txt")
    models = {m.name.display: m for m in scan_model_dirs([root])}
    assert sorted(models) == ["a:latest", "big:latest", "llava-7b:latest"]
    assert models["llava-7b:latest"].projector == root / "vision" / "mmproj-llava-7b-f16.gguf"
    assert models["a:latest"].projector is None
    assert models["big:latest"].path.name == "big-00001-of-00002.gguf"
    assert models["big:latest"].size == 4 + 8


def test_scan_first_directory_wins_and_digest_follows_the_file(tmp_path: Path) -> None:
    """On a name clash the earlier directory wins; rewriting the file changes the digest."""
    first = _touch(tmp_path / "one" / "m.gguf")
    _touch(tmp_path / "two" / "M.gguf")
    [model] = scan_model_dirs([tmp_path / "one", tmp_path / "two"])
    assert model.path == first
    before = model.digest
    first.write_bytes(b"GGUF-longer")
    os.utime(first, ns=(1, 10**18))
    [after] = scan_model_dirs([tmp_path / "one"])
    assert after.digest != before


def test_scan_several_projectors_attach_by_name(tmp_path: Path) -> None:
    """With several projectors in one directory, a model gets the one whose name contains its own."""
    root = tmp_path / "d"
    _touch(root / "alpha.gguf")
    _touch(root / "beta.gguf")
    _touch(root / "mmproj-alpha.gguf")
    _touch(root / "mmproj-gamma.gguf")
    models = {m.name.model: m for m in scan_model_dirs([root])}
    assert models["alpha"].projector == root / "mmproj-alpha.gguf"
    assert models["beta"].projector is None


# -- the create request -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a.gguf", "dir/a.safetensors", "a b.json", "tokenizer.model"],
)
def test_relative_file_names_accepted(name: str) -> None:
    """Plain relative names are file names."""
    assert is_relative_file_name(name)


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../a.gguf", "a/../../b", "./a", "a//b", "a\\b", "a\x00b", "a/"],
)
def test_unsafe_file_names_refused(name: str) -> None:
    """Absolute paths, '..', '.', empty elements, backslashes and NUL bytes are not file names."""
    assert not is_relative_file_name(name)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"model": "bad name!", "from": "x"}, InvalidModelName, "invalid model name"),
        ({"from": "x"}, InvalidModelName, "invalid model name"),
        ({"model": "x"}, BadRequest, "neither 'from' or 'files' was specified"),
        ({"model": "x", "files": {}}, BadRequest, "neither 'from' or 'files' was specified"),
        ({"model": "x", "files": {"../a.gguf": "sha256:" + HEX}}, BadRequest, "file path must be relative"),
        ({"model": "x", "files": {"/a.gguf": "sha256:" + HEX}}, BadRequest, "file path must be relative"),
        ({"model": "x", "files": {"a.gguf": ""}}, BadRequest, "invalid digest format"),
        ({"model": "x", "files": {"a.gguf": "sha256:zz"}}, BadRequest, "invalid digest format"),
        ({"model": "x", "from": "bad name!"}, InvalidModelName, "invalid model name"),
        ({"model": "x", "from": "m", "parameters": {"bogus": 1}}, BadRequest, "unknown parameter 'bogus'"),
        ({"model": "x", "from": "m", "parameters": {"temperature": "hot"}}, InvalidOption,
         'option "temperature" must be of type float32'),
        ({"model": "x", "from": 3}, InvalidJSON,
         "json: cannot unmarshal number 3 into Go struct field CreateRequest.from of type string"),
        ({"model": "x", "from": "m", "files": ["a"]}, InvalidJSON,
         "json: cannot unmarshal array into Go struct field CreateRequest.files of type map[string]string"),
    ],
)  # fmt: skip
def test_create_request_errors(body: dict[str, object], error: type[Exception], message: str) -> None:
    """Bad create requests are refused before anything is written, with Ollama's messages."""
    with pytest.raises(error) as exc:
        parse_create_request(body)
    assert str(exc.value) == message


def test_create_request_normalises_fields() -> None:
    """Digests are normalised, quantize upper-cased, a license string is a list, stop becomes a list."""
    req = parse_create_request(
        {
            "name": "Foo",
            "files": {"m.gguf": "sha256-" + HEX.upper()},
            "quantization": "q4_k_m",
            "license": "MIT",
            "parameters": {"stop": "<end>", "num_ctx": 8192.0, "mirostat": 1},
            "messages": [{"role": "user", "content": "hi"}],
            "stream": False,
        }
    )
    assert req.name.display == "Foo:latest"
    assert req.files == {"m.gguf": "sha256:" + HEX}
    assert req.quantize == "Q4_K_M"
    assert req.licenses == ("MIT",)
    assert req.parameters == {"stop": ["<end>"], "num_ctx": 8192}
    assert req.messages == ({"role": "user", "content": "hi"},)
    assert req.stream is False


# -- the guard --------------------------------------------------------------------------------------


def test_guard_pins_until_the_block_ends() -> None:
    """Digests pinned by two creates stay pinned until both end."""
    guard = StoreGuard()
    with guard.pin() as a:
        a.add("sha256:" + HEX)
        with guard.pin() as b:
            b.add("sha256:" + HEX)
            b.add("sha256:" + OTHER)
        assert guard.pinned() == {"sha256:" + HEX}
    assert guard.pinned() == frozenset()


# -- capabilities from a Go template ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "caps"),
    [
        ("{{ .Prompt }}", []),
        ("{{ if .Tools }}{{ json .Tools }}{{ end }}{{ .Prompt }}", ["tools"]),
        ("<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>", ["insert"]),
        ("{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}{{ end }}",
         ["thinking"]),
        ("{{ range .Messages }}{{ .Thinking }}{{ end }}", []),  # no tags around it: Ollama infers none
        ("{{ .Broken", []),
    ],
)  # fmt: skip
def test_template_capabilities(template: str, caps: list[str]) -> None:
    """A Go TEMPLATE gives tools (.Tools), insert (.Suffix) and thinking (.Thinking between tags in range .Messages)."""
    assert template_capabilities(template) == caps
