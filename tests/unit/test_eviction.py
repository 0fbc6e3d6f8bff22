"""Which runner makes room for a new one, and how many may be loaded (pure decisions)."""

from __future__ import annotations

import pytest

from supervisor.pool.placement import Resident, eviction_order, max_loaded_models


def r(key: str, refs: int = 0, ready: bool = True, keep_alive: float | None = 300.0, idle_since: float = 0.0) -> Resident:
    return Resident(key, refs, ready, keep_alive, idle_since)


@pytest.mark.parametrize(
    ("residents", "victim"),
    [
        ([r("a"), r("b", keep_alive=60.0)], "b"),  # shortest keep-alive first
        ([r("a", idle_since=5.0), r("b", idle_since=1.0)], "b"),  # then idle longest
        ([r("a", keep_alive=None), r("b", keep_alive=3600.0)], "b"),  # forever goes last
        ([r("a", refs=1), r("b", keep_alive=None)], "b"),  # a leased runner is never chosen
        ([r("a", ready=False), r("b", refs=2)], None),  # loading or busy: wait
        ([], None),
    ],
)
def test_eviction_order(residents: list[Resident], victim: str | None) -> None:
    """Idle, ready runners only; shortest keep-alive, then longest idle; None when all are busy."""
    assert (eviction_order(residents) or [None])[0] == victim


def test_max_loaded_default() -> None:
    """OLLAMA_MAX_LOADED_MODELS=0 means 3 per GPU, 3 on CPU; a set value wins."""
    assert max_loaded_models(0) == 3
    assert max_loaded_models(0, gpus=2) == 6
    assert max_loaded_models(1, gpus=4) == 1
