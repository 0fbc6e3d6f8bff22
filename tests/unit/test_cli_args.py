"""How ``llamasup``'s command line is read: Ollama's habits for ``run`` (flags anywhere, a bare
``--think``), aliases, and unknown words refused."""

from __future__ import annotations

import pytest

from supervisor.cli import make_parser, parse_args
from supervisor.client.commands import _destination


@pytest.mark.parametrize(
    ("argv", "prompt", "think", "verbose"),
    [
        (["run", "m", "why", "is", "it"], ["why", "is", "it"], None, False),
        (["run", "m", "--verbose", "why", "is", "it"], ["why", "is", "it"], None, True),
        (["run", "--verbose", "m", "why"], ["why"], None, True),
        (["run", "m", "why", "--verbose", "now"], ["why", "now"], None, True),
        (["run", "--think", "m", "hi"], ["hi"], "true", False),
        (["run", "m", "--think"], [], "true", False),
        (["run", "m", "--think=high", "hi"], ["hi"], "high", False),
    ],
)
def test_run_reads_flags_anywhere(argv: list[str], prompt: list[str], think: str | None, verbose: bool) -> None:
    """run's flags may follow the model and the prompt's words; a bare --think means true and leaves
    the next word to the prompt (a level is written --think=high)."""
    args = parse_args(make_parser(), argv)
    assert (args.command, args.model, args.prompt, args.think, args.verbose) == ("run", "m", prompt, think, verbose)


@pytest.mark.parametrize(("argv", "command"), [(["ls"], "ls"), (["list", "qw"], "list"), (["start"], "start"), (["serve"], "serve")])
def test_aliases(argv: list[str], command: str) -> None:
    """ls is list and start is serve, as in Ollama."""
    assert parse_args(make_parser(), argv).command == command


def test_unknown_words_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A word no command takes is a usage error (exit status 2), not silently dropped."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(make_parser(), ["ls", "a", "b"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: b" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "where"),
    [
        ("me/mine", "https://ollama.com/me/mine"),
        ("me/mine:v2", "https://ollama.com/me/mine:v2"),
        ("registry.ollama.com/me/mine:latest", "https://ollama.com/me/mine"),
        ("127.0.0.1:5000/team/m:1", "127.0.0.1:5000/team/m:1"),
        ("m", "https://ollama.com/m"),
    ],
)
def test_push_says_where_the_model_is(model: str, where: str) -> None:
    """After a push: the model's ollama.com page for Ollama's registry, else its full name."""
    assert _destination(model) == where
