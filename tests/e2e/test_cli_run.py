"""``llamasup run`` as a real process against llamasup (``python -m supervisor serve``) with the real
llama-server and generated models whose answers are scripted (tests/scripted_models.py).

Non-interactive runs are checked for their exact output. The interactive session is driven through a
pseudo-terminal with pexpect: every wait is an ``expect`` on what the terminal shows, with a timeout,
never a sleep.

Ctrl+C during an answer is made deterministic by flow control rather than timing: the ``long``
model's answer (about 200 KB) is far bigger than a pty buffers, and the test stops reading as soon as
the answer starts, so the command is necessarily blocked mid-answer when the interrupt arrives.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.bert_models import write_bert_embedding_model
from tests.chat_models import GO_CHATML_NO_THINKING, install_chat_models, write_chat_ggufs
from tests.models import write_model
from tests.conftest import ROOT, serve_process
from tests.processes import stop_process
from tests.projector_models import image_token_count, tiny_png, write_projector
from tests.scripted_models import ASSISTANT_TRIGGER, write_scripted_model
from tests.store_helpers import install_gguf

pytestmark = pytest.mark.e2e


TIMEOUT = 120  # seconds for any one expected output (a model load included)

PLAIN_ANSWER = "Hello from llamasup."
THOUGHT, ANSWER = "Let me see.", "The answer is 4."
JSON_ANSWER = '{"answer": 4}'
# One token per piece, so 400 pieces of ~500 characters make a ~200 KB answer in 402 tokens.
LONG_SCRIPT = ["BEGIN", *(f" part{i:03d}" + " lorem ipsum dolor sit amet" * 18 for i in range(400)), " THE-END"]
HISTORY = [{"role": "user", "content": "What came before?"}, {"role": "assistant", "content": "An earlier answer."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llama_server_bin: Path) -> Iterator[str]:
    """llamasup with: ``plain-go``, ``answer-go`` (thinks), ``json`` (answers JSON then chatter),
    ``long`` (a ~200 KB answer), ``history`` (stored MESSAGEs), ``embedder`` (BERT) and ``vision``
    (the random tiny model with a projector, answers cut at 4 tokens)."""
    tmp = tmp_path_factory.mktemp("cli-run")
    models = tmp / "models"
    install_chat_models(models, write_chat_ggufs(tmp / "gguf"))
    json_gguf = write_scripted_model(tmp / "json.gguf", {ASSISTANT_TRIGGER: ['{"answer"', ": 4", "}", " and some chatter"]})
    install_gguf(models, "json", json_gguf, template=GO_CHATML_NO_THINKING)
    long_gguf = write_scripted_model(tmp / "long.gguf", {ASSISTANT_TRIGGER: LONG_SCRIPT})
    install_gguf(models, "long", long_gguf, template=GO_CHATML_NO_THINKING)
    plain_gguf = write_scripted_model(tmp / "plain.gguf", {ASSISTANT_TRIGGER: ["Hello", " from", " llamasup."]})
    install_gguf(models, "history", plain_gguf, template=GO_CHATML_NO_THINKING, messages=HISTORY)
    install_gguf(models, "embedder", write_bert_embedding_model(tmp / "bert.gguf"))
    tiny = write_model(tmp / "tiny.gguf", preset="tiny")
    install_gguf(models, "tiny", tiny)
    projector = write_projector(tmp / "mmproj.gguf", text_n_embd=128)
    install_gguf(models, "vision", tiny, projector=projector, params={"num_predict": 4})

    proc, url = serve_process(models, llama_server_bin, tmp)
    try:
        yield url
    finally:
        stop_process(proc)


def cli_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "OLLAMA_NOHISTORY")}
    env.update(OLLAMA_HOST=url, HOME=str(home), TERM="xterm")
    return env


def run(url: str, home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``llamasup run …`` with ``stdin`` piped in (so it is not a terminal) and output captured."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "run", *args], input=stdin, capture_output=True, text=True,
        env=cli_env(url, home), cwd=ROOT, timeout=TIMEOUT,
    )  # fmt: skip


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    import urllib.request

    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return json.loads(r.read())


# -- non-interactive ----------------------------------------------------------------------------------------


def test_prompt_argument_prints_the_answer(server: str, tmp_path: Path) -> None:
    """``run m "prompt"`` prints the answer, then a blank line, and nothing on stderr (not a terminal)."""
    done = run(server, tmp_path, "plain-go", "Say", "hello")
    assert (done.returncode, done.stdout, done.stderr) == (0, PLAIN_ANSWER + "\n\n", "")


def test_stdin_is_the_prompt(server: str, tmp_path: Path) -> None:
    """``echo hi | run m``: standard input (not a terminal) is the prompt."""
    done = run(server, tmp_path, "plain-go", stdin="hi\n")
    assert (done.returncode, done.stdout) == (0, PLAIN_ANSWER + "\n\n")


def test_thinking_is_shown_in_a_block_or_hidden(server: str, tmp_path: Path) -> None:
    """A thinking model's thoughts come between ``Thinking...`` and ``...done thinking.`` (no colour in a
    pipe); ``--hidethinking`` leaves only the answer."""
    done = run(server, tmp_path, "answer-go", "What is 2+2?")
    assert done.stdout == f"Thinking...\n{THOUGHT}\n...done thinking.\n\n{ANSWER}\n\n"
    hidden = run(server, tmp_path, "--hidethinking", "answer-go", "What is 2+2?")
    assert hidden.stdout == ANSWER + "\n\n"


def test_verbose_prints_timings_on_stderr(server: str, tmp_path: Path) -> None:
    """``--verbose`` adds Ollama's timing lines on stderr; stdout keeps only the answer."""
    done = run(server, tmp_path, "--verbose", "plain-go", "Hi")
    assert done.stdout == PLAIN_ANSWER + "\n\n"
    lines = done.stderr.splitlines()
    assert re.fullmatch(r"total duration: {7}\S+", lines[0])
    assert "eval count:           4 token(s)" in lines  # three pieces, then the end-of-generation token
    for label in ("prompt eval count:    ", "prompt eval rate:     ", "eval duration:        ", "eval rate:            "):
        assert any(line.startswith(label) for line in lines), (label, lines)
    assert re.fullmatch(r"eval rate: {12}\d+\.\d\d tokens/s", lines[-1])


def test_format_json_is_sent(server: str, tmp_path: Path) -> None:
    """``--format json`` constrains the answer to one JSON value: the chatter after it is cut off."""
    free = run(server, tmp_path, "json", "Answer in JSON")
    assert free.stdout == JSON_ANSWER + " and some chatter\n\n"
    constrained = run(server, tmp_path, "--format", "json", "json", "Answer in JSON")
    assert constrained.returncode == 0, constrained.stderr
    assert json.loads(constrained.stdout) == {"answer": 4}


def test_embedding_model_prints_the_vector(server: str, tmp_path: Path) -> None:
    """An embedding model prints the prompt's vector as one JSON array (``--dimensions`` shortens it)."""
    done = run(server, tmp_path, "embedder", "hello world")
    assert done.returncode == 0, done.stderr
    vector = json.loads(done.stdout)
    assert done.stdout.endswith("]\n") and len(vector) > 4 and all(isinstance(x, float) for x in vector)
    short = json.loads(run(server, tmp_path, "--dimensions", "4", "embedder", "hello world").stdout)
    assert len(short) == 4


def test_embedding_model_without_text_is_an_error(server: str, tmp_path: Path) -> None:
    """With no text an embedding model fails with Ollama's message (naming llamasup)."""
    done = run(server, tmp_path, "embedder")
    assert done.returncode == 1
    assert done.stderr == 'Error: embedding models require input text. Usage: llamasup run embedder "your text here"\n'


def _prompt_tokens(stderr: str) -> int:
    (count,) = re.findall(r"^prompt eval count: +(\d+) token\(s\)$", stderr, re.M)
    return int(count)


def test_image_path_is_attached_for_a_vision_model(server: str, tmp_path: Path) -> None:
    """An image path in the prompt of a vision model is read, sent as an image (its tokens show in the
    prompt count) and taken out of the text; a path that does not exist stays text."""
    image = tmp_path / "my cat.png"
    image.write_bytes(tiny_png())
    escaped = str(image).replace(" ", "\\ ")
    with_image = run(server, tmp_path, "--verbose", "vision", f"What is in {escaped} ?")
    assert with_image.returncode == 0, with_image.stderr
    assert with_image.stderr.startswith(f"Added image '{image}'\n")
    without = run(server, tmp_path, "--verbose", "vision", "What is in  ?")
    assert _prompt_tokens(with_image.stderr) - _prompt_tokens(without.stderr) >= image_token_count()
    missing = run(server, tmp_path, "--verbose", "vision", f"What is in {tmp_path}/none.png ?")
    assert missing.returncode == 0 and "Added image" not in missing.stderr


def test_bad_flags_are_one_error_line(server: str, tmp_path: Path) -> None:
    """A bad ``--keepalive`` or ``--think`` is refused before anything is sent."""
    done = run(server, tmp_path, "--keepalive", "10", "plain-go", "Hi")
    assert (done.returncode, done.stderr) == (1, 'Error: time: missing unit in duration "10"\n')
    done = run(server, tmp_path, "--think=extreme", "plain-go", "Hi")
    assert done.returncode == 1 and done.stderr.startswith('Error: invalid value for --think: "extreme"')


# -- interactive ----------------------------------------------------------------------------------------------


def spawn(url: str, home: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable, ["-m", "supervisor", "run", *args], env=cli_env(url, home), cwd=str(ROOT),
        dimensions=(40, 200), encoding="utf-8", timeout=TIMEOUT, maxread=65536,
    )  # fmt: skip
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    status = child.exitstatus
    assert isinstance(status, int)
    return status


def test_interactive_session(server: str, tmp_path: Path) -> None:
    """The prompt, a question and its answer, a multi-line message, ``/set parameter``, ``/show``,
    ``/save`` (which keeps the conversation), ``/list``, ``/load`` (and a thinking answer), the history
    file, Ctrl+C at the prompt and ``/bye``."""
    child = spawn(server, tmp_path, "plain-go")
    child.expect_exact(">>> ")
    child.sendline("Hi there")
    child.expect_exact(PLAIN_ANSWER)
    child.expect_exact(">>> ")

    child.sendline('"""')
    child.expect_exact("... ")
    child.sendline("two lines")
    child.expect_exact("... ")
    child.sendline('in one message"""')
    child.expect_exact(PLAIN_ANSWER)
    child.expect_exact(">>> ")

    child.sendline("/set parameter temperature 0.2")
    child.expect_exact("Set parameter 'temperature' to '0.2'")
    child.expect_exact(">>> ")
    child.sendline("/set parameter temperature hot")
    child.expect_exact("Couldn't set parameter: \"invalid float value [hot]\"")
    child.expect_exact(">>> ")
    child.sendline("/show parameters")
    child.expect_exact("User defined parameters:")
    child.expect(r"temperature +0\.2")
    child.expect_exact(">>> ")
    child.sendline("/nope")
    child.expect_exact("Unknown command '/nope'. Type /? for help")
    child.expect_exact(">>> ")

    child.sendline("/save cli-session")
    child.expect_exact("Created new model 'cli-session'")
    child.expect_exact(">>> ")
    child.sendline("/list plain")
    child.expect(r"NAME\s+ID\s+SIZE\s+MODIFIED")
    child.expect_exact("plain-go:latest")
    child.expect_exact(">>> ")

    child.sendline("/load nope")
    child.expect_exact("Couldn't find model 'nope'")
    child.expect_exact(">>> ")
    child.sendline("/load answer-go")  # a model that thinks: its thoughts come first, marked
    child.expect_exact("Loading model 'answer-go'")
    child.expect_exact(">>> ")
    child.sendline("What is 2+2?")
    child.expect_exact("Thinking...")
    child.expect_exact(THOUGHT)
    child.expect_exact("...done thinking.")
    child.expect_exact(ANSWER)
    child.expect_exact(">>> ")

    child.sendintr()  # Ctrl+C at an empty prompt: a hint, and the session goes on
    child.expect_exact("Use Ctrl + d or /bye to exit.")
    child.expect_exact(">>> ")
    child.sendline("/bye")
    assert finish(child) == 0

    saved = post(server, "/api/show", {"model": "cli-session"})
    assert saved["messages"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": PLAIN_ANSWER},
        {"role": "user", "content": "\ntwo lines\nin one message"},
        {"role": "assistant", "content": PLAIN_ANSWER},
    ]
    assert "temperature" in saved["parameters"]
    history = (tmp_path / ".ollama" / "history").read_text().splitlines()
    assert history[0] == "Hi there" and history[-1] == "/bye"


def test_stored_messages_are_shown_first(server: str, tmp_path: Path) -> None:
    """A model's stored conversation (MESSAGE) is printed before the first prompt; Ctrl+D leaves."""
    child = spawn(server, tmp_path, "history")
    child.expect_exact(">>> What came before?")
    child.expect_exact("An earlier answer.")
    child.expect_exact(">>> ")
    child.sendeof()
    assert finish(child) == 0


def test_ctrl_c_stops_the_answer_and_the_session_goes_on(server: str, tmp_path: Path) -> None:
    """Ctrl+C while an answer streams stops it, drops it, and brings the prompt back; the next question
    gets a whole answer."""
    child = spawn(server, tmp_path, "long", "--nowordwrap")
    child.expect_exact(">>> ")
    child.sendline("Tell me everything")
    child.expect_exact("BEGIN")
    # No more reading: the command fills the pty and blocks far before " THE-END".
    child.sendintr()
    child.expect_exact(">>> ")
    assert "THE-END" not in child.before

    child.sendline("/show parameters")  # the session is alive and answers commands
    child.expect_exact("Model defined parameters:")
    child.expect_exact(">>> ")
    child.sendline("Again, please")
    child.expect_exact("part399")
    child.expect_exact("THE-END")
    child.expect_exact(">>> ")
    child.sendline("/bye")
    assert finish(child) == 0
