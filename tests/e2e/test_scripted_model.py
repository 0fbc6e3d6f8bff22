"""Scripted models (tests/scripted_models.py) make the real llama-server say exactly their scripts.

Each test talks to a stock llama-server started on 127.0.0.1 with a scripted
model: after a trigger token the output is the script, piece by piece, then
EOS, whether decoding is greedy or sampled.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.models import DEFAULT_CHAT_TEMPLATE
from tests.processes import llama_server
from tests.scripted_models import ASSISTANT_TRIGGER, plan_scripts, write_scripted_model

pytestmark = pytest.mark.e2e

EXTRA = ("<think>", "</think>")
THINK = "<|think|>"
TOOL = "<|tool|>"
SPLIT = "<|split|>"
SCRIPTS: dict[str, list[str]] = {
    # <think> / </think> are USER_DEFINED tokens, as in Qwen3.
    THINK: ["<think>", "I should check.", "</think>", "The answer."],
    TOOL: ["<tool_call>", '{"name": "get_weather", "arguments": {"city": "Paris"}}', "</tool_call>"],
    # Tags split across plain-text pieces; a leading space, a lone newline, non-ASCII.
    SPLIT: ["<th", "ink>", "Let me see.", "</", "think>", " Done", "\n", "é ✓"],
    # The default ChatML template's generation prompt is itself this trigger.
    ASSISTANT_TRIGGER: ["Hello", " from", " the", " script", "!\n", "Bye."],
}

# A template whose generation prompt ends with its own trigger token.
REPLY = "<|reply|>"
REPLY_SCRIPT = ["Sure", ", here", " it is."]
REPLY_TEMPLATE = DEFAULT_CHAT_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n" + REPLY + "'")

GREEDY = {"temperature": 0}
SAMPLED = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "seed": 1234}


def _serve(binary: Path, tmp: Path, scripts: dict[str, list[str]], **kwargs: Any) -> Iterator[str]:
    model = write_scripted_model(tmp / "model.gguf", scripts, **kwargs)
    with llama_server(binary, model, tmp) as server:
        yield server.url


@pytest.fixture(scope="module")
def server(llama_server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Four scripts in one model, default ChatML template."""
    yield from _serve(llama_server_bin, tmp_path_factory.mktemp("scripted"), SCRIPTS, extra_special=EXTRA)


@pytest.fixture(scope="module")
def reply_server(llama_server_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A template that ends the generation prompt with the trigger token."""
    yield from _serve(llama_server_bin, tmp_path_factory.mktemp("scripted-reply"), {REPLY: REPLY_SCRIPT}, chat_template=REPLY_TEMPLATE)


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _stream(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers.get_content_type() == "text/event-stream"
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[len("data: ") :]))
    return events


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("trigger", list(SCRIPTS), ids=["think", "tool", "split", "assistant"])
def test_completion_is_the_script(server: str, trigger: str, sampling: dict[str, Any]) -> None:
    """(a)+(b): every trigger of one model yields its own script, then EOS, greedy or sampled."""
    reply = _post(server + "/completion", {"prompt": f"Question: what now? {trigger}", **sampling})
    assert reply["content"] == "".join(SCRIPTS[trigger])
    assert reply["stop_type"] == "eos"
    assert reply["tokens_predicted"] == len(SCRIPTS[trigger]) + 1  # one token per piece, then EOS


def test_last_trigger_decides(server: str) -> None:
    """(b): a bigram model looks only at the last token, so of two triggers in a prompt the last one wins."""
    first = _post(server + "/completion", {"prompt": f"{TOOL} then {THINK}", **SAMPLED})
    second = _post(server + "/completion", {"prompt": f"{THINK} then {TOOL}", **SAMPLED})
    assert first["content"] == "".join(SCRIPTS[THINK])
    assert second["content"] == "".join(SCRIPTS[TOOL])


def test_prompt_without_trigger_ends_at_once(server: str) -> None:
    """Every token outside the scripts is followed by EOS."""
    reply = _post(server + "/completion", {"prompt": "Hello there", **SAMPLED})
    assert reply["content"] == "" and reply["stop_type"] == "eos" and reply["tokens_predicted"] == 1


def test_trigger_is_one_token_and_pieces_detokenize_exactly(server: str) -> None:
    plan = plan_scripts(SCRIPTS, EXTRA)
    tokens = _post(server + "/tokenize", {"content": f"Q: {SPLIT}", "with_pieces": True})["tokens"]
    assert tokens[-1] == {"id": plan.trigger_ids[SPLIT], "piece": SPLIT}
    chat = _post(server + "/tokenize", {"content": "<|im_start|>user\nhi<|im_end|>\n" + ASSISTANT_TRIGGER})["tokens"]
    assert chat[-1] == plan.trigger_ids[ASSISTANT_TRIGGER]  # longest special match wins over <|im_start|>
    for piece, token_id in plan.piece_ids.items():
        assert _post(server + "/detokenize", {"tokens": [token_id]})["content"] == piece


def test_split_tag_streams_piece_by_piece(server: str) -> None:
    """(c): stream=true sends one SSE event per token, so a tag split across pieces arrives split."""
    events = _stream(server + "/completion", {"prompt": f"Go {SPLIT}", "stream": True, **SAMPLED})
    final = events[-1]
    assert final["stop"] is True and final["stop_type"] == "eos" and final["content"] == ""
    partial = events[:-1]
    assert all(e["stop"] is False and len(e["tokens"]) == 1 for e in partial)
    # The last partial event carries the EOS token, which renders as nothing.
    assert [e["content"] for e in partial] == [*SCRIPTS[SPLIT], ""]


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_chat_with_assistant_trigger(server: str, sampling: dict[str, Any]) -> None:
    """(d): the default ChatML generation prompt is the trigger, so every chat reply is the script."""
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}], **sampling}
    reply = _post(server + "/v1/chat/completions", body)
    (choice,) = reply["choices"]
    assert choice["message"]["content"] == "".join(SCRIPTS[ASSISTANT_TRIGGER])
    assert choice["finish_reason"] == "stop"


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_chat_with_template_ending_in_trigger(reply_server: str, sampling: dict[str, Any]) -> None:
    """(d): a template that appends a trigger token after ``<|im_start|>assistant\\n``."""
    rendered = _post(reply_server + "/apply-template", {"messages": [{"role": "user", "content": "Hi"}]})["prompt"]
    assert rendered.endswith("<|im_start|>assistant\n" + REPLY)
    body = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "More?"}], **sampling}
    reply = _post(reply_server + "/v1/chat/completions", body)
    (choice,) = reply["choices"]
    assert choice["message"]["content"] == "".join(REPLY_SCRIPT)
    assert choice["finish_reason"] == "stop"
