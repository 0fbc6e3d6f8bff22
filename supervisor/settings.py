"""Settings: resolved once at start-up, frozen, passed explicitly.

Precedence, lowest first: built-in defaults < YAML config file < environment < command-line flags.
This module is the only reader of ``os.environ`` in llamasup. Ollama's variables keep Ollama's meaning
and defaults; llamasup's own use the ``LLAMASUP_`` prefix. Path helpers compute paths; nothing here
creates directories.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .durations import DurationError, parse_go_duration
from .errors import ConfigError

DEFAULT_PORT = 11434
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    """Everything llamasup reads from its environment, in one immutable value."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_dir: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    key_dir: Path = field(default_factory=lambda: Path.home() / ".ollama")  # id_ed25519, as Ollama keeps it
    keep_alive: float | None = 300.0  # seconds; None = forever
    num_parallel: int = 1
    max_loaded_models: int = 0  # 0 = automatic (3 per GPU, 3 on CPU)
    max_queue: int = 512
    context_length: int = 0  # 0 = automatic
    load_timeout: float | None = 300.0  # stall timeout while loading; None = forever
    origins: tuple[str, ...] = ()
    flash_attention: bool | None = None
    kv_cache_type: str = ""
    debug: int = 0
    # llamasup's own
    llama_server: Path | None = None  # LLAMASUP_LLAMA_SERVER: an existing binary
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir({}))
    backend: str = ""  # LLAMASUP_BACKEND, as for build_runner.sh
    cache_ram_mib: int = 1024  # per-runner host-RAM prompt cache bound (llama-server --cache-ram)
    stop_grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    runner_threads: int = 0  # 0 = llama-server's default
    runtime_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))  # runner sockets live below
    log_format: str = "auto"  # auto | console | json
    log_level: str = "info"
    config_file: Path | None = None
    model_dirs: tuple[Path, ...] = ()  # LLAMASUP_MODEL_DIRS: read-only directories of GGUFs used in place
    noprune: bool = False  # OLLAMA_NOPRUNE: keep unreferenced blobs at start-up
    gpu_overhead: int = 0  # OLLAMA_GPU_OVERHEAD: bytes of VRAM per GPU left alone
    sched_spread: bool = False  # OLLAMA_SCHED_SPREAD: split models across every GPU
    model_parallel: tuple[tuple[str, int], ...] = ()  # per-model slots: config file "model_parallel: {name: n}"
    hardware_file: Path | None = None  # LLAMASUP_HARDWARE: a YAML inventory used instead of probing
    health_interval: float = 5.0  # seconds between /health checks of a loaded runner
    health_timeout: float = 10.0  # a runner that misses two checks in a row is replaced
    pull_retries: int = 6  # LLAMASUP_PULL_RETRIES: retries of a failing blob part (doubling waits from 1 s), as Ollama
    pull_parallel: int = 16  # LLAMASUP_PULL_PARALLEL: parts of one blob downloaded at once (Ollama: up to 16)
    responses_max: int = 1000  # LLAMASUP_RESPONSES_MAX: /v1/responses kept for previous_response_id (0: none)
    responses_ttl: float = 3600.0  # LLAMASUP_RESPONSES_TTL: seconds (or a Go duration) each is kept
    # OpenAI image URLs, fetched by llamasup (Ollama refuses them)
    image_fetch: bool = True  # LLAMASUP_IMAGE_FETCH=0: refuse image URLs, as Ollama does
    image_fetch_max_bytes: int = 20 << 20  # LLAMASUP_IMAGE_FETCH_MAX_BYTES: all of a request's images
    image_fetch_timeout: float = 10.0  # LLAMASUP_IMAGE_FETCH_TIMEOUT: seconds for all of a request's images
    image_fetch_allow: tuple[Network, ...] = ()  # LLAMASUP_IMAGE_FETCH_ALLOW: private networks allowed anyway
    # registries (pull/push)
    credentials_file: Path = field(default_factory=lambda: _default_credentials_file({}))  # LLAMASUP_CREDENTIALS
    docker_config: Path | None = field(default_factory=lambda: _default_docker_config({}))  # DOCKER_CONFIG dir; None: unused
    https_proxy: str = field(default="", repr=False)  # HTTPS_PROXY / https_proxy (may hold user:password)
    http_proxy: str = field(default="", repr=False)  # HTTP_PROXY / http_proxy
    no_proxy: str = ""  # NO_PROXY / no_proxy

    @property
    def proxies(self) -> ProxySettings:
        """The outbound proxy configuration for registry traffic."""
        return ProxySettings(https=self.https_proxy, http=self.http_proxy, no_proxy=self.no_proxy)

    @property
    def listen_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def runners_dir(self) -> Path:
        return self.cache_dir / "runners"


@dataclass(frozen=True)
class ProxySettings:
    """Proxy URLs for https and http requests and the ``NO_PROXY`` list, as the environment spells them
    (``registry/proxy.py`` decides per URL). Proxy URLs may carry credentials: kept out of the repr."""

    https: str = field(default="", repr=False)
    http: str = field(default="", repr=False)
    no_proxy: str = ""


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llamasup"


def _default_credentials_file(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/llamasup/credentials.json`` (``~/.config/llamasup/credentials.json``)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "llamasup" / "credentials.json"


def _default_docker_config(env: Mapping[str, str]) -> Path:
    """Docker's ``config.json``: in ``$DOCKER_CONFIG`` when set, as Docker reads it, else ``~/.docker``."""
    base = env.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base).expanduser() / "config.json"


_PROXY_VARS = (("https_proxy", "HTTPS_PROXY"), ("http_proxy", "HTTP_PROXY"), ("no_proxy", "NO_PROXY"))


def _proxy_env(env: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables, upper case first (as Go's ``httpproxy.FromEnvironment`` reads them)."""
    out: dict[str, str] = {}
    for key, upper in _PROXY_VARS:
        for name in (upper, key):
            value = env.get(name)
            if value is not None and value.strip():
                out[key] = value.strip()
                break
    return out


def proxy_settings_from_env(env: Mapping[str, str] | None = None) -> ProxySettings:
    """Only the proxy part of the settings, for a registry client built without ``Settings`` at hand."""
    found = _proxy_env(os.environ if env is None else env)
    return ProxySettings(https=found.get("https_proxy", ""), http=found.get("http_proxy", ""), no_proxy=found.get("no_proxy", ""))


def _clean(value: str) -> str:
    """Ollama trims whitespace and surrounding quotes from every variable."""
    return value.strip().strip("\"'").strip()


def parse_host(value: str) -> tuple[str, int]:
    """``OLLAMA_HOST`` forms: ``host``, ``host:port``, ``:port``, ``[v6]:port``, ``scheme://host[:port]``."""
    s = _clean(value)
    default_port = DEFAULT_PORT
    if "://" in s:
        scheme, s = s.split("://", 1)
        default_port = 443 if scheme == "https" else 80
    s = s.split("/", 1)[0]
    host, port_text = s, ""
    if s.startswith("["):
        end = s.find("]")
        host, rest = s[1:end], s[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif s.count(":") == 1:
        host, port_text = s.split(":")
    port = default_port
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            port = DEFAULT_PORT
        if not 0 <= port <= 65535:
            port = DEFAULT_PORT
    return (host or "127.0.0.1"), port


def client_base_url(env: Mapping[str, str]) -> str:
    """Where the CLI's client commands connect: ``OLLAMA_HOST`` as a URL (default http://127.0.0.1:11434).

    A wildcard listen address (``0.0.0.0``, ``::``) means "this machine" to a client; a path prefix
    (a server behind a reverse proxy) is kept, as Ollama's client keeps it.
    """
    raw = _clean(env.get("OLLAMA_HOST", ""))
    scheme = "https" if raw.lower().startswith("https://") else "http"
    host, port = parse_host(raw)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    path = raw.split("://", 1)[-1].partition("/")[2].rstrip("/")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}" + (f"/{path}" if path else "")


def parse_keep_alive_env(value: str) -> float | None:
    """``OLLAMA_KEEP_ALIVE``: a Go duration or integer seconds; negative = forever; invalid = 5m."""
    s = _clean(value)
    try:
        seconds = float(int(s))
    except ValueError:
        try:
            seconds = parse_go_duration(s)
        except DurationError:
            return 300.0
    return None if seconds < 0 else seconds


def _parse_bool(value: str) -> bool:
    s = _clean(value)
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return True  # Ollama: an unparsable non-empty value means true


def parse_ttl(name: str, value: str) -> float:
    """A positive number of seconds or a Go duration (``90``, ``1h30m``)."""
    s = _clean(value)
    try:
        seconds = float(s)
    except ValueError:
        try:
            seconds = parse_go_duration(s)
        except DurationError:
            raise ConfigError(f"{name}={value!r} must be seconds or a duration such as 1h") from None
    if not seconds > 0:
        raise ConfigError(f"{name}={value!r} must be positive")
    return seconds


def _parse_uint(value: str, default: int) -> int:
    try:
        n = int(_clean(value))
    except ValueError:
        return default
    return n if n >= 0 else default


def _parse_parallel(value: str) -> int:
    """``LLAMASUP_PULL_PARALLEL``: a positive count; anything else is the default."""
    return _parse_uint(value, Settings.pull_parallel) or Settings.pull_parallel


def parse_model_dirs(value: str) -> tuple[Path, ...]:
    """``LLAMASUP_MODEL_DIRS``: directories separated by ``os.pathsep`` (``:``), like ``PATH``."""
    return tuple(Path(part.strip()).expanduser() for part in value.split(os.pathsep) if part.strip())


def parse_networks(value: str | list[Any]) -> tuple[Network, ...]:
    """``LLAMASUP_IMAGE_FETCH_ALLOW``: CIDR networks separated by commas (``127.0.0.0/8,::1``); a bare
    address is a network of one."""
    items = value.split(",") if isinstance(value, str) else value
    out = []
    for item in items:
        text = _clean(str(item))
        if not text:
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError as e:
            raise ConfigError(f"image_fetch_allow (LLAMASUP_IMAGE_FETCH_ALLOW): {e}") from e
    return tuple(out)


def _parse_seconds(name: str, value: str) -> float:
    try:
        return float(_clean(value))
    except ValueError:
        raise ConfigError(f"{name}={value!r} must be a number of seconds") from None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def get(name: str) -> str | None:
        v = env.get(name)
        return v if v is not None and _clean(v) != "" else None

    if (v := get("OLLAMA_HOST")) is not None:
        out["host"], out["port"] = parse_host(v)
    if (v := get("OLLAMA_MODELS")) is not None:
        out["models_dir"] = Path(_clean(v)).expanduser()
    if (v := get("OLLAMA_KEEP_ALIVE")) is not None:
        out["keep_alive"] = parse_keep_alive_env(v)
    for var, key, default in (
        ("OLLAMA_NUM_PARALLEL", "num_parallel", 1),
        ("OLLAMA_MAX_LOADED_MODELS", "max_loaded_models", 0),
        ("OLLAMA_MAX_QUEUE", "max_queue", 512),
        ("OLLAMA_CONTEXT_LENGTH", "context_length", 0),
    ):
        if (v := get(var)) is not None:
            out[key] = _parse_uint(v, default)
    if (v := get("OLLAMA_LOAD_TIMEOUT")) is not None:
        t = parse_keep_alive_env(v)
        out["load_timeout"] = t if t else None
    if (v := get("OLLAMA_ORIGINS")) is not None:
        out["origins"] = tuple(o.strip() for o in _clean(v).split(",") if o.strip())
    if (v := get("OLLAMA_FLASH_ATTENTION")) is not None:
        out["flash_attention"] = _parse_bool(v)
    if (v := get("OLLAMA_KV_CACHE_TYPE")) is not None:
        out["kv_cache_type"] = _clean(v).lower()
    if (v := get("OLLAMA_DEBUG")) is not None:
        s = _clean(v)
        out["debug"] = int(s) if s.isdigit() else int(_parse_bool(s))
    if (v := get("LLAMASUP_LLAMA_SERVER")) is not None:
        out["llama_server"] = Path(_clean(v)).expanduser()
    if (v := get("XDG_RUNTIME_DIR")) is not None:
        out["runtime_dir"] = Path(_clean(v))
    if (v := get("LLAMASUP_CACHE_DIR")) is not None:
        out["cache_dir"] = Path(_clean(v)).expanduser()
    for var, key in (
        ("LLAMASUP_BACKEND", "backend"),
        ("LLAMASUP_LOG_FORMAT", "log_format"),
        ("LLAMASUP_LOG_LEVEL", "log_level"),
    ):
        if (v := get(var)) is not None:
            out[key] = _clean(v).lower()
    for var, key in (("LLAMASUP_CACHE_RAM_MIB", "cache_ram_mib"), ("LLAMASUP_THREADS", "runner_threads")):
        if (v := get(var)) is not None:
            out[key] = _parse_uint(v, 0)
    if (v := get("OLLAMA_GPU_OVERHEAD")) is not None:
        out["gpu_overhead"] = _parse_uint(v, 0)
    if (v := get("OLLAMA_SCHED_SPREAD")) is not None:
        out["sched_spread"] = _parse_bool(v)
    if (v := get("LLAMASUP_HARDWARE")) is not None:
        out["hardware_file"] = Path(_clean(v)).expanduser()
    if (v := get("OLLAMA_NOPRUNE")) is not None:
        out["noprune"] = _parse_bool(v)
    if (v := get("LLAMASUP_MODEL_DIRS")) is not None:
        out["model_dirs"] = parse_model_dirs(_clean(v))
    if (v := get("LLAMASUP_STOP_GRACE")) is not None:
        out["stop_grace"] = float(_clean(v))
    if (v := get("LLAMASUP_PULL_RETRIES")) is not None:
        out["pull_retries"] = _parse_uint(v, Settings.pull_retries)
    if (v := get("LLAMASUP_PULL_PARALLEL")) is not None:
        out["pull_parallel"] = _parse_parallel(v)
    if (v := get("LLAMASUP_RESPONSES_MAX")) is not None:
        out["responses_max"] = _parse_uint(v, Settings.responses_max)
    if (v := get("LLAMASUP_RESPONSES_TTL")) is not None:
        out["responses_ttl"] = parse_ttl("LLAMASUP_RESPONSES_TTL", v)
    if (v := get("LLAMASUP_IMAGE_FETCH")) is not None:
        out["image_fetch"] = _parse_bool(v)
    if (v := get("LLAMASUP_IMAGE_FETCH_MAX_BYTES")) is not None:
        out["image_fetch_max_bytes"] = _parse_uint(v, Settings.image_fetch_max_bytes)
    if (v := get("LLAMASUP_IMAGE_FETCH_TIMEOUT")) is not None:
        out["image_fetch_timeout"] = _parse_seconds("LLAMASUP_IMAGE_FETCH_TIMEOUT", v)
    if (v := get("LLAMASUP_IMAGE_FETCH_ALLOW")) is not None:
        out["image_fetch_allow"] = parse_networks(v)
    if (v := get("LLAMASUP_CREDENTIALS")) is not None:
        out["credentials_file"] = Path(_clean(v)).expanduser()
    if (v := get("DOCKER_CONFIG")) is not None:
        out["docker_config"] = _default_docker_config({"DOCKER_CONFIG": _clean(v)})
    out.update(_proxy_env(env))
    return out


_FILE_KEYS = {f.name for f in fields(Settings)} - {"config_file"}


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    unknown = set(data) - _FILE_KEYS - {"listen"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {sorted(unknown)}; known: {sorted(_FILE_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "listen":
            out["host"], out["port"] = parse_host(str(value))
        elif key == "keep_alive":
            out[key] = parse_keep_alive_env(str(value))
        elif key == "model_parallel":
            out[key] = _model_parallel(path, value)
        elif key in ("models_dir", "llama_server", "cache_dir", "runtime_dir", "hardware_file", "credentials_file"):
            out[key] = Path(str(value)).expanduser()
        elif key == "docker_config":
            out[key] = None if value is None or value is False else Path(str(value)).expanduser()
        elif key in ("https_proxy", "http_proxy", "no_proxy"):
            out[key] = "" if value is None else str(value).strip()
        elif key == "model_dirs":
            items = value if isinstance(value, list) else parse_model_dirs(str(value))
            out[key] = tuple(Path(str(item)).expanduser() for item in items)
        elif key == "responses_ttl":
            out[key] = parse_ttl(f"config file {path}: {key}", str(value))
        elif key == "pull_parallel":
            out[key] = _parse_parallel(str(value))
        elif key == "origins":
            out[key] = tuple(value) if isinstance(value, list) else tuple(str(value).split(","))
        elif key == "image_fetch_allow":
            out[key] = parse_networks(value if isinstance(value, list) else str(value))
        elif key == "image_fetch_timeout":
            out[key] = _parse_seconds(f"config file {path}: {key}", str(value))
        else:
            out[key] = value
    return out


def _model_parallel(path: Path, value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value.values()):
        raise ConfigError(f"config file {path}: model_parallel must map model names to positive integers")
    return tuple((str(name), int(n)) for name, n in value.items())


def load_settings(env: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None) -> Settings:
    """Resolve settings from defaults, the config file, the environment and flags (in that order)."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    base = Settings(
        cache_dir=_default_cache_dir(env),
        credentials_file=_default_credentials_file(env),
    )
    config_path = flags.get("config_file") or env.get("LLAMASUP_CONFIG")
    merged: dict[str, Any] = {}
    if config_path:
        path = Path(str(config_path)).expanduser()
        merged.update(_from_file(path))
        merged["config_file"] = path
    merged.update(_from_env(env))
    if "listen" in flags:
        merged["host"], merged["port"] = parse_host(str(flags.pop("listen")))
    merged.update(flags)
    try:
        settings = replace(base, **merged)
    except TypeError as e:
        raise ConfigError(str(e)) from e
    if settings.log_format not in ("auto", "console", "json"):
        raise ConfigError(f"log format {settings.log_format!r} must be auto, console or json")
    if not settings.image_fetch_timeout > 0:
        raise ConfigError(f"image fetch timeout {settings.image_fetch_timeout!r} must be a positive number of seconds")
    if settings.image_fetch_max_bytes < 1:
        raise ConfigError(f"image fetch size limit {settings.image_fetch_max_bytes!r} must be a positive number of bytes")
    if settings.num_parallel < 1:
        settings = replace(settings, num_parallel=1)
    return settings
