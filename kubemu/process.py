"""What every kubemu process shares at its entry point: logging and the event loop.

Components import this (not kubemu.cli, which sits above them and imports every component).
"""
from __future__ import annotations

import asyncio
import logging
import os


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_async(coro):
    """Run a component's main coroutine on uvloop when available (KUBEMU_LOOP=asyncio to opt out)."""
    if os.environ.get("KUBEMU_LOOP") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)
