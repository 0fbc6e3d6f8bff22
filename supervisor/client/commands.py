"""The ``llamasup`` subcommands that are one or two API calls: ``list``, ``ps``, ``show``, ``cp``,
``rm``, ``stop``, ``pull``, ``push`` and ``--version``, with the output ``ollama`` prints.

Each takes the open ``Api`` and the streams to write to, and raises ``LlamasupError`` for anything
that goes wrong; ``cli.py`` prints that as one ``Error: …`` line and exits 1. Tables go to stdout;
progress (pull, push) goes to stderr, as Ollama's does, so ``llamasup pull m > log`` keeps stdout
clean.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any, TextIO

from .. import __version__
from ..errors import LlamasupError
from ..store.names import ModelName
from .api import Api
from .progress import Kind, ProgressView
from .show import show_field, show_info
from .tables import list_table, ps_table

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def list_models(api: Api, prefix: str | None, out: TextIO, now: Clock = _now) -> None:
    out.write(list_table(await api.tags(), prefix, now()))


async def list_running(api: Api, prefix: str | None, out: TextIO, now: Clock = _now) -> None:
    out.write(ps_table(await api.running(), prefix, now()))


async def show(api: Api, model: str, flags: list[str], verbose: bool, out: TextIO) -> None:
    """The model's summary, or the one field a flag names (``--modelfile``, ``--template`` …)."""
    if len(flags) > 1:
        raise LlamasupError("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified")
    resp = await api.show(model, verbose=verbose)
    out.write(show_field(resp, flags[0]) if flags else show_info(resp, verbose))


async def copy(api: Api, source: str, destination: str, out: TextIO) -> None:
    await api.copy(source, destination)
    out.write(f"copied '{source}' to '{destination}'\n")


async def remove(api: Api, models: list[str], out: TextIO) -> None:
    """Unload each model if it runs, then delete it (``deleted '<m>'``)."""
    for name in models:
        try:
            await unload(api, name)
        except LlamasupError as e:
            if "not found" not in e.message:
                raise LlamasupError(f'unable to stop existing running model "{name}": {e.message}') from None
        await api.delete(name)
        out.write(f"deleted '{name}'\n")


async def stop(api: Api, model: str) -> None:
    try:
        await unload(api, model)
    except LlamasupError as e:
        if "not found" in e.message:
            raise LlamasupError(f'couldn\'t find model "{model}" to stop') from None
        raise


async def unload(api: Api, model: str) -> None:
    """``/api/generate`` with no prompt and ``keep_alive: 0``: the server unloads without loading."""
    async for _ in api.stream("/api/generate", {"model": model, "keep_alive": 0}):
        pass


async def pull(api: Api, model: str, *, insecure: bool, err: TextIO) -> None:
    """Pull with one bar per layer on a terminal, plain lines otherwise (on ``err``)."""
    await show_progress(api.stream("/api/pull", {"model": model, "insecure": insecure}), err, "pull")


async def push(api: Api, model: str, *, insecure: bool, out: TextIO, err: TextIO) -> None:
    try:
        await show_progress(api.stream("/api/push", {"model": model, "insecure": insecure}), err, "push")
    except LlamasupError as e:
        if "access denied" in e.message:
            raise LlamasupError("you are not authorized to push to this namespace, create the model under a namespace you own") from None
        raise
    out.write(f"\nYou can find your model at:\n\n\t{_destination(model)}\n")


def _destination(model: str) -> str:
    """Where Ollama says a pushed model is: its ollama.com page, or the name in full."""
    name = ModelName.try_parse(model)
    if name is None:
        return model
    if name.host.endswith((".ollama.ai", ".ollama.com")):
        short = name.model if name.namespace == "library" else f"{name.namespace}/{name.model}"
        return f"https://ollama.com/{short}" + ("" if name.tag == "latest" else f":{name.tag}")
    return str(name)


async def show_progress(stream: AsyncIterator[dict[str, Any]], err: TextIO, kind: Kind) -> None:
    """Draw a pull's, push's or create's progress stream (a bar per layer, spinners between)."""
    view = ProgressView(err, kind=kind)
    ticking = asyncio.create_task(view.run())  # spinners turn between updates
    try:
        async for msg in stream:
            view.update(msg)
    finally:
        view.stop()
        ticking.cancel()


async def version(api: Api, out: TextIO) -> None:
    """The server's version and the client's, with Ollama's warnings (``--version``)."""
    server, llamasup = "", ""
    try:
        async with api.request("GET", "/api/version") as resp:
            if resp.status == 200:
                server = str((await resp.json(content_type=None)).get("version") or "")
                product, _, llamasup = resp.headers.get("Server", "").partition("/")
                if product != "llamasup":
                    llamasup = ""
    except (LlamasupError, ValueError):
        out.write("Warning: could not connect to a running Ollama instance\n")
    if llamasup:
        out.write(f"llamasup version is {llamasup} (Ollama API {server})\n")
    elif server:
        out.write(f"ollama version is {server}\n")
    if llamasup != __version__:
        out.write(f"Warning: client version is {__version__}\n")
