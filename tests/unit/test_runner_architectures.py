"""The architecture list build_runner.sh writes beside a build, and the refusal read from it
(runner/binary.py); the list of the real build is checked too."""

from __future__ import annotations

from pathlib import Path

from supervisor.runner.binary import ARCHITECTURES_FILE, RunnerArchitectures, runner_architectures


def _build(root: Path, listing: str | None) -> Path:
    """A runner directory shaped as build_runner.sh makes it: ``bin/llama-server`` and the list."""
    (root / "bin").mkdir(parents=True)
    binary = root / "bin" / "llama-server"
    binary.write_text("#!/bin/sh\n")
    if listing is not None:
        (root / ARCHITECTURES_FILE).write_text(listing)
    return binary


def test_the_list_beside_the_build_is_read(tmp_path: Path) -> None:
    archs = runner_architectures(_build(tmp_path, "llama\nqwen3\n\nbert\n"))
    assert archs is not None
    assert archs.names == {"llama", "qwen3", "bert"} and archs.source == tmp_path / ARCHITECTURES_FILE


def test_a_link_to_the_binary_finds_the_list_of_the_build_it_points_to(tmp_path: Path) -> None:
    binary = _build(tmp_path / "runner", "llama\n")
    link = tmp_path / "elsewhere" / "llama-server"
    link.parent.mkdir()
    link.symlink_to(binary)
    archs = runner_architectures(link)
    assert archs is not None and archs.names == {"llama"}


def test_a_build_without_a_list_checks_nothing(tmp_path: Path) -> None:
    assert runner_architectures(_build(tmp_path / "a", None)) is None
    assert runner_architectures(_build(tmp_path / "b", "\n")) is None


def test_refusal_names_the_architecture_the_model_and_the_fix(tmp_path: Path) -> None:
    archs = RunnerArchitectures(frozenset({"llama"}), tmp_path / ARCHITECTURES_FILE)
    assert archs.refusal("team/m:1", "llama") is None
    why = archs.refusal("team/m:1", "futurenet")
    assert why is not None
    assert "team/m:1" in why and "'futurenet'" in why and str(archs.source) in why
    assert "build_runner.sh" in why and "LLAMASUP_LLAMA_SERVER" in why and "pull again" in why
    missing = archs.refusal("team/m:1", "")
    assert missing is not None and "no model architecture" in missing


def test_the_real_build_lists_what_its_llama_cpp_names(llama_server_bin: Path) -> None:
    """build_runner.sh's list holds the loadable architectures (the tests' models' among them) and
    none of llama.cpp's placeholders."""
    archs = runner_architectures(llama_server_bin)
    assert archs is not None
    assert {"llama", "bert", "qwen2", "gemma3"} <= archs.names
    assert "clip" not in archs.names and "(unknown)" not in archs.names
    assert len(archs.names) > 100
