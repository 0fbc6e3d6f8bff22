"""Client-side create requests: which local files go under which names, digests, and the JSON body."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from supervisor.errors import ModelfileError
from supervisor.modelfile.parser import ModelfileSpec, parse_modelfile, render_modelfile
from supervisor.modelfile.request import (
    CreatePlan,
    LocalFile,
    build_request,
    expand_path,
    model_files,
    plan_create,
    read_modelfile,
    sha256_file,
)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def _names(directory: Path) -> list[str]:
    return [p.relative_to(directory).as_posix() for p in model_files(directory)]


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        (["model.gguf"], ["model.gguf"]),
        (["a.gguf", "b.bin", "README.md"], ["a.gguf"]),
        (["weights.bin"], ["weights.bin"]),
        (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "x.gguf", "config.json"],
         ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json"]),
        (["sub/model.safetensors", "tokenizer.json", "tokenizer.model", "chat_template.jinja", "sub/config.json"],
         ["sub/model.safetensors", "tokenizer.json", "sub/config.json", "chat_template.jinja", "tokenizer.model"]),
        (["consolidated.safetensors", "pytorch_model.bin"], ["consolidated.safetensors"]),
        (["pytorch_model-1.bin", "consolidated.00.pth", "m.gguf"], ["pytorch_model-1.bin"]),
        (["consolidated.00.pth", "m.gguf"], ["consolidated.00.pth"]),
        (["adapter_model.safetensors", "adapter_config.json"], ["adapter_model.safetensors", "adapter_config.json"]),
    ],
)  # fmt: skip
def test_model_files(tmp_path: Path, present: list[str], expected: list[str]) -> None:
    """A directory contributes its first matching kind of weights plus config and tokenizer files."""
    _touch(tmp_path, *present)
    assert _names(tmp_path) == expected


def test_model_files_none_found(tmp_path: Path) -> None:
    """A directory without weights is Ollama's 'no Modelfile or safetensors files found'."""
    _touch(tmp_path, "notes.txt", "config.json")
    with pytest.raises(ModelfileError, match="^no Modelfile or safetensors files found$"):
        model_files(tmp_path)


def test_expand_path(tmp_path: Path) -> None:
    """Relative paths start at the Modelfile's directory; ~ is the home directory; absolute stays."""
    assert expand_path("w/m.gguf", tmp_path) == tmp_path / "w/m.gguf"
    assert expand_path("~/m.gguf", tmp_path) == Path.home() / "m.gguf"
    assert expand_path("/abs/m.gguf", tmp_path) == Path("/abs/m.gguf")


def test_plan_maps_every_instruction(tmp_path: Path) -> None:
    """Each instruction lands in its create field; FROM a name stays a name; files go by base name."""
    _touch(tmp_path, "lora.gguf", "draft/model.gguf", "draft/config.json")
    text = (
        "FROM llama3.2:1b\n"
        "ADAPTER ./lora.gguf\n"
        "DRAFT draft\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM be brief\n"
        "RENDERER r\nPARSER p\nREQUIRES 0.14.0\n"
        "LICENSE one\nLICENSE two\n"
        "MESSAGE user hi\nMESSAGE assistant hello\n"
        "PARAMETER temperature 0.2\nPARAMETER stop a\nPARAMETER stop b\n"
    )
    plan = plan_create(parse_modelfile(text), tmp_path, quantize="q4_K_M")
    assert plan.fields == {
        "from": "llama3.2:1b",
        "template": "{{ .Prompt }}",
        "system": "be brief",
        "renderer": "r",
        "parser": "p",
        "requires": "0.14.0",
        "license": ["one", "two"],
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "parameters": {"temperature": 0.2, "stop": ["a", "b"]},
        "quantize": "q4_K_M",
    }
    assert plan.files == ()
    assert plan.adapters == (LocalFile("lora.gguf", tmp_path / "lora.gguf"),)
    assert plan.draft_files == (
        LocalFile("model.gguf", tmp_path / "draft/model.gguf"),
        LocalFile("config.json", tmp_path / "draft/config.json"),
    )


def test_plan_from_files_and_projector(tmp_path: Path) -> None:
    """FROM an existing file or directory uploads it; several FROM paths merge into one files map."""
    _touch(tmp_path, "w/model.gguf", "w/config.json", "mmproj.gguf")
    plan = plan_create(parse_modelfile("FROM w\nFROM mmproj.gguf\n"), tmp_path)
    assert "from" not in plan.fields
    assert [f.name for f in plan.files] == ["model.gguf", "config.json", "mmproj.gguf"]
    assert plan.paths() == [tmp_path / "w/model.gguf", tmp_path / "w/config.json", tmp_path / "mmproj.gguf"]


def test_plan_last_single_value_wins(tmp_path: Path) -> None:
    """A repeated single-valued instruction keeps its last value, as in Ollama."""
    plan = plan_create(parse_modelfile("FROM a\nFROM b\nSYSTEM x\nSYSTEM y\n"), tmp_path)
    assert plan.fields == {"from": "b", "system": "y"}


def test_missing_adapter_is_an_error(tmp_path: Path) -> None:
    """An ADAPTER path that does not exist names the instruction and its line."""
    with pytest.raises(ModelfileError, match=r"^\(line 2\): ADAPTER nope.gguf: no such file or directory$"):
        plan_create(parse_modelfile("FROM m\nADAPTER nope.gguf\n"), tmp_path)


def test_sha256_file(tmp_path: Path) -> None:
    """Digests are sha256:<hex> of the whole file, also when it spans many chunks."""
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_size=1000) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_build_request() -> None:
    """The body has the model, the plain fields and one name → digest map per kind of file."""
    a, b = Path("/x/a.gguf"), Path("/x/b.gguf")
    plan = CreatePlan(fields={"system": "s"}, files=(LocalFile("a.gguf", a),), adapters=(LocalFile("b.gguf", b),))
    body = build_request("me/m:1", plan, {a: "sha256:aa", b: "sha256:bb"})
    assert body == {"model": "me/m:1", "system": "s", "files": {"a.gguf": "sha256:aa"}, "adapters": {"b.gguf": "sha256:bb"}}


def test_read_modelfile_default_is_from_dot(tmp_path: Path) -> None:
    """Without -f and without ./Modelfile, create behaves as 'FROM .' in the current directory."""
    mf, base = read_modelfile(None, tmp_path)
    assert mf.values("from") == ["."]
    assert base == tmp_path


def test_read_modelfile_default_file(tmp_path: Path) -> None:
    """Without -f, ./Modelfile is read, and its paths are relative to its directory."""
    (tmp_path / "Modelfile").write_text("FROM base\nSYSTEM hi\n")
    mf, base = read_modelfile(None, tmp_path)
    assert mf.values("system") == ["hi"]
    assert base == tmp_path


def test_read_modelfile_explicit(tmp_path: Path) -> None:
    """-f is relative to the current directory; relative paths inside start at the file's directory."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "My.modelfile").write_bytes(b"\xef\xbb\xbfFROM base\r\n")
    mf, base = read_modelfile("sub/My.modelfile", tmp_path)
    assert mf.values("from") == ["base"]
    assert base == tmp_path / "sub"


def test_read_modelfile_missing(tmp_path: Path) -> None:
    """A -f path that does not exist is Ollama's "specified Modelfile wasn't found"."""
    with pytest.raises(ModelfileError, match="^specified Modelfile wasn't found$"):
        read_modelfile("nope", tmp_path)


def test_show_modelfile_rebuilds_the_same_request(tmp_path: Path) -> None:
    """A Modelfile printed by show, fed back to create, asks for the same model (paths as files)."""
    blob = tmp_path / "blobs" / "sha256-aaa"
    _touch(tmp_path, "blobs/sha256-aaa")
    spec = ModelfileSpec(
        short_name="m:latest",
        model_path=str(blob),
        template='{{ .System }}\n"{{ .Prompt }}"',
        system="  spaced  ",
        parameters={"stop": ["</s>", "\n"], "top_k": 20, "temperature": 1e-05},
        licenses=["L1\nmore"],
        messages=[{"role": "user", "content": 'a "q"'}],
    )
    plan = plan_create(parse_modelfile(render_modelfile(spec)), tmp_path)
    body = build_request("copy", plan, {blob: "sha256:aaa"})
    assert body == {
        "model": "copy",
        "files": {"sha256-aaa": "sha256:aaa"},
        "template": spec.template,
        "system": "  spaced  ",
        "license": ["L1\nmore"],
        "messages": [{"role": "user", "content": 'a "q"'}],
        "parameters": {"stop": ["</s>", "\n"], "top_k": 20, "temperature": 1e-05},
    }
