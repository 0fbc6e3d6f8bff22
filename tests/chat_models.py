"""Chat models with deterministic output, shared by the end-to-end tests of the chat translations.

Scripted models (tests/scripted_models.py) answer every ChatML assistant prompt with a fixed token
sequence, with tags split across tokens. Installed under these names (``install_chat_models``):

- ``answer-go``: Go ChatML template that replays thinking (so the model thinks); answers
  ``<think>Let me see.</think>The answer is 4.``
- ``plain-go``: Go ChatML template without thinking (a model that cannot think); answers
  ``Hello from llamasup.``
- ``tools-go``: Go ChatML template with tools; thinks, then calls ``get_weather`` (``WEATHER_TOOL``)
  with ``{"city": "Paris", "days": 2}`` (llamasup parses the call).
- ``tools-native``: the same output, no Go template: llama-server renders the GGUF's Jinja template
  (``JINJA_CHATML_TOOLS``) and parses the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from tests.scripted_models import ASSISTANT_TRIGGER, write_scripted_model
from tests.store_helpers import install_gguf

# An Ollama-style ChatML template with tools and thinking replay.
GO_CHATML = """{{- if or .System .Tools }}<|im_start|>system
{{ if .System }}{{ .System }}{{ end }}
{{- if .Tools }}

# Tools
<tools>
{{- range .Tools }}
{{ . }}
{{- end }}
</tools>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}
{{- if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""

# The same without thinking replay: a model with this template has no "thinking" capability.
GO_CHATML_NO_THINKING = GO_CHATML.replace("{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}", "")

# The same conversation format as a GGUF Jinja template (Hermes-style tool calls, reasoning replay),
# for the path where llama-server renders and parses.
JINJA_CHATML_TOOLS = """{%- if tools %}<|im_start|>system
# Tools
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{%- for tc in message.tool_calls %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.reasoning_content %}<think>
{{ message.reasoning_content }}
</think>
{% endif %}{{ message.content }}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"""

ANSWER_SCRIPT = ["<th", "ink>", "Let me", " see.", "</thi", "nk>", "The answer", " is 4."]
PLAIN_SCRIPT = ["Hello", " from", " llamasup."]
TOOL_SCRIPT = ["<th", "ink>", "I need", " the weather.", "</thi", "nk>", "<tool_call>",
               '\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}', "\n", "</tool_call>"]  # fmt: skip
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "City name"}, "days": {"type": "integer"}},
        },
    },
}


def write_chat_ggufs(directory: Path) -> dict[str, Path]:
    """The scripted GGUFs (write once per session; installing them is cheap)."""
    return {
        "answer": write_scripted_model(directory / "answer.gguf", {ASSISTANT_TRIGGER: ANSWER_SCRIPT}),
        "plain": write_scripted_model(directory / "plain.gguf", {ASSISTANT_TRIGGER: PLAIN_SCRIPT}),
        "tools": write_scripted_model(directory / "tools.gguf", {ASSISTANT_TRIGGER: TOOL_SCRIPT}, chat_template=JINJA_CHATML_TOOLS),
    }


def install_chat_models(models_dir: Path, ggufs: dict[str, Path]) -> Path:
    """Install the models named in the module docstring into ``models_dir`` (returned)."""
    install_gguf(models_dir, "answer-go", ggufs["answer"], template=GO_CHATML)
    install_gguf(models_dir, "plain-go", ggufs["plain"], template=GO_CHATML_NO_THINKING)
    install_gguf(models_dir, "tools-go", ggufs["tools"], template=GO_CHATML)
    install_gguf(models_dir, "tools-native", ggufs["tools"])
    return models_dir


async def ollama_prompt_tokens(server: TestServer, body: dict[str, Any]) -> int:
    """prompt_eval_count of an Ollama /api/chat with the same conversation (one token generated): what
    the translations' token counts are compared with."""
    async with aiohttp.ClientSession() as session:
        url = str(server.make_url("/api/chat"))
        async with session.post(url, json={**body, "stream": False, "options": {"num_predict": 1}}) as r:
            reply = await r.json()
            assert r.status == 200, reply
            return int(reply["prompt_eval_count"])
