"""``llamasup create -f Modelfile`` as a real process against llamasup with the real llama-server, and the
round trip Modelfile → model → ``show`` Modelfile → model that must give the same manifest."""

from __future__ import annotations

from pathlib import Path

import ollama
import pytest
from aiohttp.test_utils import TestServer

from tests.cli import run_cli
from tests.conftest import base_url
from tests.models import write_model

pytestmark = pytest.mark.e2e

MODELFILE = '''# a comment
from ./weights/little.gguf
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}<|im_start|>user
{{ .Prompt }}<|im_end|>
<|im_start|>assistant
"""
SYSTEM """You are "helpful".
Answer briefly."""
PARAMETER temperature 0.7
PARAMETER stop <|im_end|>
PARAMETER stop "<|im_start|>"
PARAMETER num_ctx 512
MESSAGE user Hi there
MESSAGE assistant Hello!
LICENSE """MIT License
Copyright nobody"""
'''


def manifest_bytes(models_dir: Path, model: str) -> bytes:
    return (models_dir / "manifests" / "registry.ollama.ai" / "library" / model / "latest").read_bytes()


async def test_create_from_modelfile_and_round_trip(real_server: TestServer, models_dir: Path, tmp_path: Path) -> None:
    """The CLI uploads the Modelfile's GGUF and creates the model, which answers generate; the Modelfile
    that show prints creates a model with a byte-identical manifest."""
    url = base_url(real_server)
    work = tmp_path / "work"
    write_model(work / "weights" / "little.gguf", seed=3)
    (work / "Modelfile").write_text(MODELFILE)

    code, out, err = await run_cli(url, "create", "rt-one", cwd=work)
    assert (code, out) == (0, ""), err
    lines = err.splitlines()  # the progress, as plain lines off a terminal
    assert lines[0] == "gathering model components"
    assert "parsing GGUF" in lines and lines[-2:] == ["writing manifest", "success"]

    client = ollama.AsyncClient(host=url)
    shown = await client.show("rt-one")
    assert shown.parameters is not None and "num_ctx" in shown.parameters
    reply = await client.generate(model="rt-one", prompt="Hi", options={"num_predict": 4})
    assert reply.eval_count == 4

    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "Modelfile").write_text(shown.modelfile or "")
    code, out, err = await run_cli(url, "create", "rt-two", "-f", str(tmp_path / "again" / "Modelfile"), cwd=tmp_path)
    assert code == 0, err
    assert "creating new layer" not in err  # every layer already exists
    assert manifest_bytes(models_dir, "rt-two") == manifest_bytes(models_dir, "rt-one")


async def test_cli_create_errors(real_server: TestServer, tmp_path: Path) -> None:
    """Errors are one line on stderr with a non-zero exit: a bad Modelfile line, a missing -f file,
    and an error the server streams."""
    url = base_url(real_server)
    (tmp_path / "Modelfile").write_text("FROM tiny\nPARAMETER temperature hot\n")
    code, _, err = await run_cli(url, "create", "x", cwd=tmp_path)
    assert code == 1 and err.strip() == "Error: (line 2): invalid float value [hot]"
    code, _, err = await run_cli(url, "create", "x", "-f", "nope", cwd=tmp_path)
    assert code == 1 and err.strip() == "Error: specified Modelfile wasn't found"
    (tmp_path / "Modelfile").write_text('FROM tiny\nTEMPLATE "{{ .Broken"\n')
    code, _, err = await run_cli(url, "create", "x", cwd=tmp_path)
    assert code == 1 and err.splitlines()[-1].startswith("Error: template error: ")
