"""Pure checks for /api/create's quantize and convert steps: types, Ollama's errors, progress, lookup."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from supervisor.errors import ConversionError, LlamasupError, RunnerBinaryNotFound
from supervisor.modelfile.convert import SCRIPT, check_requirements, find_converter, missing_requirements
from supervisor.modelfile.quantize import check_quantizable, parse_progress, quantize_type
from supervisor.modelfile.tool import exit_status, split_lines
from supervisor.runner.binary import find_tool

UNSUPPORTED = "unsupported quantization type {} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0"


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("q8_0", "Q8_0"),
        ("Q4_K_M", "Q4_K_M"),
        ("q4_k_s", "Q4_K_S"),
        ("q4_K", "Q4_K_M"),
        ("f16", "F16"),
        ("bf16", "BF16"),
        ("F32", "F32"),
    ],
)
def test_quantize_type_accepts_ollamas_list(requested: str, expected: str) -> None:
    """Ollama's accepted types, in any case, map to llama-quantize's names (Q4_K is Q4_K_M)."""
    assert quantize_type(requested) == expected


@pytest.mark.parametrize("requested", ["q5_k_m", "Q4_0", "iq2_xs", "", "q8"])
def test_quantize_type_rejects_others_with_ollamas_text(requested: str) -> None:
    """An unknown type gets Ollama's exact message with the upper-cased request, status 500."""
    with pytest.raises(ConversionError) as err:
        quantize_type(requested)
    assert str(err.value) == UNSUPPORTED.format(requested.upper())
    assert err.value.status == 500


@pytest.mark.parametrize("source", ["F16", "BF16", "F32", "f16"])
def test_float_sources_are_quantizable(source: str) -> None:
    """16- and 32-bit float models may be quantized."""
    check_quantizable(source)


@pytest.mark.parametrize("source", ["Q8_0", "Q4_K_M", "unknown", "MXFP4_MOE"])
def test_quantized_sources_are_refused(source: str) -> None:
    """Already-quantized (or unknown) sources get Ollama's exact message."""
    with pytest.raises(ConversionError, match=r"^quantization is only supported for F16, BF16 and F32 models$"):
        check_quantizable(source)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[   1/  21] output.weight   - [   128,    550,      1,      1], type =    f16, converting to q8_0", (1, 21)),
        ("[  21/  21] blk.1.ffn_up.weight - [ 128, 384, 1, 1], type = f16, converting to q5_0 .. size = 0.09 MiB", (21, 21)),
        ("[1/3] x", (1, 3)),
        ("llama_model_loader: - kv   0:   general.architecture str = llama", None),
        ("warning: token_embd.weight - ncols 128 not divisible by 256", None),
        ("[   0/  21] impossible", None),
        ("[  22/  21] impossible", None),
    ],
)
def test_parse_progress(line: str, expected: tuple[int, int] | None) -> None:
    """Only llama-quantize's per-tensor lines count, as (completed, total)."""
    assert parse_progress(line) == expected


def test_split_lines_treats_carriage_returns_as_line_ends() -> None:
    """Progress bars redraw with \\r; each redraw is a line, and the unterminated rest is kept."""
    assert split_lines(b"a\nb\r\nc\rd") == ([b"a", b"b", b"c"], b"d")
    assert split_lines(b"") == ([], b"")


def test_exit_status_wording() -> None:
    """Exit codes and signals read like Go's exec errors."""
    assert exit_status(1) == "exit status 1"
    assert exit_status(-signal.SIGKILL) == "signal: SIGKILL"


def test_missing_requirements_names_the_extra() -> None:
    """A missing converter requirement is reported with the pip command that installs it."""
    needed = ["json", "llamasup_no_such_module", "no_such_parent.child"]
    assert missing_requirements(needed) == ["llamasup_no_such_module", "no_such_parent.child"]
    with pytest.raises(ConversionError) as err:
        check_requirements(needed)
    assert str(err.value) == (
        "converting safetensors models needs extra Python packages (llamasup_no_such_module, no_such_parent.child): "
        "pip install 'llamasup[convert]'"
    )
    check_requirements(["json", "os"])


def _fake_converter(root: Path) -> Path:
    (root / "conversion").mkdir(parents=True)
    (root / "conversion" / "__init__.py").write_text("")
    (root / "gguf-py").mkdir()
    (root / SCRIPT).write_text("")
    return root / SCRIPT


def test_find_converter_prefers_the_runner_copy(tmp_path: Path) -> None:
    """The converter beside the runner's bin/ wins over the source checkout."""
    runner_copy = _fake_converter(tmp_path / "runner" / "convert")
    (tmp_path / "runner" / "bin").mkdir()
    source = _fake_converter(tmp_path / "src")
    server = tmp_path / "runner" / "bin" / "llama-server"
    assert find_converter(server, source_tree=source.parent) == runner_copy
    assert find_converter(tmp_path / "elsewhere" / "bin" / "llama-server", source_tree=source.parent) == source
    assert find_converter(None, source_tree=source.parent) == source


def test_find_converter_names_build_runner_when_missing(tmp_path: Path) -> None:
    """No converter anywhere (or an incomplete copy) is a ConversionError that names build_runner.sh."""
    (tmp_path / "runner" / "convert").mkdir(parents=True)
    (tmp_path / "runner" / "convert" / SCRIPT).write_text("")  # no conversion/ beside it
    with pytest.raises(ConversionError, match="build_runner.sh"):
        find_converter(tmp_path / "runner" / "bin" / "llama-server", source_tree=tmp_path / "none")


def test_find_tool_next_to_llama_server(tmp_path: Path) -> None:
    """Tools are found beside llama-server; a missing one names build_runner.sh."""
    tool = tmp_path / "llama-quantize"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_tool(tmp_path / "llama-server", "llama-quantize") == tool
    with pytest.raises(RunnerBinaryNotFound, match="build_runner.sh") as err:
        find_tool(tmp_path / "llama-server", "ggml-rpc-server")
    assert isinstance(err.value, LlamasupError)
