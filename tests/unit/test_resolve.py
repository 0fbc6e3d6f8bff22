"""Resolving a model per request: GGUF headers are parsed off the event loop, once per file version."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from supervisor.service import resolve
from supervisor.store import ModelStore, StoreLayout
from supervisor.store.gguf_info import GGUFInfo, read_gguf_info
from supervisor.store.index import ModelIndex
from tests.models import write_embedding_model
from tests.store_helpers import install_gguf


async def test_a_header_not_seen_before_is_parsed_in_a_thread_then_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large vocabulary takes seconds to parse: never on the event loop's thread."""
    models = tmp_path / "models"
    install_gguf(models, "emb", write_embedding_model(tmp_path / "e.gguf", seed=7))  # a file no other test read
    parsed_on: list[str] = []

    def spy(path: Path) -> GGUFInfo:
        parsed_on.append(threading.current_thread().name)
        return read_gguf_info(path)

    monkeypatch.setattr(resolve, "read_gguf_info", spy)
    index = ModelIndex(ModelStore(StoreLayout(models)))
    first = await resolve.resolve_model(index, "emb")
    again = await resolve.resolve_model(index, "emb")
    assert parsed_on and threading.main_thread().name not in parsed_on
    assert len(parsed_on) == 1 and again.info is first.info  # kept: no second parse
    assert first.capabilities == ("embedding",)
