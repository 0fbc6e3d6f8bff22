"""The store behind previous_response_id (service/responses.py): bounded by count and by age (a fake
clock), copies in and out, OpenAI's 404 texts; and the two settings that size it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import ConfigError, NotFound
from supervisor.protocol.ollama_requests import Message
from supervisor.service.responses import ResponseStore
from supervisor.settings import load_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _response(ident: str) -> dict[str, Any]:
    return {"id": ident, "object": "response", "output": []}


def _conversation(text: str) -> list[Message]:
    return [Message(role="user", content=text), Message(role="assistant", content="ok")]


def test_put_then_read_back() -> None:
    """A stored response is retrieved whole, and its conversation is what a continuation starts from."""
    store = ResponseStore(10, 60.0, FakeClock())
    store.put(_response("resp_a"), _conversation("hi"))
    assert store.response("resp_a") == _response("resp_a")
    assert store.conversation("resp_a") == _conversation("hi")
    assert len(store) == 1


def test_unknown_ids_are_openai_404s() -> None:
    """An unknown id: 'Previous response … not found.' for a continuation, 'Response … not found.' otherwise."""
    store = ResponseStore(10, 60.0, FakeClock())
    with pytest.raises(NotFound) as e:
        store.conversation("resp_x")
    assert e.value.message == "Previous response with id 'resp_x' not found." and e.value.status == 404
    with pytest.raises(NotFound, match=r"^Response with id 'resp_x' not found\.$"):
        store.response("resp_x")
    with pytest.raises(NotFound, match=r"^Response with id 'resp_x' not found\.$"):
        store.delete("resp_x")


def test_count_bound_drops_the_oldest() -> None:
    """Past max_entries the oldest response goes first."""
    store = ResponseStore(2, 60.0, FakeClock())
    for name in ("a", "b", "c"):
        store.put(_response(f"resp_{name}"), _conversation(name))
    assert len(store) == 2
    with pytest.raises(NotFound):
        store.conversation("resp_a")
    assert store.conversation("resp_c")[0].content == "c"


def test_entries_expire_after_the_ttl() -> None:
    """A response is kept for ttl seconds after it was stored, then reads as unknown."""
    clock = FakeClock()
    store = ResponseStore(10, 60.0, clock)
    store.put(_response("resp_old"), _conversation("old"))
    clock.now += 30
    store.put(_response("resp_new"), _conversation("new"))
    clock.now += 29.9
    assert store.response("resp_old")["id"] == "resp_old"
    clock.now += 0.1
    with pytest.raises(NotFound):
        store.conversation("resp_old")
    assert store.conversation("resp_new")[0].content == "new" and len(store) == 1
    clock.now += 30
    assert len(store) == 0


def test_delete_removes() -> None:
    """A deleted response can be neither retrieved nor continued, nor deleted twice."""
    store = ResponseStore(10, 60.0, FakeClock())
    store.put(_response("resp_a"), _conversation("a"))
    store.delete("resp_a")
    with pytest.raises(NotFound):
        store.conversation("resp_a")
    with pytest.raises(NotFound):
        store.delete("resp_a")


def test_zero_max_keeps_nothing() -> None:
    """max_entries 0 turns the store off: nothing put can be read."""
    store = ResponseStore(0, 60.0, FakeClock())
    store.put(_response("resp_a"), _conversation("a"))
    assert len(store) == 0


def test_copies_in_and_out() -> None:
    """What the store hands out and what it was given can change without changing what it keeps."""
    store = ResponseStore(10, 60.0, FakeClock())
    response, conversation = _response("resp_a"), _conversation("a")
    store.put(response, conversation)
    response["output"].append("x")
    conversation[0].content = "changed"
    store.conversation("resp_a")[0].content = "changed too"
    store.response("resp_a")["output"].append("y")
    assert store.response("resp_a") == _response("resp_a")
    assert store.conversation("resp_a") == _conversation("a")


def test_put_again_refreshes() -> None:
    """Storing an id again replaces the entry and restarts its time."""
    clock = FakeClock()
    store = ResponseStore(10, 60.0, clock)
    store.put(_response("resp_a"), _conversation("1"))
    clock.now += 50
    store.put(_response("resp_a"), _conversation("2"))
    clock.now += 50
    assert store.conversation("resp_a")[0].content == "2" and len(store) == 1


def test_settings_from_env() -> None:
    """LLAMASUP_RESPONSES_MAX and LLAMASUP_RESPONSES_TTL (seconds or a Go duration) size the store."""
    defaults = load_settings({})
    assert (defaults.responses_max, defaults.responses_ttl) == (1000, 3600.0)
    settings = load_settings({"LLAMASUP_RESPONSES_MAX": "5", "LLAMASUP_RESPONSES_TTL": "1h30m"})
    assert (settings.responses_max, settings.responses_ttl) == (5, 5400.0)
    assert load_settings({"LLAMASUP_RESPONSES_TTL": "90"}).responses_ttl == 90.0
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ConfigError, match="LLAMASUP_RESPONSES_TTL"):
            load_settings({"LLAMASUP_RESPONSES_TTL": bad})


def test_store_false_is_not_kept() -> None:
    """A response that says store: false is not kept (and cannot be continued)."""
    store = ResponseStore(10, 60.0, FakeClock())
    store.put(_response("resp_a") | {"store": False}, _conversation("a"))
    with pytest.raises(NotFound):
        store.conversation("resp_a")
    assert len(store) == 0


def test_settings_from_config_file(tmp_path: Path) -> None:
    """The config file takes responses_max and responses_ttl (a number of seconds or a duration)."""
    config = tmp_path / "llamasup.yaml"
    config.write_text("responses_max: 3\nresponses_ttl: 2h\n")
    settings = load_settings({"LLAMASUP_CONFIG": str(config)})
    assert (settings.responses_max, settings.responses_ttl) == (3, 7200.0)
    config.write_text("responses_ttl: 45\n")
    assert load_settings({"LLAMASUP_CONFIG": str(config)}).responses_ttl == 45.0
