"""The prompt pipeline end to end, with the real llama-server: Go templates rendered by llamasup,
thinking and tool calls split out of real model output, structured output, images, fill-in-middle,
logprobs, truncation and the errors of each.

Output that must contain tags comes from "scripted" models (tests/scripted_models.py): bigram models
whose greedy *and* sampled output after the chat template's assistant prompt is a chosen token
sequence, with tags split across tokens so the parsers see them arrive in pieces.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import ollama
import pytest
from aiohttp.test_utils import TestServer

from tests.chat_models import ANSWER_SCRIPT, GO_CHATML, JINJA_CHATML_TOOLS, TOOL_SCRIPT, WEATHER_TOOL
from tests.conftest import ServerFactory, base_url
from tests.models import write_model
from tests.projector_models import image_token_count, tiny_png, write_projector
from tests.scripted_models import ASSISTANT_TRIGGER, write_scripted_model
from tests.store_helpers import install_gguf

# A DeepSeek-R1-like variant: when thinking, the prompt itself ends by opening the thinking block.
GO_OPENS_THINKING = GO_CHATML.replace(
    '{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant\n{{ end }}',
    '{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant\n{{ if $.Think }}<think>\n{{ end }}{{ end }}',
)
OPENED_SCRIPT = ["Thinking", " inside.", "</th", "ink>", "Done."]
FIM_TEMPLATE = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>{{- else }}{{ .Prompt }}{{- end }}"


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pipeline-models")
    return {
        "answer": write_scripted_model(d / "answer.gguf", {ASSISTANT_TRIGGER: ANSWER_SCRIPT}),
        "tools": write_scripted_model(d / "tools.gguf", {ASSISTANT_TRIGGER: TOOL_SCRIPT}, chat_template=JINJA_CHATML_TOOLS),
        "opened": write_scripted_model(d / "opened.gguf", {"<think>\n": OPENED_SCRIPT}),
        "random": write_model(d / "random.gguf", preset="tiny"),
        "projector": write_projector(d / "mmproj.gguf", text_n_embd=128),
    }


@pytest.fixture
def store(tmp_path: Path, models_dir: Path, ggufs: dict[str, Path]) -> Path:
    """The shared store (``tiny``) plus the models these tests use."""
    install_gguf(models_dir, "go", ggufs["random"], template=GO_CHATML, system="You are terse.",
                 messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}])  # fmt: skip
    install_gguf(models_dir, "go-bare", ggufs["random"], template=GO_CHATML)
    install_gguf(models_dir, "fim", ggufs["random"], template=FIM_TEMPLATE)
    install_gguf(models_dir, "answer-go", ggufs["answer"], template=GO_CHATML)
    install_gguf(models_dir, "tools-go", ggufs["tools"], template=GO_CHATML)
    install_gguf(models_dir, "opened-go", ggufs["opened"], template=GO_OPENS_THINKING)
    install_gguf(models_dir, "tools-native", ggufs["tools"])
    install_gguf(models_dir, "vision", ggufs["random"], projector=ggufs["projector"])
    install_gguf(models_dir, "vision-go", ggufs["random"], projector=ggufs["projector"], template=GO_CHATML)
    return models_dir


@pytest.fixture
async def server(start_server: ServerFactory, llama_server_bin: Path, store: Path) -> TestServer:
    return await start_server(llama_server_bin, models_dir=store)


async def _post(server: TestServer, path: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url(server) + path, json=body) as r:
            raw = await r.read()
            return r.status, [json.loads(line) for line in raw.splitlines() if line.strip()]


async def _one(server: TestServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, (reply,) = await _post(server, path, {**body, "stream": False})
    assert status == 200, reply
    return reply


def _text(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(c["message"].get(key, "") if "message" in c else c.get(key, "") for c in chunks)


# -- Go templates ----------------------------------------------------------------------------------


async def test_go_template_renders_exactly(server: TestServer) -> None:
    """A TEMPLATE layer is executed by llamasup with SYSTEM, MESSAGE layers and tools (_debug_render_only)."""
    reply = await _one(server, "/api/chat", {"model": "go", "messages": [{"role": "user", "content": "Weather in Paris?"}],
                                             "tools": [WEATHER_TOOL], "_debug_render_only": True})  # fmt: skip
    tool_json = (
        '{"type":"function","function":{"name":"get_weather","description":"Weather for a city",'
        '"parameters":{"type":"object","required":["city"],"properties":{"city":{"type":"string","description":"City name"},"days":{"type":"integer"}}}}}'
    )
    assert reply["_debug_info"] == {
        "rendered_template": "<|im_start|>system\nYou are terse.\n\n# Tools\n<tools>\n" + tool_json + "\n</tools><|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n",
        "image_count": 0,
    }
    assert reply["done"] is False


async def test_generate_system_override_and_messages(server: TestServer) -> None:
    """generate renders one user message after the request's system (replacing SYSTEM) and the MESSAGEs."""
    reply = await _one(server, "/api/generate", {"model": "go", "prompt": "Go on", "system": "Be kind.", "_debug_render_only": True})
    assert reply["_debug_info"]["rendered_template"] == (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nGo on<|im_end|>\n<|im_start|>assistant\n"
    )
    assert reply["response"] == ""


async def test_request_template_override(server: TestServer) -> None:
    """A generate's own template replaces the model's for that request (legacy .System/.Prompt mode)."""
    reply = await _one(server, "/api/generate", {"model": "tiny", "prompt": "Q", "system": "S",
                                                 "template": "[{{ .System }}|{{ .Prompt }}]", "_debug_render_only": True})  # fmt: skip
    assert reply["_debug_info"]["rendered_template"] == "[S|Q]"


async def test_tool_follow_up_renders(server: TestServer) -> None:
    """An assistant tool call and a role "tool" result with tool_name render back into the prompt."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"temp": 20}', "tool_name": "get_weather"},
    ]
    reply = await _one(server, "/api/chat", {"model": "go-bare", "messages": messages, "_debug_render_only": True})
    assert reply["_debug_info"]["rendered_template"] == (
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    )


async def test_native_tool_follow_up_renders(server: TestServer) -> None:
    """On the Jinja path the call goes back to llama-server (which hands the template its arguments as an
    object), paired with its result, and the reasoning of an earlier answer is replayed."""
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "thinking": "Use the tool.",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"temp": 20}', "tool_name": "get_weather"},
        {"role": "assistant", "content": "It is 20.", "thinking": "Easy."},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip
    reply = await _one(server, "/api/chat", {"model": "tools-native", "messages": messages, "_debug_render_only": True})
    assert reply["_debug_info"]["rendered_template"] == (
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant<tool_call>\n"  # {%- trims the newline
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n<think>\nEasy.\n</think>\nIt is 20.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n"
    )


async def test_bad_request_template_is_an_error(server: TestServer) -> None:
    """A request template that does not parse is refused with Go's parse error."""
    status, (reply,) = await _post(server, "/api/generate", {"model": "tiny", "prompt": "x", "template": "{{ .Prompt"})
    assert status == 500 and reply["error"].startswith("template: :1: ")


# -- thinking --------------------------------------------------------------------------------------


async def test_thinking_split_while_streaming(server: TestServer) -> None:
    """Thinking is on by default for a thinking model: tags split across tokens never reach the client."""
    status, chunks = await _post(server, "/api/chat", {"model": "answer-go", "messages": [{"role": "user", "content": "2+2?"}]})
    assert status == 200
    assert _text(chunks, "thinking") == "Let me see." and _text(chunks, "content") == "The answer is 4."
    assert not any("<" in c["message"]["content"] or ">" in c["message"].get("thinking", "") for c in chunks)
    assert sum(1 for c in chunks if c["message"].get("thinking")) >= 2  # streamed, not gathered at the end
    assert chunks[-1]["done"] is True and chunks[-1]["done_reason"] == "stop"


async def test_generate_thinking_and_levels(server: TestServer) -> None:
    """generate splits thinking too; a level string is accepted; think:false leaves the text as it is."""
    reply = await _one(server, "/api/generate", {"model": "answer-go", "prompt": "2+2?", "think": "high"})
    assert reply["thinking"] == "Let me see." and reply["response"] == "The answer is 4."
    reply = await _one(server, "/api/generate", {"model": "answer-go", "prompt": "2+2?", "think": False})
    assert "thinking" not in reply and reply["response"] == "<think>Let me see.</think>The answer is 4."


async def test_prompt_that_opens_thinking(server: TestServer) -> None:
    """When the prompt ends with the opening tag, the model's first words are already thinking."""
    assert GO_OPENS_THINKING != GO_CHATML
    shown = await _one(server, "/api/chat", {"model": "opened-go", "messages": [{"role": "user", "content": "Q"}], "_debug_render_only": True})
    assert shown["_debug_info"]["rendered_template"].endswith("<|im_start|>assistant\n<think>\n")
    status, chunks = await _post(server, "/api/chat", {"model": "opened-go", "messages": [{"role": "user", "content": "Q"}]})
    assert status == 200
    assert _text(chunks, "thinking") == "Thinking inside." and _text(chunks, "content") == "Done."


async def test_think_errors(server: TestServer) -> None:
    """think on a model without the capability, and invalid think values, are 400s with Ollama's text."""
    status, (reply,) = await _post(server, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "think": True})
    assert status == 400 and reply["error"] == '"tiny" does not support thinking'
    status, (reply,) = await _post(server, "/api/generate", {"model": "tiny", "prompt": "x", "think": False, "stream": False, "options": {"num_predict": 1}})
    assert status == 200
    status, (reply,) = await _post(server, "/api/generate", {"model": "answer-go", "prompt": "x", "think": "extreme"})
    assert status == 400 and reply["error"] == 'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)'


# -- tool calls ------------------------------------------------------------------------------------


async def test_go_template_tool_call_streamed_before_done(server: TestServer) -> None:
    """On the template path a tool call is parsed out of the text and sent as soon as it is complete."""
    status, chunks = await _post(server, "/api/chat", {"model": "tools-go", "messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER_TOOL]})
    assert status == 200
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    (call,) = with_calls[0]["message"]["tool_calls"]
    assert re.fullmatch(r"call_[a-z0-9]{8}", call["id"])
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}
    assert _text(chunks, "thinking") == "I need the weather." and _text(chunks, "content").strip() == ""
    assert "tool_call" not in _text(chunks, "content")


async def test_native_tool_calls_on_final_chunk(server: TestServer) -> None:
    """With the GGUF's Jinja template llama-server parses the call; its argument string becomes an object."""
    status, chunks = await _post(server, "/api/chat", {"model": "tools-native", "messages": [{"role": "user", "content": "Weather?"}], "tools": [WEATHER_TOOL]})
    assert status == 200
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    (call,) = final["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "days": 2}} and call["id"]
    assert _text(chunks, "thinking") == "I need the weather."


async def test_ollama_client_reads_tool_calls(server: TestServer) -> None:
    """The ollama Python client gets typed tool calls with object arguments from both paths."""
    client = ollama.AsyncClient(host=base_url(server))
    for model in ("tools-go", "tools-native"):
        reply = await client.chat(model=model, messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL])
        (call,) = reply.message.tool_calls or []
        assert call.function.name == "get_weather" and dict(call.function.arguments) == {"city": "Paris", "days": 2}
        assert reply.message.thinking == "I need the weather."


async def test_tools_on_a_model_without_tools(server: TestServer) -> None:
    """tools on a model whose template cannot render them: 400 naming the full model name."""
    status, (reply,) = await _post(server, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]})
    assert status == 400 and reply["error"] == "registry.ollama.ai/library/tiny:latest does not support tools"


# -- structured output -----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 99}, "sure": {"type": "boolean"},
                   "unit": {"enum": ["cm", "m"]}},
    "required": ["answer", "sure", "unit"],
    "additionalProperties": False,
}  # fmt: skip


def _conforms(text: str) -> bool:
    value = json.loads(text)
    return (
        set(value) == {"answer", "sure", "unit"}
        and isinstance(value["answer"], int) and 0 <= value["answer"] <= 99
        and isinstance(value["sure"], bool) and value["unit"] in ("cm", "m")
    )  # fmt: skip


@pytest.mark.parametrize("model", ["tiny", "go"])
async def test_schema_constrains_a_random_model(server: TestServer, model: str) -> None:
    """format: <schema> makes a random-weight model answer with JSON valid against the schema (both paths)."""
    for seed in (1, 2, 3):
        options = {"seed": seed, "temperature": 1.0, "num_predict": 200}
        chat = await _one(server, "/api/chat", {"model": model, "messages": [{"role": "user", "content": "Size?"}], "format": SCHEMA, "options": options, "think": False})  # fmt: skip
        assert _conforms(chat["message"]["content"]), chat["message"]["content"]
        gen = await _one(server, "/api/generate", {"model": model, "prompt": "Size?", "format": SCHEMA, "options": options, "think": False})  # fmt: skip
        assert _conforms(gen["response"]), gen["response"]


async def test_format_json(server: TestServer) -> None:
    """format: "json" yields a JSON object."""
    reply = await _one(server, "/api/generate", {"model": "tiny", "prompt": "x", "format": "json", "options": {"seed": 5, "num_predict": 300}})
    assert isinstance(json.loads(reply["response"]), dict)


async def test_schema_after_thinking(server: TestServer) -> None:
    """A thinking model thinks freely first, then answers under the schema (two passes)."""
    reply = await _one(server, "/api/chat", {"model": "answer-go", "messages": [{"role": "user", "content": "2+2?"}], "format": SCHEMA})
    assert reply["message"]["thinking"] == "Let me see."
    assert _conforms(reply["message"]["content"]), reply["message"]["content"]


async def test_bad_format(server: TestServer) -> None:
    """A format that is neither "json" nor an object is refused with Ollama's message."""
    status, (reply,) = await _post(server, "/api/generate", {"model": "tiny", "prompt": "x", "format": "yaml"})
    assert status == 500 and reply["error"] == 'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object'


# -- images ----------------------------------------------------------------------------------------


async def test_images_reach_the_projector(server: TestServer) -> None:
    """An image on chat or generate becomes the projector's tokens, on both paths."""
    png = base64.b64encode(tiny_png()).decode()
    extra = image_token_count()
    options = {"num_predict": 1, "temperature": 0}
    for model in ("vision", "vision-go"):
        plain = await _one(server, "/api/chat", {"model": model, "messages": [{"role": "user", "content": "What is it?"}], "options": options})  # fmt: skip
        seen = await _one(server, "/api/chat", {"model": model, "messages": [{"role": "user", "content": "What is it?", "images": [png]}], "options": options})  # fmt: skip
        assert seen["prompt_eval_count"] == plain["prompt_eval_count"] + extra, model
        gen = await _one(server, "/api/generate", {"model": model, "prompt": "What is it?", "images": [png, png], "options": options})
        gen_plain = await _one(server, "/api/generate", {"model": model, "prompt": "What is it?", "options": options})
        assert gen["prompt_eval_count"] == gen_plain["prompt_eval_count"] + 2 * extra, model


async def test_in_place_projector(start_server: ServerFactory, llama_server_bin: Path, store: Path, ggufs: dict[str, Path], tmp_path: Path) -> None:
    """A GGUF used in place gets the mmproj*.gguf beside it as its projector (--mmproj), and sees images."""
    folder = tmp_path / "ggufs"
    folder.mkdir()
    (folder / "seer.gguf").symlink_to(ggufs["random"])
    (folder / "mmproj-seer.gguf").symlink_to(ggufs["projector"])
    server = await start_server(llama_server_bin, models_dir=store, model_dirs=(folder,))
    png = base64.b64encode(tiny_png()).decode()
    options = {"num_predict": 1, "temperature": 0}
    plain = await _one(server, "/api/generate", {"model": "seer", "prompt": "What is it?", "options": options})
    seen = await _one(server, "/api/generate", {"model": "seer", "prompt": "What is it?", "images": [png], "options": options})
    assert seen["prompt_eval_count"] == plain["prompt_eval_count"] + image_token_count()


async def test_image_tags_in_go_template(server: TestServer) -> None:
    """On the template path images are [img-N] in the rendered prompt, where the message says [img] or first."""
    png = base64.b64encode(tiny_png()).decode()
    reply = await _one(server, "/api/chat", {"model": "vision-go", "_debug_render_only": True,
                                             "messages": [{"role": "user", "content": "A", "images": [png]},
                                                          {"role": "assistant", "content": "B"},
                                                          {"role": "user", "content": "Compare [img] please", "images": [png]}]})  # fmt: skip
    assert reply["_debug_info"] == {
        "rendered_template": "<|im_start|>user\n[img-0]A<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n"
        "<|im_start|>user\nCompare [img-1] please<|im_end|>\n<|im_start|>assistant\n",
        "image_count": 2,
    }


async def test_image_errors(server: TestServer) -> None:
    """Images for a model without vision, and malformed base64, are 400s."""
    png = base64.b64encode(tiny_png()).decode()
    status, (reply,) = await _post(server, "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x", "images": [png]}]})
    assert status == 400 and reply["error"] == "registry.ollama.ai/library/tiny:latest does not support vision"
    status, (reply,) = await _post(server, "/api/generate", {"model": "vision", "prompt": "x", "images": ["data:image/png;base64," + png]})
    assert status == 400 and reply["error"] == "illegal base64 data at input byte 4"
    status, (reply,) = await _post(server, "/api/generate", {"model": "vision", "prompt": "x", "images": [base64.b64encode(b"not an image").decode()]})
    assert status == 400 and reply["error"] == "image 0 is not a supported image (JPEG, PNG, GIF, BMP or WebP)"


# -- fill-in-middle --------------------------------------------------------------------------------


async def test_suffix_uses_the_template(server: TestServer) -> None:
    """suffix executes the template with .Prompt and .Suffix, and generates."""
    reply = await _one(server, "/api/generate", {"model": "fim", "prompt": "def f(", "suffix": "return 1", "_debug_render_only": True})
    assert reply["_debug_info"]["rendered_template"] == "<PRE> def f( <SUF>return 1 <MID>"
    reply = await _one(server, "/api/generate", {"model": "fim", "prompt": "def f(", "suffix": "return 1", "options": {"num_predict": 3}})
    assert reply["done_reason"] == "length" and reply["eval_count"] == 3


async def test_suffix_without_insert(server: TestServer) -> None:
    """suffix on a model whose template has no .Suffix: Ollama's does-not-support-insert error."""
    status, (reply,) = await _post(server, "/api/generate", {"model": "tiny", "prompt": "a", "suffix": "b"})
    assert status == 400 and reply["error"] == "registry.ollama.ai/library/tiny:latest does not support insert"


# -- logprobs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "model"), [("/api/generate", "tiny"), ("/api/chat", "tiny"), ("/api/chat", "go")])
async def test_logprobs(server: TestServer, path: str, model: str) -> None:
    """logprobs with top_logprobs: one entry per token, in Ollama's shape, spelling out the answer."""
    body: dict[str, Any] = {"model": model, "logprobs": True, "top_logprobs": 3, "think": False,
                            "options": {"num_predict": 6, "temperature": 0}}  # fmt: skip
    body.update({"prompt": "Hi"} if path == "/api/generate" else {"messages": [{"role": "user", "content": "Hi"}]})
    status, chunks = await _post(server, path, body)
    assert status == 200
    entries = [e for c in chunks for e in c.get("logprobs", ())]
    assert len(entries) == 6
    key = "response" if path == "/api/generate" else "content"
    assert "".join(e["token"] for e in entries) == _text(chunks, key)
    for e in entries:
        assert set(e) == {"token", "logprob", "top_logprobs"} and e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
        assert e["top_logprobs"][0]["logprob"] >= e["logprob"] - 1e-6  # greedy picks the best
    reply = await _one(server, path, {**body, "top_logprobs": 0})
    assert all("top_logprobs" not in e for e in reply["logprobs"]) and len(reply["logprobs"]) == 6


# -- truncation ------------------------------------------------------------------------------------


async def test_long_history_is_truncated(server: TestServer) -> None:
    """A history longer than num_ctx loses its oldest messages (system and last kept) instead of failing."""
    history: list[dict[str, str]] = [{"role": "system", "content": "Rules."}]
    for i in range(30):
        history += [{"role": "user", "content": f"Question {i}: " + "tell me more " * 10},
                    {"role": "assistant", "content": f"Answer {i}: " + "here is more " * 10}]  # fmt: skip
    history.append({"role": "user", "content": "Last question"})
    options = {"num_ctx": 512, "num_predict": 2}
    for model in ("go-bare", "tiny"):
        reply = await _one(server, "/api/chat", {"model": model, "messages": history, "options": options, "think": False})
        assert reply["done"] is True and reply["prompt_eval_count"] < 512
        shown = (await _one(server, "/api/chat", {"model": model, "messages": history, "options": options, "_debug_render_only": True}))
        rendered = shown["_debug_info"]["rendered_template"]
        assert "Rules." in rendered and "Last question" in rendered and "Question 0:" not in rendered and "Question 29:" in rendered
    status, (reply,) = await _post(server, "/api/chat", {"model": "go-bare", "messages": history, "options": options, "truncate": False, "stream": False})
    assert status == 400 and "context size" in reply["error"]
