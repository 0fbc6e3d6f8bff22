"""Settings resolution: defaults < config file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.settings import load_settings, parse_host, parse_keep_alive_env


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:9001", ("::1", 9001)),
        ("http://example:1234", ("example", 1234)),
        ("http://example", ("example", 80)),
        ("https://example/path", ("example", 443)),
        ('"127.0.0.1:5000"', ("127.0.0.1", 5000)),
        ("host:notaport", ("host", 11434)),
    ],
)
def test_ollama_host_forms(value: str, expected: tuple[str, int]) -> None:
    """OLLAMA_HOST accepts Ollama's forms, with its port defaults."""
    assert parse_host(value) == expected


@pytest.mark.parametrize(("value", "expected"), [("5m", 300.0), ("600", 600.0), ("-1", None), ("-5m", None), ("bogus", 300.0), ("0", 0.0)])
def test_keep_alive_env(value: str, expected: float | None) -> None:
    """OLLAMA_KEEP_ALIVE takes a duration or integer seconds; negative is forever; invalid falls back to 5m."""
    assert parse_keep_alive_env(value) == expected


def test_defaults_match_ollama() -> None:
    """With an empty environment the defaults are Ollama's."""
    s = load_settings(env={})
    assert (s.host, s.port) == ("127.0.0.1", 11434)
    assert s.keep_alive == 300.0 and s.num_parallel == 1 and s.max_queue == 512 and s.max_loaded_models == 0
    assert s.models_dir == Path.home() / ".ollama" / "models"


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the config file, which beats the default."""
    cfg = tmp_path / "llamasup.yaml"
    cfg.write_text("listen: 127.0.0.1:7000\nkeep_alive: 10m\nnum_parallel: 3\nmodels_dir: /tmp/from-file\n")
    env = {"LLAMASUP_CONFIG": str(cfg), "OLLAMA_KEEP_ALIVE": "1m", "OLLAMA_MODELS": "/tmp/from-env"}
    s = load_settings(env=env, flags={"models_dir": Path("/tmp/from-flag")})
    assert s.port == 7000  # file only
    assert s.num_parallel == 3  # file only
    assert s.keep_alive == 60.0  # env over file
    assert s.models_dir == Path("/tmp/from-flag")  # flag over env


def test_unknown_config_key_is_an_error(tmp_path: Path) -> None:
    """A misspelt setting in the config file is reported, not ignored."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("keepalive: 5m\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings(env={"LLAMASUP_CONFIG": str(cfg)})


def test_environment_parsing_quirks() -> None:
    """Values are trimmed of quotes; bad integers fall back to defaults; OLLAMA_DEBUG maps to a level."""
    s = load_settings(env={"OLLAMA_NUM_PARALLEL": " '2' ", "OLLAMA_MAX_QUEUE": "lots", "OLLAMA_DEBUG": "1", "OLLAMA_ORIGINS": "a, b"})
    assert s.num_parallel == 2 and s.max_queue == 512 and s.debug == 1 and s.origins == ("a", "b")


def test_pull_settings(tmp_path: Path) -> None:
    """LLAMASUP_PULL_RETRIES and LLAMASUP_PULL_PARALLEL (parts at once; 0 or junk is the default 16, as Ollama)."""
    s = load_settings(env={"LLAMASUP_PULL_RETRIES": "2", "LLAMASUP_PULL_PARALLEL": "4"})
    assert (s.pull_retries, s.pull_parallel) == (2, 4)
    assert load_settings(env={}).pull_parallel == 16
    assert load_settings(env={"LLAMASUP_PULL_PARALLEL": "0"}).pull_parallel == 16
    assert load_settings(env={"LLAMASUP_PULL_PARALLEL": "many"}).pull_parallel == 16
    config = tmp_path / "llamasup.yaml"
    config.write_text("pull_parallel: 0\n")
    assert load_settings(env={"LLAMASUP_CONFIG": str(config)}).pull_parallel == 16
    config.write_text("pull_parallel: 3\n")
    assert load_settings(env={"LLAMASUP_CONFIG": str(config)}).pull_parallel == 3


def test_scheduler_settings(tmp_path: Path) -> None:
    """OLLAMA_GPU_OVERHEAD (bytes), OLLAMA_SCHED_SPREAD, LLAMASUP_HARDWARE, and per-model slots from the file."""
    config = tmp_path / "llamasup.yaml"
    config.write_text("model_parallel:\n  qwen3:8b: 4\n  tiny: 2\n")
    s = load_settings(
        env={"OLLAMA_GPU_OVERHEAD": "1073741824", "OLLAMA_SCHED_SPREAD": "1", "LLAMASUP_HARDWARE": str(tmp_path / "hw.yaml"),
             "LLAMASUP_CONFIG": str(config)},
    )  # fmt: skip
    assert s.gpu_overhead == 1 << 30 and s.sched_spread is True and s.hardware_file == tmp_path / "hw.yaml"
    assert s.model_parallel == (("qwen3:8b", 4), ("tiny", 2))
    assert load_settings(env={}).gpu_overhead == 0 and load_settings(env={}).sched_spread is False
    config.write_text("model_parallel:\n  tiny: zero\n")
    with pytest.raises(ConfigError, match="model_parallel must map model names to positive integers"):
        load_settings(env={"LLAMASUP_CONFIG": str(config)})
