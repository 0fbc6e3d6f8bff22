"""``llamasup login`` / ``logout``: the login a pull uses against a real basic-auth registry."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import ollama
import pytest

from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.registry_push import publish
from tests.registry_server import RegistryServer

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLAMASUP_CREDENTIALS=str(tmp_path / "credentials.json"), DOCKER_CONFIG=str(tmp_path / "docker"))
    return subprocess.run([sys.executable, "-m", "supervisor", *args], input=stdin, capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)  # fmt: skip


async def test_login_then_pull_then_logout(registry_basic: RegistryServer, start_server: ServerFactory,
                                           fake_llama_server_bin: Path, tmp_path: Path) -> None:  # fmt: skip
    """login stores the registry's user and password (0600, never echoed); a pull then gets in; after
    logout a server (started afresh: a running one keeps a login it has used until the registry
    refuses it) is refused with the hint to log in."""
    assert registry_basic.credentials is not None
    user, password = registry_basic.credentials.username, registry_basic.credentials.password
    await publish(registry_basic, "team/m:1", write_model(tmp_path / "m.gguf", preset="tiny", seed=3), tmp_path)
    done = _cli(tmp_path, "login", registry_basic.host, "-u", user, "--password-stdin", stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr and registry_basic.host in done.stdout
    credentials = tmp_path / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    server = await start_server(fake_llama_server_bin)  # reads tmp_path/credentials.json
    client = ollama.AsyncClient(host=base_url(server))
    name = f"{registry_basic.host}/team/m:1"
    assert [p async for p in await client.pull(name, insecure=True, stream=True)][-1].status == "success"
    await client.delete(name)
    done = _cli(tmp_path, "logout", registry_basic.host)
    assert done.returncode == 0 and "Removed the login" in done.stdout
    client = ollama.AsyncClient(host=base_url(await start_server(fake_llama_server_bin)))
    with pytest.raises(ollama.ResponseError, match=f"llamasup login {registry_basic.host}"):
        async for _ in await client.pull(name, insecure=True, stream=True):
            pass


def test_login_needs_a_password(tmp_path: Path) -> None:
    """An empty password is refused and nothing is written."""
    done = _cli(tmp_path, "login", "127.0.0.1:5000", "-u", "someone", "--password-stdin", stdin="\n")
    assert done.returncode == 2 and "password is required" in done.stderr
    assert not (tmp_path / "credentials.json").exists()
