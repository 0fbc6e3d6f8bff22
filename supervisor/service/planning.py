"""The memory planner, explained: ``/api/plan`` and the memory fields of ``/api/ps``.

``PlanService.plan`` answers, without loading anything, what a request for a model would do now:
the launch parameters the pool would choose, the predicted bytes per device by kind, the runners it
would unload first, and, when it cannot fit, why and which changes would make it fit. It asks the
pool (``RunnerPool.plan``), which runs the same planner a real load runs, with the same inventory
and resident runners, so a load that follows does what the plan said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import BadRequest
from ..pool.hardware import Inventory
from ..pool.memory import Estimate, estimate_error
from ..pool.placement import Limits, suggest
from ..pool.pool import LoadedRunner, RunnerPool
from ..protocol import ollama as wire
from ..runner.memlog import KINDS, DeviceBytes, MeasuredMemory
from ..settings import Settings
from ..store.index import ModelIndex
from .resolve import resolve_model, runner_spec

_KIND_NAMES = {"model": "weights", "kv": "kv_cache", "compute": "compute", "output": "output", "projector": "projector"}


def _bytes(b: DeviceBytes | None) -> dict[str, int] | None:
    if b is None:
        return None
    return {_KIND_NAMES[k]: getattr(b, k) for k in KINDS} | {"total": b.total}


def device_rows(
    estimate: Estimate | None, measured: MeasuredMemory | None, available: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """One row per device: estimated and (once loaded) measured bytes by kind, and the room it had."""
    est = estimate.devices if estimate is not None else {}
    got = measured.devices if measured is not None and measured.measured else {}
    names = sorted({*est, *got, *(available or {})}, key=lambda d: (d != "CPU", d))
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name, "estimated": _bytes(est.get(name))}
        if measured is not None:
            row["measured"] = _bytes(got.get(name))
        if available is not None:
            row["available"] = available.get(name, 0)
        rows.append(row)
    return rows


def memory_report(loaded: LoadedRunner) -> dict[str, Any]:
    """The extra ``/api/ps`` fields of one runner: per-device bytes, layers, the estimate's error, why."""
    estimate, measured = loaded.estimate, loaded.measured
    layers = measured.offloaded if measured is not None and measured.offloaded else None
    return {
        "devices": device_rows(estimate, measured),
        "gpu_layers": layers[0] if layers else (estimate.gpu_layers if estimate else None),
        "total_layers": layers[1] if layers else (estimate.total_layers if estimate else None),
        "parallel": loaded.config.parallel,
        "estimate_error": estimate_error(estimate, measured),
        "load_reason": loaded.reason,
    }


@dataclass(frozen=True)
class PlanRequest:
    model: str
    options: dict[str, Any]
    parallel: int | None

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> PlanRequest:
        model = data.get("model") or data.get("name")
        if not isinstance(model, str) or not model:
            raise BadRequest("model is required")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequest("options must be an object")
        parallel = data.get("parallel")
        if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
            raise BadRequest("parallel must be a positive integer")
        return PlanRequest(model, options, parallel)


class PlanService:
    def __init__(
        self,
        settings: Settings,
        models: ModelIndex,
        pool: RunnerPool,
        inventory: Inventory,
        *,
        repack: bool,
        default_ctx: int | None,
        limits: Limits,
    ) -> None:
        self.settings = settings
        self.models = models
        self.pool = pool
        self.inventory = inventory
        self.repack = repack
        self.default_ctx = default_ctx
        self.limits = limits

    async def plan(self, req: PlanRequest) -> dict[str, Any]:
        model = await resolve_model(self.models, req.model)
        options = wire.resolve_options(model.params, req.options).runner
        if req.parallel is not None:
            options = replace(options, num_parallel=req.parallel)
        settings = self.settings if req.parallel is None else replace(self.settings, model_parallel=())
        spec = await asyncio.to_thread(
            runner_spec, model, options, settings, repack=self.repack, default_ctx=self.default_ctx
        )
        view = await self.pool.plan(spec)
        placement, inventory = view.placement, view.inventory or self.inventory
        config = placement.config
        est = placement.estimate
        return {
            "model": model.name.display,
            "loaded": view.loaded,
            "fits": placement.fits,
            "wait": placement.wait,
            "error": placement.error,
            "context_length": config.ctx_per_slot,
            "parallel": config.parallel,
            "gpu_layers": est.gpu_layers if est else None,
            "total_layers": est.total_layers if est else None,
            "kv_cache_type": config.kv_cache_type or "f16",
            "estimated_total": est.total if est else None,
            "devices": device_rows(est, None, placement.available),
            "evict": [view.names.get(key, key) for key in placement.evict],
            "notes": list(placement.notes),
            "suggestions": [] if placement.fits else suggest(spec.want(), inventory, self.limits),
            "inventory": _inventory(inventory),
        }


def _inventory(inv: Inventory) -> dict[str, Any]:
    return {
        "source": inv.source,
        "host": {"total": inv.host_total, "free": inv.host_free},
        "gpus": [{"id": g.id, "name": g.name, "total": g.total, "free": g.free, "library": g.library} for g in inv.gpus],
        "unified_memory": inv.unified_memory,
    }
