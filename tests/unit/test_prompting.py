"""Prompt assembly around the renderers: which messages, image markers, fitting the context."""

from __future__ import annotations

import random
from pathlib import Path

from supervisor.protocol.ollama_requests import GenerateRequest, Message
from supervisor.service.prompting import chat_messages, fit_messages, generate_messages, keep_from, mark_images
from supervisor.service.resolve import ResolvedModel
from supervisor.store import ModelName
from supervisor.store.gguf_info import GGUFInfo


def _model(system: str | None = None, messages: list[dict[str, str]] | None = None, arch: str = "llama", name: str = "m") -> ResolvedModel:
    info = GGUFInfo(
        architecture=arch, name=name, context_length=2048, embedding_length=64, block_count=1, head_count=1,
        head_count_kv=1, has_pooling_type=False, chat_template=None, bos_token_id=1, eos_token_id=2,
        file_type="F16", parameter_count=1, metadata={}, tensors=(),
    )  # fmt: skip
    return ResolvedModel(
        name=ModelName.parse(name), path=Path("/m.gguf"), info=info, params={}, system=system, template=None,
        messages=messages or [],
    )  # fmt: skip


def test_chat_gets_model_system_and_messages() -> None:
    """The model's SYSTEM goes first unless the chat brings one; Modelfile MESSAGEs precede the chat."""
    model = _model(system="Be brief.", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    out = chat_messages(model, [Message(role="user", content="c")])
    assert [(m.role, m.content) for m in out] == [("system", "Be brief."), ("user", "a"), ("assistant", "b"), ("user", "c")]
    own = chat_messages(model, [Message(role="system", content="Mine."), Message(role="user", content="c")])
    assert [m.content for m in own] == ["a", "b", "Mine.", "c"]


def test_old_thinking_stripped_for_qwen3() -> None:
    """qwen3 models lose <think> blocks of answers before the last user turn; the last answer keeps them."""
    history = [
        Message(role="user", content="q1"),
        Message(role="assistant", content="<think>x</think>a1"),
        Message(role="user", content="q2"),
        Message(role="assistant", content="<think>y</think>a2"),
    ]
    out = chat_messages(_model(arch="qwen3"), history)
    assert [m.content for m in out] == ["q1", "a1", "q2", "<think>y</think>a2"]
    assert chat_messages(_model(), history)[1].content == "<think>x</think>a1"  # other families untouched


def test_generate_messages() -> None:
    """A generate is system (request's, else model's), MESSAGEs, then the prompt with its images; context drops MESSAGEs."""
    model = _model(system="sys", messages=[{"role": "user", "content": "m"}])
    req = GenerateRequest(model="m", prompt="p", images=[b"i"])
    out = generate_messages(model, req)
    assert [(m.role, m.content) for m in out] == [("system", "sys"), ("user", "m"), ("user", "p")] and out[-1].images == [b"i"]
    req = GenerateRequest(model="m", prompt="p", system="own", context=[1, 2])
    assert [(m.role, m.content) for m in generate_messages(model, req)] == [("system", "own"), ("user", "p")]


def test_keep_from_keeps_dropped_system_messages() -> None:
    """Dropping old messages keeps every system message among them."""
    ms = [Message(role="system", content="s"), Message(role="user", content="1"), Message(role="system", content="t"), Message(role="user", content="2")]
    assert [m.content for m in keep_from(ms, 3)] == ["s", "t", "2"]


async def test_fit_matches_linear_search() -> None:
    """The binary search picks the same start as trying every start in order, and always keeps the last message."""
    rng = random.Random(3)
    for _ in range(200):
        ms = [Message(role=rng.choice(["user", "assistant", "system"]), content="x" * rng.randint(1, 30)) for _ in range(rng.randint(1, 12))]
        limit = rng.randint(1, 200)
        calls = []

        async def count(kept: list[Message]) -> int:
            calls.append(len(kept))
            return sum(len(m.content) for m in kept) + 3 * len(kept)

        got = await fit_messages(ms, count, limit)
        expected = next((keep_from(ms, i) for i in range(len(ms)) if sum(len(m.content) + 3 for m in keep_from(ms, i)) < limit), keep_from(ms, len(ms) - 1))
        assert got == expected
        assert len(calls) <= max(1, len(ms)).bit_length() + 1  # logarithmic, not one render per message


def test_mark_images_in_order_of_appearance() -> None:
    """[img-N] tags become the marker, images listed in the order the prompt shows them; unknown tags stay."""
    text, used = mark_images("a[img-1]b[img-0]c[img-9]", [b"zero", b"one"], "<M>")
    assert text == "a<M>b<M>c[img-9]" and used == [b"one", b"zero"]


def test_prompt_never_ends_with_an_image() -> None:
    """A prompt ending in an image gets a newline after it (this llama-server aborts on such prompts)."""
    text, used = mark_images("look [img-0]", [b"i"], "<M>")
    assert text == "look <M>\n" and used == [b"i"]
