"""The line-by-line logic of ``llamasup run``'s interactive session (supervisor/client/interactive.py)."""

from __future__ import annotations

import pytest

from supervisor.client.display import HELP_PARAMETERS, HELP_SET, HELP_SHOW, help_text, show_text
from supervisor.client.interactive import (
    CONTINUATION,
    PROMPT,
    Exit,
    ListModels,
    Load,
    ParameterError,
    Repl,
    Save,
    Say,
    Send,
    Session,
    Show,
    chat_body,
    create_body,
    generate_body,
    infer_think,
    media_extensions,
    media_paths,
    parameter_value,
    remove_path,
    request_format,
    sniff_media,
)
from supervisor.client.run import go_bool, keep_alive_value, think_flag
from supervisor.errors import LlamasupError


def repl(**kwargs: object) -> Repl:
    return Repl(Session(model="m", **kwargs))  # type: ignore[arg-type]


# -- messages and multi-line input ------------------------------------------------------------------------


def test_plain_line_is_sent() -> None:
    """A line that is not a command is the next user message."""
    assert repl().feed("Why is the sky blue?") == Send("Why is the sky blue?")


def test_empty_line_does_nothing() -> None:
    """Enter on an empty prompt sends nothing."""
    assert repl().feed("") is None


def test_multiline_message_is_joined_with_newlines() -> None:
    """Lines between an opening and a closing triple quote make one message, joined by newlines."""
    r = repl()
    assert r.feed('"""') is None and r.prompt == CONTINUATION
    assert r.feed("first line") is None
    assert r.feed("/bye is text here") is None  # no commands inside a multi-line message
    assert r.feed('last line"""') == Send("\nfirst line\n/bye is text here\nlast line")
    assert r.prompt == PROMPT


def test_multiline_with_text_on_the_opening_line() -> None:
    """Text after the opening quotes is the message's first line."""
    r = repl()
    assert r.feed('"""Hello') is None
    assert r.feed('world"""') == Send("Hello\nworld")


def test_triple_quotes_on_one_line() -> None:
    """Opening and closing quotes on the same line send that line at once."""
    assert repl().feed('"""one line"""') == Send("one line")


def test_interrupt_drops_a_multiline_message() -> None:
    """Ctrl+C while writing a multi-line message drops it and restores the main prompt."""
    r = repl()
    r.feed('"""')
    r.feed("draft")
    r.interrupt()
    assert r.prompt == PROMPT
    assert r.feed("fresh") == Send("fresh")


# -- /set -----------------------------------------------------------------------------------------------


def test_set_parameter_types_and_confirms() -> None:
    """``/set parameter`` stores a typed value and confirms with Ollama's line."""
    r = repl()
    assert r.feed("/set parameter temperature 0.2") == Say("Set parameter 'temperature' to '0.2'\n")
    assert r.feed("/set parameter num_ctx 4096") == Say("Set parameter 'num_ctx' to '4096'\n")
    assert r.feed("/set parameter stop <|end|> END") == Say("Set parameter 'stop' to '<|end|>, END'\n")
    assert r.session.options == {"temperature": 0.2, "num_ctx": 4096, "stop": ["<|end|>", "END"]}


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("/set parameter temperature hot", "Couldn't set parameter: \"invalid float value [hot]\"\n"),
        ("/set parameter num_ctx 1.5", "Couldn't set parameter: \"invalid int value [1.5]\"\n"),
        ("/set parameter use_mmap maybe", "Couldn't set parameter: \"invalid bool value [maybe]\"\n"),
        ("/set parameter colour blue", "Couldn't set parameter: \"unknown parameter 'colour'\"\n"),
    ],
)
def test_set_parameter_rejects_bad_values(line: str, said: str) -> None:
    """Wrong types and unknown names are refused with Ollama's message; nothing is stored."""
    r = repl()
    assert r.feed(line) == Say(said)
    assert r.session.options == {}


def test_parameter_value_types() -> None:
    """Ints, floats and bools are parsed as Go's strconv does; errors list every value given."""
    assert parameter_value("seed", ["-1"]) == -1
    assert parameter_value("top_p", [".5"]) == 0.5
    assert parameter_value("use_mmap", ["F"]) is False
    with pytest.raises(ParameterError, match=r"invalid int value \[1_000\]"):
        parameter_value("seed", ["1_000"])
    with pytest.raises(ParameterError, match=r"invalid float value \[inf\]"):
        parameter_value("temperature", ["inf"])
    with pytest.raises(ParameterError, match=r"invalid float value \[x y\]"):
        parameter_value("temperature", ["x", "y"])


def test_set_parameter_without_value_shows_the_list() -> None:
    """``/set parameter`` without a name and value prints the parameter help on stderr."""
    assert repl().feed("/set parameter temperature") == Say(err=HELP_PARAMETERS)


def test_set_system_single_line() -> None:
    """``/set system`` sets the system message and adds it to the conversation."""
    r = repl()
    assert r.feed("/set system You are   terse.") == Say("Set system message.\n")
    assert r.session.system == "You are terse."
    assert r.session.messages == [{"role": "system", "content": "You are terse."}]
    r.feed("/set system Be kind.")  # the last message is a system message: replaced
    assert r.session.messages == [{"role": "system", "content": "Be kind."}]


def test_set_system_multiline() -> None:
    """``/set system \"\"\"`` collects lines until the closing quotes."""
    r = repl()
    assert r.feed('/set system """You are') is None
    assert r.prompt == CONTINUATION
    assert r.feed('a pirate."""') == Say("Set system message.\n")
    assert r.session.system == "You are\na pirate."
    r2 = repl()
    r2.feed('/set system """')
    r2.feed("line one")
    assert r2.feed('line two"""') == Say("Set system message.\n")
    assert r2.session.system == "line one\nline two"


def test_set_switches() -> None:
    """The mode switches change the session and confirm as Ollama does."""
    r = repl()
    assert r.feed("/set nowordwrap") == Say("Set 'nowordwrap' mode.\n") and not r.session.wordwrap
    assert r.feed("/set verbose") == Say("Set 'verbose' mode.\n") and r.session.verbose
    assert r.feed("/set quiet") == Say("Set 'quiet' mode.\n") and not r.session.verbose
    assert r.feed("/set hidethinking") == Say("Set 'hidethinking' mode.\n") and r.session.hide_thinking
    assert r.feed("/set nohistory") is None and not r.session.history
    assert r.feed("/set format json") == Say("Set format to 'json' mode.\n") and r.session.format == "json"
    assert r.feed("/set format yaml") == Say("Invalid or missing format. For 'json' mode use '/set format json'\n")
    assert r.feed("/set noformat") == Say("Disabled format.\n") and r.session.format == ""
    assert r.feed("/set colour") == Say("Unknown command '/set colour'. Type /? for help\n")
    assert r.feed("/set") == Say(err=HELP_SET)


def test_set_think_levels_and_warning() -> None:
    """``/set think [level]`` and ``/set nothink`` set ``think``; a model that cannot think gets a warning."""
    r = repl(capabilities=("completion", "thinking"))
    said = [r.feed("/set think")]
    think = [r.session.think]
    said.append(r.feed("/set think high"))
    think.append(r.session.think)
    said.append(r.feed("/set nothink"))
    think.append(r.session.think)
    assert said == [Say("Set 'think' mode.\n"), Say("Set 'think' mode to 'high'.\n"), Say("Set 'nothink' mode.\n")]
    assert think == [True, "high", False]
    assert r.session.think_explicit
    plain = repl(capabilities=("completion",))
    assert plain.feed("/set think") == Say("Set 'think' mode.\n", 'warning: model "m" does not support thinking output\n')


# -- other commands ----------------------------------------------------------------------------------------


def test_commands_that_need_the_server() -> None:
    """``/show``, ``/load``, ``/save`` and ``/list`` become steps for the driver; wrong use is explained."""
    r = repl()
    assert r.feed("/show parameters") == Show("parameters")
    assert r.feed("/show") == Say(err=HELP_SHOW)
    assert r.feed("/show colour") == Say("Unknown command '/show colour'. Type /? for help\n")
    assert r.feed("/load other:7b") == Load("other:7b")
    assert r.feed("/load") == Say("Usage:\n  /load <modelname>\n")
    assert r.feed("/save mine") == Save("mine")
    assert r.feed("/save a b") == Say("Usage:\n  /save <modelname>\n")
    assert r.feed("/list") == ListModels("")
    assert r.feed("/list qwen") == ListModels("qwen")


def test_clear_keeps_the_system_message() -> None:
    """``/clear`` forgets the conversation but keeps the system message as its start."""
    r = repl()
    r.feed("/set system Be brief.")
    r.session.messages += [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert r.feed("/clear") == Say("Cleared session context\n")
    assert r.session.messages == [{"role": "system", "content": "Be brief."}]


def test_exit_commands_and_unknown_commands() -> None:
    """``/bye`` and ``/exit`` leave; any other slash word is an unknown command."""
    assert repl().feed("/bye") == Exit()
    assert repl().feed("/exit") == Exit()
    assert repl().feed("/nope now") == Say("Unknown command '/nope'. Type /? for help\n")


def test_help_topics() -> None:
    """``/?`` and ``/help`` print help on stderr; ``/? set`` and ``/? show`` the sub-commands."""
    assert repl().feed("/?") == Say(err=help_text(False))
    assert repl().feed("/help set") == Say(err=HELP_SET)
    assert repl().feed("/? /show") == Say(err=HELP_SHOW)
    assert "Ctrl + d" in repl().feed("/? shortcuts").err  # type: ignore[union-attr]
    assert ".jpg" in help_text(True) and ".jpg" not in help_text(False)


def test_file_path_is_a_prompt_for_multimodal_models(tmp_path: object) -> None:
    """A line starting with an image path is a message for a vision model, a bad command otherwise."""
    line = "/tmp/cat.png what is this?"
    assert repl(media_extensions=("png",)).feed(line) == Send(line)
    assert repl().feed(line) == Say("Unknown command '/tmp/cat.png'. Type /? for help\n")


# -- files, requests and /show -------------------------------------------------------------------------------


def test_media_paths_found_and_unescaped() -> None:
    """Paths with the model's extensions are found (escaped spaces undone); a candidate may span
    spaces (``/tmp/notes.txt or cat.png``), which is why only files that exist are attached."""
    text = r"look at /tmp/my\ cat.PNG and ./dog.jpg, notes.txt and /tmp/notes.txt or cat.png"
    assert media_paths(text, ("png", "jpg")) == [
        (r"/tmp/my\ cat.PNG", "/tmp/my cat.PNG"),
        ("./dog.jpg", "./dog.jpg"),
        ("/tmp/notes.txt or cat.png", "/tmp/notes.txt or cat.png"),
    ]
    assert media_paths(text, ()) == []
    assert remove_path("what is '/tmp/a b.png' here", "/tmp/a b.png", "/tmp/a b.png") == "what is  here"


def test_media_extensions_from_show() -> None:
    """Images for a projector or the vision capability, audio for the audio capability."""
    assert media_extensions({"capabilities": ["completion"]}) == ()
    assert media_extensions({"projector_info": {"a": 1}})[:1] == ("jpg",)
    assert media_extensions({"capabilities": ["completion", "audio"]}) == ("wav",)


def test_think_inference() -> None:
    """Without --think, models that can think are asked to; an explicit choice always wins."""
    assert infer_think(None, False, ["completion", "thinking"]) is True
    assert infer_think(None, False, ["completion"]) is None
    assert infer_think(False, True, ["thinking"]) is False


def test_chat_and_create_bodies() -> None:
    """The chat request carries the session's settings; /save creates from the parent when valid."""
    s = Session(model="m", format="json", think="low", keep_alive="5m", options={"seed": 1}, system="S",
                messages=[{"role": "user", "content": "hi"}], parent_model="base:1b")  # fmt: skip
    assert chat_body(s) == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "format": "json",
                            "options": {"seed": 1}, "think": "low", "keep_alive": "5m"}  # fmt: skip
    assert create_body("new", s, True) == {"model": "new", "from": "base:1b", "system": "S",
                                           "parameters": {"seed": 1}, "messages": s.messages}  # fmt: skip
    assert create_body("new", Session(model="m"), False) == {"model": "new", "from": "m"}
    assert request_format('{"type": "object"}') == {"type": "object"}
    assert request_format("") is None


def test_generate_body() -> None:
    """The one-shot generate request: prompt, images, and only the settings that were given."""
    assert generate_body(Session(model="m"), "hi", []) == {"model": "m", "prompt": "hi"}
    s = Session(model="m", format='{"type": "object"}', think=True, keep_alive=-1)
    assert generate_body(s, "hi", ["aGk="]) == {"model": "m", "prompt": "hi", "images": ["aGk="],
                                                 "format": {"type": "object"}, "keep_alive": -1, "think": True}  # fmt: skip


def test_sniff_media() -> None:
    """Files are recognised by their first bytes, not their names."""
    assert sniff_media(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_media(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_media(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_media(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio/wave"
    assert sniff_media(b"hello") == "text/plain; charset=utf-8"
    assert sniff_media(b"\xff\x00\xfe") == "application/octet-stream"


def test_show_texts() -> None:
    """``/show`` answers for missing fields and the session's own parameters and system message."""
    options = {"temperature": 0.2, "stop": ["a", "b"]}
    assert show_text("license", {}, "", options) == "No license was specified for this model.\n"
    assert show_text("template", {}, "", options) == "No prompt template was specified for this model.\n"
    assert show_text("system", {}, "", options) == "No system message was specified for this model.\n"
    assert show_text("system", {"system": "Be brief."}, "", options) == "Be brief.\n\n"
    assert show_text("system", {"system": "Be brief."}, "Mine.", options) == "Mine.\n\n"
    assert show_text("parameters", {"parameters": 'stop "x"'}, "", options) == (
        "Model defined parameters:\n"
        '  stop "x"\n'
        "\n"
        "User defined parameters:\n"
        f"  {'temperature':<30} 0.2\n"
        f"  {'stop':<30} [a b]\n"
        "\n"
    )


# -- flags ----------------------------------------------------------------------------------------------------


def test_flags_checked_as_ollama_does() -> None:
    """--think values, --keepalive durations (negative means forever) and OLLAMA_NOHISTORY."""
    assert think_flag(None) is None and think_flag("") is True and think_flag("false") is False
    assert think_flag("high") == "high"
    with pytest.raises(LlamasupError, match="invalid value for --think"):
        think_flag("extreme")
    assert keep_alive_value("5m") == "5m" and keep_alive_value("-1m") == -1 and keep_alive_value("") is None
    with pytest.raises(LlamasupError, match='time: missing unit in duration "10"'):
        keep_alive_value("10")
    assert go_bool("1") and go_bool("yes") and not go_bool("") and not go_bool("false")
