"""The ``llamasup`` command. ``serve`` runs the server; ``create`` and ``plan`` are clients of its HTTP API;
``login`` and ``logout`` keep registry logins in llamasup's credentials file (``LLAMASUP_CREDENTIALS``).

Shutdown (uvicorn's model): the first SIGINT/SIGTERM only sets a flag; the server then stops accepting,
lets in-flight requests finish within ``--shutdown-timeout``, and the pool stops every runner. A second
signal forces an immediate exit; the runners then die with the supervisor (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import structlog
from aiohttp import web

from . import __version__
from .app import create_app
from .errors import ConfigError, LlamasupError
from .log import configure_logging
from .settings import Settings, load_settings

log = structlog.get_logger("supervisor.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llamasup", description="An Ollama-compatible server that supervises llama.cpp")
    p.add_argument("--version", action="version", version=f"llamasup {__version__}")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the server (the default command)")
    s.add_argument("--host", dest="listen", help="listen address, as OLLAMA_HOST (default 127.0.0.1:11434)")
    s.add_argument("--models", dest="models_dir", help="model store, as OLLAMA_MODELS (default ~/.ollama/models)")
    s.add_argument("--config", dest="config_file", help="YAML config file (also LLAMASUP_CONFIG)")
    s.add_argument("--llama-server", dest="llama_server", help="llama-server binary (also LLAMASUP_LLAMA_SERVER)")
    s.add_argument("--keep-alive", dest="keep_alive", help="default keep-alive, as OLLAMA_KEEP_ALIVE (e.g. 5m)")
    s.add_argument("--log-format", dest="log_format", choices=["auto", "console", "json"])
    s.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    s.add_argument("--shutdown-timeout", type=float, default=10.0, help="seconds for in-flight requests at shutdown")
    c = sub.add_parser("create", help="create a model from a Modelfile (server address from OLLAMA_HOST)")
    c.add_argument("model", help="name of the model to create")
    c.add_argument("-f", "--file", dest="file", help="Modelfile (default ./Modelfile, else FROM .)")
    c.add_argument("-q", "--quantize", dest="quantize", default="", help="quantize to this level (e.g. q4_K_M)")
    pl = sub.add_parser("plan", help="show what loading a model would do: memory per device, evictions, fit")
    pl.add_argument("model", help="model name")
    pl.add_argument("--ctx", type=int, help="context per request (num_ctx)")
    pl.add_argument("--parallel", type=int, help="parallel slots (num_parallel)")
    pl.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    li = sub.add_parser("login", help="store a login for a registry (used by pull and push)")
    li.add_argument("registry", help="registry host, e.g. registry.example.com or 127.0.0.1:5000")
    li.add_argument("-u", "--username", help="user name (asked for when not given)")
    li.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    lo = sub.add_parser("logout", help="forget the stored login for a registry")
    lo.add_argument("registry", help="registry host")
    return p


def _login(args: argparse.Namespace) -> int:
    """Save (``login``) or remove (``logout``) a registry login; the password is never printed."""
    import getpass

    from .registry.credentials import CredentialStore

    try:
        store = CredentialStore.from_settings(load_settings())
        if args.command == "logout":
            removed = store.remove(args.registry)
            print(f"{'Removed the login for' if removed else 'No login stored for'} {args.registry} in {store.path}")
            return 0
        username = args.username or input("Username: ").strip()
        password = sys.stdin.read().rstrip("\r\n") if args.password_stdin else getpass.getpass("Password: ")
        if not password:
            print("llamasup: a password is required", file=sys.stderr)
            return 2
        store.save(args.registry, username, password)
    except (ConfigError, LlamasupError) as e:
        print(f"llamasup: {e}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        return 130
    print(f"Login for {args.registry} saved in {store.path}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .plan_cli import plan_command
    from .settings import client_base_url

    return asyncio.run(
        plan_command(client_base_url(os.environ), args.model, ctx=args.ctx, parallel=args.parallel,
                     as_json=args.json, out=sys.stdout, err=sys.stderr)
    )  # fmt: skip


def _create(args: argparse.Namespace) -> int:
    from .modelfile.client import create_model
    from .settings import client_base_url

    base_url = client_base_url(os.environ)
    try:
        return asyncio.run(create_model(base_url, args.model, args.file, args.quantize, out=sys.stdout, err=sys.stderr))
    except KeyboardInterrupt:
        return 130


def _flags(args: argparse.Namespace) -> dict[str, object]:
    from pathlib import Path

    from .settings import parse_keep_alive_env

    flags: dict[str, object] = {
        "listen": args.listen,
        "models_dir": Path(args.models_dir).expanduser() if args.models_dir else None,
        "config_file": args.config_file,
        "llama_server": Path(args.llama_server).expanduser() if args.llama_server else None,
        "log_format": args.log_format,
        "log_level": args.log_level,
    }
    if args.keep_alive is not None:
        flags["keep_alive"] = parse_keep_alive_env(args.keep_alive)
    return flags


async def serve(settings: Settings, shutdown_timeout: float) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()  # runs start-up: strays, binary lookup, pool
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("shutting down", signal=signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info("listening", url=settings.listen_url, models=str(settings.models_dir))
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["serve", *(argv or sys.argv[1:])])
    if args.command == "create":
        return _create(args)
    if args.command == "plan":
        return _plan(args)
    if args.command in ("login", "logout"):
        return _login(args)
    try:
        settings = load_settings(flags=_flags(args))
    except ConfigError as e:
        print(f"llamasup: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level, settings.debug)
    try:
        asyncio.run(serve(settings, args.shutdown_timeout))
    except LlamasupError as e:
        log.error("cannot start", error=e.message)
        return 1
    except OSError as e:
        log.error("cannot listen", url=settings.listen_url, error=str(e))
        return 1
    return 0
