"""/api/create's conversion tools for real: convert_hf_to_gguf.py and llama-quantize on tiny models."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import gguf
import numpy as np
import psutil
import pytest

from supervisor.errors import ConversionError
from supervisor.modelfile.convert import convert, find_converter
from supervisor.modelfile.quantize import quantize
from supervisor.runner.binary import find_tool
from supervisor.store import read_gguf_info
from tests.hf_models import TINY_HF, expected_gguf_tensor_count, write_hf_llama
from tests.models import write_model


@pytest.fixture(scope="module")
def quantize_bin(llama_server_bin: Path) -> Path:
    return find_tool(llama_server_bin, "llama-quantize")


@pytest.fixture(scope="module")
def f16_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("src") / "tiny-f16.gguf", preset="tiny", file_type="F16")


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("src") / "tiny-f32.gguf", preset="tiny", file_type="F32")


@pytest.fixture(scope="module")
def wide_f16_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A llama GGUF with wide FFNs (~14M parameters, no tokenizer): quantizing it takes most of a second
    after the first tensor line, so a cancel on that line always meets a running llama-quantize."""
    n_embd, n_ff, n_layer, n_vocab = 512, 4096, 2, 256
    path = tmp_path_factory.mktemp("src") / "wide-f16.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    block = (np.random.default_rng(0).standard_normal(1 << 16) * 0.02).astype(np.float16)

    def mat(rows: int, cols: int) -> np.ndarray:
        return np.resize(block, (rows, cols))

    writer.add_tensor("output.weight", mat(n_vocab, n_embd))
    writer.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", mat(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _assert_readable(path: Path, tensors: int) -> gguf.GGUFReader:
    """Header and tensor table parse, and every tensor's data lies inside the file (what a load maps)."""
    reader = gguf.GGUFReader(path, "r")
    assert len(reader.tensors) == tensors
    size = path.stat().st_size
    assert all(t.data_offset + t.n_bytes <= size for t in reader.tensors)
    return reader


@pytest.mark.parametrize(("requested", "expected"), [("q8_0", "Q8_0"), ("q4_K_M", "Q4_K_M"), ("Q4_K_S", "Q4_K_S"), ("q4_k", "Q4_K_M")])
async def test_quantize_f16_writes_the_requested_type(
    quantize_bin: Path, f16_gguf: Path, tmp_path: Path, requested: str, expected: str
) -> None:
    """An F16 model quantizes to each accepted type; the file says so and progress counts every tensor."""
    dst = tmp_path / "out.gguf"
    seen: list[tuple[int, int]] = []
    await quantize(quantize_bin, f16_gguf, dst, requested, progress=lambda done, total: seen.append((done, total)))
    info = read_gguf_info(dst)
    assert info.file_type == expected
    assert info.architecture == "llama"
    _assert_readable(dst, len(read_gguf_info(f16_gguf).tensors))
    total = len(info.tensors)
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == list(range(1, total + 1))
    assert {t for _, t in seen} == {total}


async def test_quantize_f32_source(quantize_bin: Path, f32_gguf: Path, tmp_path: Path) -> None:
    """F32 models are quantizable too."""
    dst = tmp_path / "out.gguf"
    await quantize(quantize_bin, f32_gguf, dst, "Q8_0")
    assert read_gguf_info(dst).file_type == "Q8_0"


async def test_quantize_refuses_a_quantized_source(quantize_bin: Path, f16_gguf: Path, tmp_path: Path) -> None:
    """Quantizing a Q8_0 model fails with Ollama's message before any process runs."""
    q8 = tmp_path / "q8.gguf"
    await quantize(quantize_bin, f16_gguf, q8, "q8_0")
    dst = tmp_path / "again.gguf"
    with pytest.raises(ConversionError, match="^quantization is only supported for F16, BF16 and F32 models$"):
        await quantize(quantize_bin, q8, dst, "q4_K_M")
    assert not dst.exists()


async def test_quantize_failure_carries_exit_status_and_output(quantize_bin: Path, f16_gguf: Path, tmp_path: Path) -> None:
    """When llama-quantize fails, the error has its exit status and its last lines."""
    dst = tmp_path / "missing-dir" / "out.gguf"
    with pytest.raises(ConversionError) as err:
        await quantize(quantize_bin, f16_gguf, dst, "Q8_0")
    assert str(err.value).startswith("llama-quantize failed: exit status 1: ")
    assert "failed to quantize" in str(err.value)


async def test_cancel_mid_run_leaves_no_process_and_no_output(quantize_bin: Path, wide_f16_gguf: Path, tmp_path: Path) -> None:
    """Cancelling after the first tensor kills llama-quantize (reaped) and removes the partial file."""
    dst = tmp_path / "out.gguf"
    children: list[psutil.Process] = []
    task: asyncio.Task[None] | None = None

    def on_progress(done: int, total: int) -> None:
        if done == 1:
            for child in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.name() == quantize_bin.name:
                        children.append(child)
            for child in children:
                child.suspend()  # hold it mid-run, so the cancel meets a live process
            assert task is not None
            task.cancel()

    task = asyncio.create_task(quantize(quantize_bin, wide_f16_gguf, dst, "Q4_K_M", progress=on_progress))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children, "llama-quantize was not running when the first progress line arrived"
    assert all(not c.is_running() for c in children)
    assert not dst.exists()


async def test_convert_safetensors_to_f16_gguf_then_quantize(llama_server_bin: Path, quantize_bin: Path, tmp_path: Path) -> None:
    """A tiny HF llama converts to an F16 GGUF in the given directory, which then quantizes to Q8_0."""
    model = write_hf_llama(tmp_path / "hf")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    lines: list[str] = []
    out = await convert(model, blobs, script=find_converter(llama_server_bin), progress=lines.append)
    assert out.parent == blobs
    assert [p.name for p in blobs.iterdir()] == [out.name]
    info = read_gguf_info(out)
    assert info.architecture == "llama"
    assert info.file_type == "F16"
    assert info.embedding_length == TINY_HF.hidden_size
    assert info.block_count == TINY_HF.num_hidden_layers
    assert info.metadata["tokenizer.ggml.model"] == "llama"
    assert len(info.metadata["tokenizer.ggml.tokens"]) == TINY_HF.vocab_size
    _assert_readable(out, expected_gguf_tensor_count())
    assert any("Model successfully exported" in line for line in lines)

    q8 = blobs / "q8.gguf"
    await quantize(quantize_bin, out, q8, "q8_0")
    assert read_gguf_info(q8).file_type == "Q8_0"


async def test_convert_failure_reports_and_cleans_up(llama_server_bin: Path, tmp_path: Path) -> None:
    """An unsupported architecture fails with the converter's exit status and message; no file is left."""
    model = write_hf_llama(tmp_path / "hf")
    config = (model / "config.json").read_text().replace("LlamaForCausalLM", "NoSuchModelForCausalLM")
    (model / "config.json").write_text(config)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    with pytest.raises(ConversionError) as err:
        await convert(model, blobs, script=find_converter(llama_server_bin))
    assert "exit status 1" in str(err.value)
    assert "NoSuchModelForCausalLM" in str(err.value)
    assert list(blobs.iterdir()) == []
