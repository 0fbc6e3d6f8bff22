"""structlog configuration: human-readable on a terminal, JSON lines when asked or when not a TTY."""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(fmt: str = "auto", level: str = "info", debug: int = 0) -> None:
    """Configure structlog once; ``debug`` is OLLAMA_DEBUG (1 = debug, 2 = trace)."""
    name = "trace" if debug >= 2 else "debug" if debug == 1 else level
    threshold = _LEVELS.get(name, logging.INFO)
    json_out = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_out else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=False),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
