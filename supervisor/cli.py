"""The ``llamasup`` command: ``serve`` runs the server; every other subcommand is a client of the HTTP
API at ``OLLAMA_HOST``, as ``ollama``'s are (``run``, ``pull``, ``push``, ``create``, ``list``, ``ps``,
``show``, ``cp``, ``rm``, ``stop``, ``plan``; ``client/``), except ``login`` and ``logout``, which keep
registry logins in llamasup's credentials file (``LLAMASUP_CREDENTIALS``). With no subcommand it prints
its help, as older ``ollama`` releases do; ``-v``/``--version`` compares the server's and its own version.

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
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web

from .app import create_app
from .client import commands as cmd
from .client.api import Api
from .client.show import SHOW_FLAGS
from .errors import ConfigError, LlamasupError
from .log import configure_logging
from .settings import Settings, load_settings

log = structlog.get_logger("supervisor.cli")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llamasup", description="Large language model runner: an Ollama-compatible server that supervises llama.cpp")
    p.add_argument("-v", "--version", action="store_true", help="show the server's and this client's versions")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("serve", aliases=["start"], help="start the server")
    s.add_argument("--host", dest="listen", help="listen address, as OLLAMA_HOST (default 127.0.0.1:11434)")
    s.add_argument("--models", dest="models_dir", help="model store, as OLLAMA_MODELS (default ~/.ollama/models)")
    s.add_argument("--config", dest="config_file", help="YAML config file (also LLAMASUP_CONFIG)")
    s.add_argument("--llama-server", dest="llama_server", help="llama-server binary (also LLAMASUP_LLAMA_SERVER)")
    s.add_argument("--keep-alive", dest="keep_alive", help="default keep-alive, as OLLAMA_KEEP_ALIVE (e.g. 5m)")
    s.add_argument("--log-format", dest="log_format", choices=["auto", "console", "json"])
    s.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    s.add_argument("--shutdown-timeout", type=float, default=10.0, help="seconds for in-flight requests at shutdown")
    c = sub.add_parser("create", help="create a model from a Modelfile")
    c.add_argument("model", help="name of the model to create")
    c.add_argument("-f", "--file", dest="file", help="Modelfile (default ./Modelfile, else FROM .)")
    c.add_argument("-q", "--quantize", dest="quantize", default="", help="quantize to this level (e.g. q4_K_M)")
    sh = sub.add_parser("show", help="show information for a model")
    sh.add_argument("model")
    for flag in SHOW_FLAGS:
        sh.add_argument(f"--{flag}", action="store_true", help=f"show the {flag} of the model")
    sh.add_argument("-v", "--verbose", action="store_true", help="show detailed model information")
    r = sub.add_parser("run", help="run a model")
    r.add_argument("model")
    r.add_argument("prompt", nargs="*", help="a prompt: answer it and exit (also read from standard input)")
    r.add_argument("--keepalive", default="", help="how long to keep the model loaded (e.g. 5m)")
    r.add_argument("--verbose", action="store_true", help="show timings for the response")
    r.add_argument("--insecure", action="store_true", help="use an insecure registry")
    r.add_argument("--nowordwrap", action="store_true", help="do not wrap words to the next line")
    r.add_argument("--format", default="", help='response format ("json" or a JSON schema)')
    r.add_argument("--think", default=None, help="thinking: --think, or --think=false|high|medium|low")
    r.add_argument("--hidethinking", action="store_true", help="hide the thinking output (thinking still happens)")
    r.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=None, help="embedding models: cut inputs that exceed the context")
    r.add_argument("--dimensions", type=int, default=0, help="embedding models: vector length")
    st = sub.add_parser("stop", help="stop a running model")
    st.add_argument("model")
    for name, verb in (("pull", "pull a model from a registry"), ("push", "push a model to a registry")):
        t = sub.add_parser(name, help=verb)
        t.add_argument("model")
        t.add_argument("--insecure", action="store_true", help="use an insecure registry (plain http)")
    ls = sub.add_parser("list", aliases=["ls"], help="list models")
    ls.add_argument("prefix", nargs="?", help="only models whose name starts with this")
    ps = sub.add_parser("ps", help="list running models")
    ps.add_argument("prefix", nargs="?", help="only models whose name starts with this")
    cp = sub.add_parser("cp", help="copy a model")
    cp.add_argument("source")
    cp.add_argument("destination")
    rm = sub.add_parser("rm", help="remove a model")
    rm.add_argument("models", nargs="+", metavar="MODEL")
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


def _client(work: Callable[[Api], Awaitable[None]]) -> int:
    """Run one client command against ``OLLAMA_HOST``: 0, or 1 after one ``Error: …`` line."""
    from .settings import client_base_url

    async def go() -> None:
        async with Api(client_base_url(os.environ)) as api:
            await work(api)

    try:
        asyncio.run(go())
    except LlamasupError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _api_command(args: argparse.Namespace) -> int | None:
    """The subcommands that are API calls; None for the others."""
    out, err = sys.stdout, sys.stderr
    commands: dict[str, Callable[[Api], Awaitable[None]]] = {
        "list": lambda api: cmd.list_models(api, args.prefix, out),
        "ls": lambda api: cmd.list_models(api, args.prefix, out),
        "ps": lambda api: cmd.list_running(api, args.prefix, out),
        "show": lambda api: cmd.show(api, args.model, [f for f in SHOW_FLAGS if getattr(args, f)], args.verbose, out),
        "cp": lambda api: cmd.copy(api, args.source, args.destination, out),
        "rm": lambda api: cmd.remove(api, args.models, out),
        "stop": lambda api: cmd.stop(api, args.model),
        "pull": lambda api: cmd.pull(api, args.model, insecure=args.insecure, err=err),
        "push": lambda api: cmd.push(api, args.model, insecure=args.insecure, out=out, err=err),
    }
    work = commands.get(args.command)
    return None if work is None else _client(work)


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


def _run(args: argparse.Namespace) -> int:
    from .client.run import RunArgs, run_command
    from .settings import client_base_url

    run_args = RunArgs(
        model=args.model, prompt=args.prompt, format=args.format, keepalive=args.keepalive, verbose=args.verbose,
        insecure=args.insecure, nowordwrap=args.nowordwrap, think=args.think, hidethinking=args.hidethinking,
        truncate=args.truncate, dimensions=args.dimensions,
    )  # fmt: skip
    return run_command(client_base_url(os.environ), run_args, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, env=os.environ)


def _plan(args: argparse.Namespace) -> int:
    from .client.plan import plan_command
    from .settings import client_base_url

    return asyncio.run(
        plan_command(client_base_url(os.environ), args.model, ctx=args.ctx, parallel=args.parallel,
                     as_json=args.json, out=sys.stdout, err=sys.stderr)
    )  # fmt: skip


def _create(args: argparse.Namespace) -> int:
    from .client.create import create_model
    from .settings import client_base_url

    base_url = client_base_url(os.environ)
    try:
        return asyncio.run(create_model(base_url, args.model, args.file, args.quantize, err=sys.stderr))
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


def _run_argv(argv: Sequence[str]) -> list[str]:
    """As Ollama's flags read them: a bare ``--think`` is ``--think=true`` (the next word stays a prompt
    word; a level is given as ``--think=high``)."""
    return ["--think=true" if arg == "--think" else arg for arg in argv]


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The command line as Ollama's reads it: ``run``'s flags may come after the prompt's words too."""
    args, extra = parser.parse_known_args(_run_argv(argv) if "run" in argv else argv)
    if extra and args.command == "run" and not any(word.startswith("-") for word in extra):
        args.prompt += extra  # prompt words after a flag (``run m --verbose why``)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parse_args(parser, sys.argv[1:] if argv is None else argv)
    if args.version:
        return _client(lambda api: cmd.version(api, sys.stdout))
    if args.command is None:
        parser.print_help()
        return 0
    status = _api_command(args)
    if status is not None:
        return status
    if args.command == "run":
        return _run(args)
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
