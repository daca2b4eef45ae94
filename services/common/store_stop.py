"""What stopping and starting machines need in Redis: whether a stop was carried out, each
instance's auto-stop setting, and each machine's last gateway activity (docs/stop-start.md)."""

from __future__ import annotations

import time
from typing import NamedTuple, cast

from contracts.gateway_stop import AutoStopAction
from services.common.store import Store
from services.common.store_keys import F_STOP_DONE_AT


async def stop_pending(store: Store, machine_id: str) -> None:
    """A new stop: its processes are not ended yet (the provisioner says when they are)."""
    await store.redis.hdel(store.keys.k_machine(machine_id), F_STOP_DONE_AT)


async def mark_stop_done(store: Store, machine_id: str) -> None:
    await store.redis.hset(store.keys.k_machine(machine_id), F_STOP_DONE_AT, str(time.time()))


async def stop_done(store: Store, machine_id: str) -> bool:
    return bool(await store.redis.hexists(store.keys.k_machine(machine_id), F_STOP_DONE_AT))


class AutoStopRule(NamedTuple):
    idle_after_s: int
    #: None: pause a gvisor machine, stop a namespaces one.
    action: AutoStopAction | None = None


def _rule(raw: str) -> AutoStopRule:
    idle, _, action = raw.partition(":")
    return AutoStopRule(int(idle), "pause" if action == "pause" else
                        "stop" if action == "stop" else None)  # fmt: skip


async def set_autostop(store: Store, instance_id: str, rule: AutoStopRule) -> None:
    if rule.idle_after_s <= 0:
        await store.redis.hdel(store.keys.K_AUTOSTOP, instance_id)
    else:
        raw = f"{rule.idle_after_s}:{rule.action}" if rule.action else str(rule.idle_after_s)
        await store.redis.hset(store.keys.K_AUTOSTOP, instance_id, raw)


async def autostop_of(store: Store, instance_id: str) -> AutoStopRule:
    raw = cast(str | None, await store.redis.hget(store.keys.K_AUTOSTOP, instance_id))
    return _rule(raw) if raw else AutoStopRule(0)


async def autostops(store: Store) -> dict[str, AutoStopRule]:
    """Every instance with auto-stop on, and its rule."""
    raw = cast(dict[str, str], await store.redis.hgetall(store.keys.K_AUTOSTOP))
    rules = {iid: _rule(v) for iid, v in raw.items()}
    return {iid: r for iid, r in rules.items() if r.idle_after_s > 0}


async def paused_since(store: Store, machine_ids: list[str], now: float) -> dict[str, float]:
    """When each of these paused machines was first seen paused (``now`` for one not seen
    before). Every other machine is forgotten: a resumed one counts again from its next pause."""
    key = store.keys.K_PAUSED_SINCE
    known = cast(list[tuple[str, float]], await store.redis.zrange(key, 0, -1, withscores=True))
    paused = set(machine_ids)
    if gone := [m for m, _ in known if m not in paused]:
        await store.redis.zrem(key, *gone)
    if not machine_ids:
        return {}
    await store.redis.zadd(key, dict.fromkeys(machine_ids, now), nx=True)
    scores = await store.redis.zmscore(key, machine_ids)
    return {m: now if s is None else s for m, s in zip(machine_ids, scores, strict=True)}


async def record_activity(store: Store, machine_ids: dict[str, float]) -> None:
    """The last gateway activity of each machine (epoch seconds); only ever moves forward."""
    if machine_ids:
        await store.redis.zadd(store.keys.K_ACTIVITY, dict(machine_ids), gt=True)


async def last_activity(store: Store, machine_ids: list[str]) -> dict[str, float | None]:
    if not machine_ids:
        return {}
    scores = await store.redis.zmscore(store.keys.K_ACTIVITY, machine_ids)
    return dict(zip(machine_ids, scores, strict=True))


async def reset_activity(store: Store, machine_id: str) -> None:
    """A (re)started machine's idle time counts from now."""
    await store.redis.zadd(store.keys.K_ACTIVITY, {machine_id: time.time()})


async def forget_activity(store: Store, machine_id: str) -> None:
    await store.redis.zrem(store.keys.K_ACTIVITY, machine_id)
