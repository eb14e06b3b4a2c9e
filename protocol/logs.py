"""structlog set-up shared by every Farmhand process: key-value, UTC, JSON in production."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(level: str = "info", json: bool | None = None) -> None:
    """Console output on a terminal, JSON lines otherwise (or when FARMHAND_LOG_JSON=1)."""
    if json is None:
        env = os.environ.get("FARMHAND_LOG_JSON")
        json = env == "1" if env is not None else not sys.stderr.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    # gmqtt and amqtt log every packet at INFO; keep their warnings only.
    for noisy in ("gmqtt", "amqtt", "transitions", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    # Plain tracebacks: rich's would print every frame's locals, tokens and passwords included.
    renderer = (structlog.processors.JSONRenderer() if json else
                structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
