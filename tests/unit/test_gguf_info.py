"""GGUF header facts, parameter-size formatting, capabilities and the derived config blob."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from supervisor.errors import StoreError
from supervisor.store import ConfigV2, capabilities, config_from_gguf, human_parameter_size, read_gguf_info
from supervisor.store.gguf_info import TensorInfo, file_type_name, guess_file_type, info_from_metadata

TEMPLATE = (
    "{% if tools %}{{ tools | tojson }}{% endif %}"
    "{% for m in messages %}<think></think>{{ m['content'] }}{% endfor %}"
)


def write_gguf(
    path: Path,
    *,
    file_type: gguf.LlamaFileType | None = gguf.LlamaFileType.MOSTLY_F16,
    template: str | None = TEMPLATE,
    pooling: bool = False,
    vision: bool = False,
) -> Path:
    """A tiny llama-architecture GGUF with two tensors (4x8 F16, 8 F32) and typical keys."""
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_name("Tiny Test")
    w.add_context_length(4096)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    if file_type is not None:
        w.add_file_type(file_type)
    if template is not None:
        w.add_chat_template(template)
    if pooling:
        w.add_pooling_type(gguf.PoolingType.MEAN)
    if vision:
        w.add_uint32("llama.vision.block_count", 2)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<s>", "</s>", "a", "b"])
    w.add_token_types([3, 3, 1, 1])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_read_gguf_info_fields(tmp_path: Path) -> None:
    """The named facts are read from the GGUF header."""
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf"))
    assert info.architecture == "llama"
    assert info.name == "Tiny Test"
    assert info.context_length == 4096
    assert info.embedding_length == 8
    assert info.block_count == 1
    assert info.head_count == 2
    assert info.head_count_kv == 1
    assert info.has_pooling_type is False
    assert info.chat_template == TEMPLATE
    assert (info.bos_token_id, info.eos_token_id) == (0, 1)
    assert info.file_type == "F16"
    assert info.parameter_count == 4 * 8 + 8


def test_metadata_values_decoded(tmp_path: Path) -> None:
    """metadata holds every KV pair decoded: strings, tuples for arrays, float32 at float32 precision."""
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf"))
    md = info.metadata
    assert md["general.architecture"] == "llama"
    assert md["tokenizer.ggml.tokens"] == ("<s>", "</s>", "a", "b")
    assert md["tokenizer.ggml.token_type"] == (3, 3, 1, 1)
    assert md["llama.attention.layer_norm_rms_epsilon"] == 1e-05
    assert md["tokenizer.ggml.add_bos_token"] is True
    assert md["general.file_type"] == 1
    assert not any(key.startswith("GGUF.") for key in md)
    with pytest.raises(TypeError):
        md["x"] = 1  # type: ignore[index]


def test_tensors_listed(tmp_path: Path) -> None:
    """Tensors are listed with type name, GGUF-order shape and element count."""
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf"))
    assert info.tensors == (
        TensorInfo("token_embd.weight", "F16", (8, 4), 32),
        TensorInfo("output_norm.weight", "F32", (8,), 8),
    )


def test_file_type_inferred_when_absent(tmp_path: Path) -> None:
    """Without general.file_type, the file type is that of the most common tensor type."""
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf", file_type=None))
    # One F16 and one F32 tensor: a tie, which llama.cpp resolves to the lower type id (F32 = 0).
    assert info.file_type == "F32"


def test_read_is_cached_and_invalidated(tmp_path: Path) -> None:
    """A second read returns the cached object; rewriting the file yields a fresh read."""
    path = write_gguf(tmp_path / "m.gguf")
    first = read_gguf_info(path)
    assert read_gguf_info(path) is first
    write_gguf(path, template=None)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = read_gguf_info(path)
    assert second is not first
    assert second.chat_template is None


def test_not_gguf(tmp_path: Path) -> None:
    """A file that is not GGUF raises StoreError saying so."""
    path = tmp_path / "x.bin"
    path.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(StoreError, match="not in GGUF format"):
        read_gguf_info(path)


def test_truncated_gguf(tmp_path: Path) -> None:
    """A truncated GGUF raises StoreError rather than a parser exception."""
    path = write_gguf(tmp_path / "m.gguf")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(StoreError):
        read_gguf_info(path)


def test_missing_file(tmp_path: Path) -> None:
    """A missing file raises StoreError."""
    with pytest.raises(StoreError):
        read_gguf_info(tmp_path / "absent.gguf")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1K"),
        (1_499, "1K"),
        (1_500, "2K"),
        (999_999, "1000K"),
        (1_000_000, "1M"),
        (1_240_000, "1.24M"),
        (135_000_000, "135M"),
        (134_515_008, "134.52M"),
        (999_999_999, "1000.00M"),
        (1_000_000_000, "1B"),
        (3_212_749_888, "3.2B"),
        (8_000_000_000, "8B"),
        (8_030_261_248, "8.0B"),
        (70_553_706_496, "70.6B"),
        (405_000_000_000, "405B"),
    ],
)
def test_human_parameter_size(n: int, text: str) -> None:
    """Parameter counts are formatted like Ollama's format.HumanNumber."""
    assert human_parameter_size(n) == text


@pytest.mark.parametrize(
    ("value", "name"),
    [(0, "F32"), (1, "F16"), (2, "Q4_0"), (7, "Q8_0"), (15, "Q4_K_M"), (18, "Q6_K"), (19, "IQ2_XXS"),
     (30, "IQ4_XS"), (32, "BF16"), (4, "unknown"), (1024, "unknown"), (9999, "unknown")],
)
def test_file_type_names(value: int, name: str) -> None:
    """general.file_type numbers map to Ollama's names via gguf's LlamaFileType."""
    assert file_type_name(value) == name


def tensor(kind: str, n: int = 10) -> TensorInfo:
    return TensorInfo(f"t{id(object())}", kind, (n,), n)


@pytest.mark.parametrize(
    ("types", "name"),
    [
        (["Q4_K", "Q4_K", "Q6_K", "F32"], "Q4_K_M"),
        (["Q3_K", "Q3_K", "F32"], "Q3_K_M"),
        (["Q8_0", "F32", "Q8_0"], "Q8_0"),
        (["F32", "F16"], "F32"),
        (["BF16"], "BF16"),
        (["MXFP4", "MXFP4", "F32"], "MXFP4_MOE"),
        (["Q8_K"], "unknown"),
        ([], "unknown"),
    ],
)
def test_guess_file_type(types: list[str], name: str) -> None:
    """The most common tensor type (ties to the lower type id) gives the file type, as llama.cpp."""
    assert guess_file_type(tuple(tensor(t) for t in types)) == name


def make_info(**metadata: Any) -> Any:
    md = {"general.architecture": "qwen3", **metadata}
    return info_from_metadata(md, (tensor("F16", 1_500_000_000),))


@pytest.mark.parametrize(
    ("metadata", "projector", "caps"),
    [
        ({}, False, ["completion"]),
        ({"qwen3.pooling_type": 1}, False, ["embedding"]),
        ({"qwen3.pooling_type": 0}, False, ["embedding"]),
        ({"qwen3.pooling_type": 4}, False, ["rerank"]),  # a cross-encoder: scores pairs, embeds nothing
        ({"tokenizer.chat_template": "{% for t in tools %}{% endfor %}"}, False, ["completion", "tools"]),
        ({"tokenizer.chat_template": "<tool_call>"}, False, ["completion", "tools"]),
        ({"tokenizer.chat_template": "<think>x</think>"}, False, ["completion", "thinking"]),
        ({"tokenizer.chat_template": "<think> only"}, False, ["completion"]),
        ({"tokenizer.chat_template": "{{ c.split('</think>')[-1] }}"}, False, ["completion", "thinking"]),
        ({}, True, ["completion", "vision"]),
        ({"qwen3.vision.block_count": 24}, False, ["completion", "vision"]),
        ({"tokenizer.chat_template": TEMPLATE}, True, ["completion", "vision", "tools", "thinking"]),
    ],
)
def test_capabilities(metadata: dict[str, Any], projector: bool, caps: list[str]) -> None:
    """Capabilities follow from pooling type, projector/vision keys and the Jinja template."""
    assert capabilities(make_info(**metadata), has_projector=projector) == caps


def test_capabilities_from_file(tmp_path: Path) -> None:
    """An embedding GGUF with a vision block count reports embedding and vision."""
    info = read_gguf_info(write_gguf(tmp_path / "e.gguf", template=None, pooling=True, vision=True))
    assert info.has_pooling_type
    assert capabilities(info) == ["embedding", "vision"]


def test_config_from_gguf(tmp_path: Path) -> None:
    """The config blob of a GGUF model names its format, family, size and file type."""
    info = make_info(**{"general.file_type": 15})
    assert config_from_gguf(info) == ConfigV2(
        model_format="gguf",
        model_family="qwen3",
        model_families=["qwen3"],
        model_type="1.5B",
        file_type="Q4_K_M",
        architecture="amd64",
        os="linux",
    )
