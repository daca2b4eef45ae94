"""One msgspec Struct per Redis key, absent when it equals its default (an instance's limits,
its egress policy)."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from services.common.store import Store

S = TypeVar("S", bound=msgspec.Struct)


async def load_struct(store: Store, key: str, kind: type[S]) -> S:
    """The value at ``key``, or ``kind()`` (its default) if none is stored."""
    raw = await store.redis.get(key)
    return kind() if raw is None else msgspec.json.decode(raw, type=kind)


async def save_struct(store: Store, key: str, value: msgspec.Struct) -> None:
    """Store ``value`` at ``key``; its type's default is stored as no key at all."""
    if value == type(value)():
        await store.redis.delete(key)
    else:
        await store.redis.set(key, msgspec.json.encode(value))
