"""The ``llamasup`` subcommands that are API calls (``list``, ``ps``, ``show``, ``cp``, ``rm``, ``stop``,
``pull``, ``push``, ``--version``), run as real processes against llamasup with the real llama-server,
and for pull and push a real registry: their exact output, their effect, and their errors."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import ollama
import pexpect
import pytest
from aiohttp.test_utils import TestServer

from supervisor import __version__
from supervisor.api.ollama_routes import OLLAMA_VERSION
from supervisor.client.humanize import human_bytes
from tests.cli import run_cli
from tests.conftest import ROOT, base_url
from tests.net import free_port
from tests.registry_server import RegistryServer
from tests.store_helpers import install_gguf

pytestmark = pytest.mark.e2e
DAY = 86400


def _age(models_dir: Path, model: str, seconds: float) -> None:
    """Date the model's manifest (its MODIFIED time) ``seconds`` back."""
    manifest = models_dir / "manifests" / "registry.ollama.ai" / "library" / model / "latest"
    then = time.time() - seconds
    os.utime(manifest, (then, then))


async def test_list_ps_and_show_print_what_ollama_prints(real_server: TestServer, models_dir: Path, tiny_gguf: Path) -> None:
    """list: NAME ID SIZE MODIFIED; ps: NAME ID SIZE PROCESSOR CONTEXT UNTIL; show: the sections, and
    one field per flag; columns padded as Ollama's tables are (four spaces after every cell)."""
    url = base_url(real_server)
    install_gguf(models_dir, "brief", tiny_gguf, params={"temperature": 0.5, "stop": ["<|end|>"]}, system="Be brief.\nReally.")
    _age(models_dir, "brief", 3 * DAY + 60)
    _age(models_dir, "tiny", 2 * 3600 + 60)
    client = ollama.AsyncClient(host=url)
    tags = {m.model: m for m in (await client.list()).models}
    digest, size = (tags["tiny:latest"].digest or "")[:12], human_bytes(tags["tiny:latest"].size or 0)
    brief = (tags["brief:latest"].digest or "")[:12]  # the manifest's digest: other layers than tiny's

    code, out, err = await run_cli(url, "list")
    assert (code, err) == (0, "")
    width = len(size) + 4
    assert out.splitlines() == [
        "NAME            ID              " + "SIZE".ljust(width) + "MODIFIED    ",  # the header's last cell: padded, then 1 space
        f"tiny:latest     {digest}    {size.ljust(width - 4)}    2 hours ago    ",
        f"brief:latest    {brief}    {size.ljust(width - 4)}    3 days ago     ",
    ]
    code, out, _ = await run_cli(url, "ls", "BR")  # the prefix ignores case, as Ollama's list does
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "brief:latest"]

    await client.generate(model="tiny", keep_alive=-1)
    (running,) = (await client.ps()).models
    code, out, err = await run_cli(url, "ps")
    assert (code, err) == (0, "")
    loaded = human_bytes(running.size or 0)
    ctx = str(running.context_length)
    assert out.splitlines() == [
        "NAME           ID              " + "SIZE".ljust(len(loaded) + 4) + "PROCESSOR    " + "CONTEXT".ljust(max(7, len(ctx)) + 4) + "UNTIL   ",
        f"tiny:latest    {digest}    {loaded}    100% CPU     {ctx.ljust(max(7, len(ctx)))}    Forever    ",
    ]

    code, out, err = await run_cli(url, "show", "brief")
    assert (code, err) == (0, "")
    assert out == (
        "  Model\n"
        "    architecture        llama    \n"
        "    parameters          567K     \n"
        "    context length      4096     \n"
        "    embedding length    128      \n"
        "    quantization        F16      \n"
        "\n"
        "  Capabilities\n"
        "    completion    \n"
        "\n"
        "  Parameters\n"
        '    stop           "<|end|>"    \n'
        "    temperature    0.5          \n"
        "\n"
        "  System\n"
        "    Be brief.    \n"
        "    Really.      \n"
        "\n"
    )
    code, out, err = await run_cli(url, "show", "brief", "-v")
    assert (code, err) == (0, "")
    sections = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("    ")]
    assert sections == ["  Model", "  Capabilities", "  Parameters", "  Metadata", "  Tensors", "  System"]
    assert "    general.architecture" in out and "    token_embd.weight" in out
    shown = await client.show("brief")
    for flag, expected in (("--modelfile", f"{shown.modelfile}\n"), ("--parameters", f"{shown.parameters}\n"),
                           ("--system", "Be brief.\nReally."), ("--license", "\n")):  # fmt: skip
        code, out, err = await run_cli(url, "show", "brief", flag)
        assert (code, out, err) == (0, expected, ""), flag
    code, out, err = await run_cli(url, "show", "brief", "--system", "--template")
    assert (code, out) == (1, "")
    assert err == "Error: only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified\n"


async def test_cp_rm_and_stop(real_server: TestServer) -> None:
    """cp and rm say what they did and do it; rm unloads a running model first; stop unloads; a
    missing model is one 'Error:' line and exit status 1."""
    url = base_url(real_server)
    client = ollama.AsyncClient(host=url)
    assert await run_cli(url, "cp", "tiny", "twin") == (0, "copied 'tiny' to 'twin'\n", "")
    await client.generate(model="twin", keep_alive=-1)
    assert [m.model for m in (await client.ps()).models] == ["twin:latest"]
    assert await run_cli(url, "rm", "twin") == (0, "deleted 'twin'\n", "")
    assert (await client.ps()).models == []
    assert "twin:latest" not in [m.model for m in (await client.list()).models]

    await client.generate(model="tiny", keep_alive=-1)
    assert await run_cli(url, "stop", "tiny") == (0, "", "")
    assert (await client.ps()).models == []

    assert await run_cli(url, "rm", "nope") == (1, "", "Error: model 'nope' not found\n")
    assert await run_cli(url, "stop", "nope") == (1, "", 'Error: couldn\'t find model "nope" to stop\n')
    assert await run_cli(url, "cp", "nope", "x") == (1, "", 'Error: model "nope" not found\n')


async def test_version_help_and_no_server(real_server: TestServer) -> None:
    """--version names the server's llamasup and Ollama API versions; without a server it warns, as
    Ollama does; with no subcommand the help is printed; a refused connection is one clear error."""
    url = base_url(real_server)
    assert await run_cli(url, "--version") == (0, f"llamasup version is {__version__} (Ollama API {OLLAMA_VERSION})\n", "")
    nowhere = f"http://127.0.0.1:{free_port()}"
    code, out, err = await run_cli(nowhere, "-v")
    assert (code, err) == (0, "")
    assert out == f"Warning: could not connect to a running Ollama instance\nWarning: client version is {__version__}\n"
    code, out, err = await run_cli(nowhere)
    assert code == 0 and out.startswith("usage: llamasup") and "run" in out and "pull" in out
    code, out, err = await run_cli(nowhere, "list")
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: could not connect to the server at {nowhere} (Connection refused)") and err.count("\n") == 1


async def test_push_then_pull_through_a_real_registry(registry_open: RegistryServer, real_server: TestServer) -> None:
    """push and pull print their progress on stderr as plain lines when not on a terminal (a line per
    status, a line when a layer starts and when it completes), push says where the model is, and the
    model pulled back is listed."""
    url = base_url(real_server)
    client = ollama.AsyncClient(host=url)
    name = f"{registry_open.host}/team/tiny:1"
    assert (await run_cli(url, "cp", "tiny", name))[0] == 0
    code, out, err = await run_cli(url, "push", name, "--insecure")
    assert code == 0, err
    assert out == f"\nYou can find your model at:\n\n\t{name}\n"
    pushed = err.splitlines()
    assert pushed[0] == "retrieving manifest" and pushed[-2:] == ["pushing manifest", "success"]
    shown = await client.show(name)
    layers = [line for line in pushed if line.startswith("pushing ") and line != "pushing manifest"]
    assert layers and all(line.split()[1].endswith("...") for line in layers)

    assert (await run_cli(url, "rm", name))[0] == 0
    code, out, err = await run_cli(url, "pull", name, "--insecure")
    assert (code, out) == (0, ""), err
    pulled = err.splitlines()
    assert pulled[0] == "pulling manifest"
    assert pulled[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    bars = [line for line in pulled[1:-3]]
    assert bars and all(line.startswith("pulling ") for line in bars)
    assert any(" 100% " in line for line in bars)
    assert name.replace(":1", "") in [m.model.rsplit(":", 1)[0] for m in (await client.list()).models]
    assert (await client.show(name)).modelfile == shown.modelfile

    code, out, err = await run_cli(url, "pull", f"{registry_open.host}/team/absent:1", "--insecure")
    assert (code, out) == (1, "")
    assert err.splitlines() == ["pulling manifest", "Error: pull model manifest: file does not exist"]


async def test_pull_on_a_terminal_draws_bars(registry_open: RegistryServer, real_server: TestServer) -> None:
    """On a terminal, pull redraws its lines in place: a bar for the layer, ending at 100% with its
    size, the statuses after it, and the cursor shown again at the end."""
    url = base_url(real_server)
    name = f"{registry_open.host}/team/bars:1"
    assert (await run_cli(url, "cp", "tiny", name))[0] == 0
    assert (await run_cli(url, "push", name, "--insecure"))[0] == 0
    assert (await run_cli(url, "rm", name))[0] == 0
    child = pexpect.spawn(sys.executable, ["-m", "supervisor", "pull", name, "--insecure"], cwd=str(ROOT),
                          env=dict(os.environ, OLLAMA_HOST=url, TERM="xterm"), dimensions=(24, 100),
                          encoding="utf-8", timeout=120)  # fmt: skip
    try:
        output = await asyncio.to_thread(child.read)  # everything, until the command exits
    finally:
        child.close()
    assert child.exitstatus == 0, output
    assert "\x1b[?25l" in output and output.rstrip().endswith("\x1b[?25h\x1b[?2026l")
    final = output.rsplit("\x1b[1G", 1)[-1]
    lines = [line.split("\x1b[K")[0].rstrip() for line in final.split("\n") if "\x1b[K" in line]
    assert lines[0] == "pulling manifest"
    assert re.fullmatch(r"pulling [0-9a-f]{12}: 100% ▕█+▏ +\S+ [KMG]?B", lines[1]), lines
    assert lines[-3:] == ["verifying sha256 digest", "writing manifest", "success"]


async def test_run_pulls_a_missing_model_first(registry_open: RegistryServer, real_server: TestServer, models_dir: Path,
                                              tiny_gguf: Path) -> None:  # fmt: skip
    """run with a model that is not local pulls it (its progress on stderr), then answers."""
    url = base_url(real_server)
    install_gguf(models_dir, "short", tiny_gguf, params={"num_predict": 4, "temperature": 0})
    name = f"{registry_open.host}/team/short:1"
    assert (await run_cli(url, "cp", "short", name))[0] == 0
    assert (await run_cli(url, "push", name, "--insecure"))[0] == 0
    assert (await run_cli(url, "rm", name))[0] == 0
    code, out, err = await run_cli(url, "run", name, "--insecure", "hello")
    assert code == 0, err
    assert err.splitlines()[0] == "pulling manifest" and err.splitlines()[-1] == "success"
    assert out.endswith("\n\n") and out.strip()  # the answer: 4 tokens of the tiny model
    client = ollama.AsyncClient(host=url)
    assert name in [m.model for m in (await client.list()).models]
