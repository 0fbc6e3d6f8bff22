"""The scripted-model generator: validation, vocabulary layout, and the bigram guarantee.

The file is read back with ``gguf.GGUFReader`` and the next-token function is
re-derived from the stored tensors and token texts, independently of the
generator's own bookkeeping (`ScriptPlan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt
import pytest

# The byte table of tests.models, which tests/unit/test_models.py checks independently.
from tests.models import DEFAULT_CHAT_TEMPLATE, IM_END, IM_START, LOGIT_MARGIN, gpt2_byte_table
from tests.scripted_models import ASSISTANT_TRIGGER, plan_scripts, write_scripted_model

F64 = npt.NDArray[np.float64]

EXTRA = ("<think>", "</think>")
SCRIPTS: dict[str, list[str]] = {
    "<|think|>": ["<think>", "I should check.", "</think>", "The answer."],
    "<|split|>": ["<th", "ink>", " Done", "\n", "é ✓"],
    ASSISTANT_TRIGGER: ["Hello", " from", " the", " script", "!\n", "Bye."],
    "<|empty|>": [],
}


def _spell(text: str) -> str:
    alphabet = gpt2_byte_table()
    return "".join(alphabet[b] for b in text.encode("utf-8"))


def _read(path: Path) -> tuple[dict[str, Any], dict[str, F64]]:
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in reader.tensors}
    return fields, tensors


def _logits(fields: dict[str, Any], tensors: dict[str, F64]) -> F64:
    """Logits after every vocabulary token, assuming the blocks add nothing (checked separately)."""
    eps = float(fields["llama.attention.layer_norm_rms_epsilon"])
    x = tensors["token_embd.weight"]
    xn = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * tensors["output_norm.weight"]
    out: F64 = xn @ tensors["output.weight"].T
    return out


def _expected_successors(tokens: list[str], scripts: Mapping[str, Sequence[str]], extra: Sequence[str]) -> dict[int, int]:
    eos = tokens.index(IM_END)
    succ: dict[int, int] = {}
    for trigger, pieces in scripts.items():
        chain = [tokens.index(trigger)] + [tokens.index(p if p in extra else _spell(p)) for p in pieces] + [eos]
        succ.update(zip(chain, chain[1:]))
    return succ


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted_model(tmp_path_factory.mktemp("scripted") / "m.gguf", SCRIPTS, extra_special=EXTRA, seed=3)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def test_duplicate_piece_across_scripts_is_rejected(tmp_path: Path) -> None:
    """A bigram model gives each token one successor, so a piece cannot appear in two scripts."""
    with pytest.raises(ValueError, match="distinct token"):
        write_scripted_model(tmp_path / "m.gguf", {"<|a|>": ["Yes", "."], "<|b|>": ["No", "."]})
    assert not (tmp_path / "m.gguf").exists()


def test_duplicate_piece_within_a_script_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice in that script"):
        write_scripted_model(tmp_path / "m.gguf", {"<|a|>": ["ab", "cd", "ab"]})
    assert not (tmp_path / "m.gguf").exists()


@pytest.mark.parametrize(
    ("scripts", "extra", "match"),
    [
        ({"<|a|>": ["x", ""]}, (), "must not be empty"),
        ({"": ["x"]}, (), "must not be empty"),
        ({"<|a|>": ["x", "<|a|>"]}, (), "control token"),
        ({"<|a|>": ["x", IM_START]}, (), "control token"),
        ({"<|a|>": ["x", IM_END]}, (), "end of generation"),
        ({"<|a|>": ["</s>"]}, (), "end of generation"),
        ({IM_START: ["x"]}, (), "already a control token"),
        ({"<|a|>": ["x"]}, ("<|a|>",), "clashes"),
        ({"x": ["y"]}, (), "clashes"),  # a one-character trigger would shadow the byte token "x"
        ({"<|a|>": ["x"]}, ("<t>", "<t>"), "listed twice"),
        ({"<|a|>": [" x"]}, ("Ġx",), "text of special token"),
        ({"<|a|>": "abc"}, (), "not a string"),
    ],
)
def test_invalid_scripts_are_rejected(scripts: Mapping[str, Sequence[str]], extra: Sequence[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_scripts(scripts, extra)


def test_a_piece_may_reuse_an_extra_special_or_a_byte_token() -> None:
    plan = plan_scripts({"<|a|>": ["<think>", "\n", "ok"]}, ("<think>",))
    tokens = list(plan.vocab.tokens)
    assert plan.piece_ids["<think>"] == tokens.index("<think>")
    assert plan.piece_ids["\n"] == tokens.index("Ċ") < 256  # the byte token itself
    assert plan.successor(plan.trigger_ids["<|a|>"]) == plan.piece_ids["<think>"]
    assert plan.successor(plan.piece_ids["ok"]) == plan.vocab.eos_id


# --------------------------------------------------------------------------
# the written file
# --------------------------------------------------------------------------


def test_vocabulary_layout(model: Path) -> None:
    """Triggers are raw CONTROL tokens, extra specials raw USER_DEFINED, other pieces GPT-2-spelled NORMAL."""
    fields, _ = _read(model)
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    types: list[int] = list(fields["tokenizer.ggml.token_type"])
    assert len(tokens) == len(set(tokens))  # llama.cpp aborts on duplicate token texts
    assert tokens[:256] == gpt2_byte_table() and set(types[:256]) == {int(gguf.TokenType.NORMAL)}
    for trigger in SCRIPTS:
        assert types[tokens.index(trigger)] == int(gguf.TokenType.CONTROL)
    for special in EXTRA:
        assert types[tokens.index(special)] == int(gguf.TokenType.USER_DEFINED)
    for spelled in ("Ġthe", "Ġscript", "!Ċ", "IĠshouldĠcheck.", "<th", "ink>", "ĠDone", _spell("é ✓")):
        assert types[tokens.index(spelled)] == int(gguf.TokenType.NORMAL)
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.merges"]  # llama.cpp requires the key
    assert tokens[fields["tokenizer.ggml.eos_token_id"]] == IM_END
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert fields["tokenizer.chat_template"] == DEFAULT_CHAT_TEMPLATE


def test_blocks_contribute_nothing(model: Path) -> None:
    """Every block matrix is zero, so the final hidden state is the token's embedding exactly."""
    _, tensors = _read(model)
    block = {n: t for n, t in tensors.items() if n.startswith("blk.") and t.ndim == 2}
    assert len(block) == 7 and all(not t.any() for t in block.values())


def test_next_token_is_the_script_with_margin(model: Path) -> None:
    """Re-derived from the file: after each trigger/piece comes the next piece, then EOS, by >= LOGIT_MARGIN."""
    fields, tensors = _read(model)
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    types: list[int] = list(fields["tokenizer.ggml.token_type"])
    eos = tokens.index(IM_END)
    expected = _expected_successors(tokens, SCRIPTS, EXTRA)
    logits = _logits(fields, tensors)
    control = {i for i, t in enumerate(types) if t == int(gguf.TokenType.CONTROL)}
    for t, row in enumerate(logits):
        succ = expected.get(t, eos)  # everything outside the scripts ends generation
        order = np.argsort(row)[::-1]
        assert order[0] == succ, (tokens[t], tokens[order[0]], tokens[succ])
        assert row[succ] - row[order[1]] >= LOGIT_MARGIN
        # Control tokens other than EOS sit far below everything, whatever the temperature.
        assert max(row[c] for c in control - {eos}) < row[[i for i in range(len(tokens)) if i not in control]].min()
    # The empty script: the trigger is followed by EOS at once.
    assert expected[tokens.index("<|empty|>")] == eos


def test_same_arguments_same_bytes_and_seed_only_moves_noise(tmp_path: Path) -> None:
    a = write_scripted_model(tmp_path / "a.gguf", SCRIPTS, extra_special=EXTRA, seed=1)
    b = write_scripted_model(tmp_path / "b.gguf", SCRIPTS, extra_special=EXTRA, seed=1)
    c = write_scripted_model(tmp_path / "c.gguf", SCRIPTS, extra_special=EXTRA, seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    argmax = [_logits(*_read(p)).argmax(axis=1) for p in (a, c)]
    assert (argmax[0] == argmax[1]).all()


def test_chat_template_can_be_overridden_or_omitted(tmp_path: Path) -> None:
    custom = write_scripted_model(tmp_path / "c.gguf", {"<|go|>": ["x"]}, chat_template="{{ 'custom' }}")
    none = write_scripted_model(tmp_path / "n.gguf", {"<|go|>": ["x"]}, chat_template=None)
    assert _read(custom)[0]["tokenizer.chat_template"] == "{{ 'custom' }}"
    assert "tokenizer.chat_template" not in _read(none)[0]


def test_many_pieces_widen_the_model(tmp_path: Path) -> None:
    """One embedding direction per trigger/piece token: 100 pieces need more than 64 dimensions."""
    pieces = [f"w{i}" for i in range(100)]
    path = write_scripted_model(tmp_path / "wide.gguf", {"<|go|>": pieces})
    fields, tensors = _read(path)
    assert fields["llama.embedding_length"] == 128 and fields["llama.attention.head_count"] == 2
    tokens: list[str] = list(fields["tokenizer.ggml.tokens"])
    expected = _expected_successors(tokens, {"<|go|>": pieces}, ())
    argmax = _logits(fields, tensors).argmax(axis=1)
    assert all(argmax[t] == s for t, s in expected.items())
