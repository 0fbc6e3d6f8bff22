"""Typed application keys: the services a handler may reach."""

from __future__ import annotations

from aiohttp import web

from ..modelfile.build import BuildContext
from ..pool.pool import RunnerPool
from ..service.catalog import CatalogService
from ..service.embedding import EmbedService
from ..service.fetch import ImageFetcher
from ..service.inference import InferenceService
from ..service.planning import PlanService
from ..service.responses import ResponseStore
from ..service.transfer import TransferService
from ..settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", RunnerPool)
INFERENCE = web.AppKey("inference", InferenceService)
EMBED = web.AppKey("embed", EmbedService)
CATALOG = web.AppKey("catalog", CatalogService)
BUILD = web.AppKey("build", BuildContext)
PLAN = web.AppKey("plan", PlanService)
RESPONSES = web.AppKey("responses", ResponseStore)
FETCH = web.AppKey("fetch", ImageFetcher)
TRANSFER = web.AppKey("transfer", TransferService)
