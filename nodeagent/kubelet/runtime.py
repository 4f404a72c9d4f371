"""What a running container is to the pod worker, whether emulated in-process or a child process.

An `Instance` is one run of a container: `start()` (raises StartError when it cannot run),
`terminate()` (SIGTERM: stop gracefully), `kill()` (SIGKILL: stop now), and `exited`, a future
that resolves to an ExitInfo once it stopped, whatever the cause.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    reason: str  # Completed, Error, StartError, ...
    message: str = ""
    signal: int = 0


class StartError(Exception):
    """The container could not start (bind failed, program not found): reported like a runtime's
    StartError (exit code 128), then restarted with back-off."""


class Instance(Protocol):
    exited: asyncio.Future

    async def start(self) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...
