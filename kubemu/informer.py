"""Informers: list, then watch, into a local cache that handlers and workers read.

An informer keeps `cache` equal to the server's objects of one kind (optionally filtered),
calls handlers for every change, and survives the server going away: it retries with
backoff, re-lists on TooOld, and when a re-list replaces the cache it emits the differences,
so handlers never miss a change. `synced` is set once the first list landed. The cache keeps
serving its last state while the server is unreachable, which is what lets the data plane stay
up (DESIGN.md section 5, static stability).
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Iterable, Protocol

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.client import Client

log = logging.getLogger("kubemu.informer")


class Handler(Protocol):
    def __call__(self, event: str, obj: Message, old: Message | None) -> None: ...


class Informer:
    def __init__(self, client: Client, kind: str, *, namespace: str = "", label_selector: str = "",
                 field_selector: str = "", max_backoff: float = 2.0):
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.max_backoff = max_backoff
        self.cache: dict[str, Message] = {}
        self.synced = asyncio.Event()
        self.resource_version = 0
        # True while the last contact with the server succeeded (a list, or a watch batch
        # or bookmark); False from the first failure until the next success.
        self.connected = False
        self._handlers: list[Handler] = []
        self._indexes: dict[str, tuple[Callable[[Message], Iterable[str]], dict[str, set[str]]]] = {}

    # ------------------------------------------------------------ reading the cache

    def get(self, key: str) -> Message | None:
        return self.cache.get(key)

    def list(self) -> list[Message]:
        return list(self.cache.values())

    def add_handler(self, handler: Handler) -> None:
        """`handler(event, obj, old)` with event ADDED/MODIFIED/DELETED; called in the loop."""
        self._handlers.append(handler)

    def add_index(self, name: str, fn: Callable[[Message], Iterable[str]]) -> None:
        """Maintain `by_index(name, value)`: the keys of objects for which fn yields value."""
        idx: dict[str, set[str]] = {}
        self._indexes[name] = (fn, idx)
        for key, obj in self.cache.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)

    def by_index(self, name: str, value: str) -> list[Message]:
        keys = self._indexes[name][1].get(value, ())
        return [self.cache[k] for k in keys if k in self.cache]

    # ------------------------------------------------------------ keeping it current

    def _set(self, key: str, obj: Message | None) -> None:
        old = self.cache.get(key)
        for fn, idx in self._indexes.values():
            if old is not None:
                for v in fn(old):
                    s = idx.get(v)
                    if s:
                        s.discard(key)
                        if not s:
                            del idx[v]
            if obj is not None:
                for v in fn(obj):
                    idx.setdefault(v, set()).add(key)
        if obj is None:
            self.cache.pop(key, None)
        else:
            self.cache[key] = obj

    def _emit(self, event: str, obj: Message, old: Message | None) -> None:
        for h in self._handlers:
            try:
                h(event, obj, old)
            except Exception:
                log.exception("%s informer handler failed on %s %s", self.kind, event, objects.key(obj))

    def replace(self, items: list[Message], rev: int = 0) -> None:
        """Make the cache equal to `items`, emitting the differences (a re-list; tests use it
        to pre-fill a cache without a server)."""
        self._replace(items, rev)

    def _replace(self, items: list[Message], rev: int) -> None:
        fresh = {objects.key(o): o for o in items}
        for key, old in list(self.cache.items()):
            if key not in fresh:
                self._set(key, None)
                self._emit("DELETED", old, old)
        for key, obj in fresh.items():
            old = self.cache.get(key)
            if old is None:
                self._set(key, obj)
                self._emit("ADDED", obj, None)
            elif old.metadata.resourceVersion != obj.metadata.resourceVersion:
                self._set(key, obj)
                self._emit("MODIFIED", obj, old)
        self.resource_version = rev

    def _apply(self, ev) -> None:
        if ev.type == "BOOKMARK":
            self.resource_version = ev.resource_version
            return
        obj = ev.object
        key = objects.key(obj)
        old = self.cache.get(key)
        if ev.type == "DELETED":
            if old is not None:
                self._set(key, None)
                self._emit("DELETED", obj, old)
        else:
            self._set(key, obj)
            self._emit("ADDED" if old is None else "MODIFIED", obj, old)
        self.resource_version = ev.resource_version

    async def run(self) -> None:
        """Run forever (until cancelled)."""
        backoff = 0.05
        need_list = True
        while True:
            try:
                if need_list:
                    items, rev = await self.client.list(
                        self.kind, self.namespace, label_selector=self.label_selector,
                        field_selector=self.field_selector)
                    self._replace(items, rev)
                    self.synced.set()
                    self.connected = True
                    need_list = False
                async for batch in self.client.watch(
                        self.kind, self.namespace, resource_version=self.resource_version,
                        label_selector=self.label_selector, field_selector=self.field_selector):
                    backoff = 0.05
                    self.connected = True
                    for ev in batch:
                        self._apply(ev)
                # The server ended the watch cleanly: resume from where we are.
            except errors.TooOld:
                need_list = True
            except errors.Unavailable as e:
                self.connected = False
                log.debug("%s informer: %s; retrying in %.2fs", self.kind, e, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)
            except errors.ApiError as e:
                self.connected = False
                log.warning("%s informer: %s; re-listing in %.2fs", self.kind, e, backoff)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)


async def wait_synced(*informers: Informer, timeout: float | None = None) -> None:
    await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), timeout)
