"""The store's Lua scripts. The status transition script is generated from
``contracts.status.ADVANCE_FROM``, so Redis enforces exactly the table that ``can_advance``
reads: there is one transition table, and this is a rendering of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Any

from contracts.status import ADVANCE_FROM, MachineStatus
from controlplane.store.keys import (
    F_CURRENT_MACHINE,
    F_ONCE_FINGERPRINT,
    F_ONCE_MACHINE,
    F_ONCE_REPLACES,
    F_STATUS,
    F_STATUS_REASON,
    F_UPDATED_AT,
)

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")


def _lua_str(text: str) -> str:
    # Only plain names are embedded (status values, field names): nothing to escape.
    if not _PLAIN.fullmatch(text):
        raise ValueError(f"not a plain name for a Lua literal: {text!r}")
    return f"'{text}'"


def lua_transition_table(table: Mapping[MachineStatus, Set[MachineStatus]]) -> str:
    """``{[target] = {[from] = true, ...}, ...}``: the statuses each target may be entered from."""
    rows = []
    for target in sorted(table):
        froms = ", ".join(f"[{_lua_str(s.value)}] = true" for s in sorted(table[target]))
        rows.append(f"  [{_lua_str(target.value)}] = {{{froms}}},")
    return "{\n" + "\n".join(rows) + "\n}"


# KEYS[1] machine hash. ARGV: target status, reason, updatedAt, then field/value pairs to set in
# the same step. Returns {accepted (0/1), previous status ('' if there is no such machine)}.
# Accepted: the table admits previous -> target; a repeat (previous == target) is accepted only
# when the table admits the target from itself, and then rewrites nothing.
TRANSITION = f"""
local advance_from = {lua_transition_table(ADVANCE_FROM)}
local cur = redis.call('HGET', KEYS[1], {_lua_str(F_STATUS)})
if not cur then return {{0, ''}} end
local from = advance_from[ARGV[1]]
if not from or not from[cur] then return {{0, cur}} end
if cur == ARGV[1] then return {{1, cur}} end  -- a repeat: keep the first reason and fields
redis.call('HSET', KEYS[1], {_lua_str(F_STATUS)}, ARGV[1], {_lua_str(F_STATUS_REASON)}, ARGV[2],
           {_lua_str(F_UPDATED_AT)}, ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {{1, cur}}
"""

# The stages' step: the same compare-and-set as TRANSITION, with what a stage needs around it
# folded into the one round trip (a stage's Redis round trips per event would otherwise be most
# of its cost beyond the daemons' own work). KEYS[1] machine hash, KEYS[2] (optional) a lock key to
# release. ARGV: target, reason, updatedAt, a field that must be set for the move ('' none), the
# lock's token ('' none), then three counted groups of field/value pairs:
#   always: set whatever the status (the daemon's reported build);
#   claim:  set if absent, when the transition is accepted (the machine's sealed token: racing
#           replicas agree on the first);
#   move:   set only when the status moves (the external id).
# Returns {accepted (0/1), previous status ('' if no such machine), the hash as flat pairs}.
ADVANCE = f"""
local key = KEYS[1]
local function release()
  if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
end
local cur = redis.call('HGET', key, {_lua_str(F_STATUS)})
if not cur then release(); return {{0, '', {{}}}} end
local i = 6
local function pairs_at()
  local n = tonumber(ARGV[i])
  local first = i + 1
  i = first + 2 * n
  return first, i - 1
end
local a0, a1 = pairs_at()
local c0, c1 = pairs_at()
local m0, m1 = pairs_at()
for j = a0, a1, 2 do redis.call('HSET', key, ARGV[j], ARGV[j + 1]) end
local advance_from = {lua_transition_table(ADVANCE_FROM)}
local from = advance_from[ARGV[1]]
local accepted = from and from[cur]
if accepted and ARGV[4] ~= '' then
  local need = redis.call('HGET', key, ARGV[4])
  if not need or need == '' then accepted = false end
end
if accepted then
  for j = c0, c1, 2 do redis.call('HSETNX', key, ARGV[j], ARGV[j + 1]) end
  if cur ~= ARGV[1] then
    redis.call('HSET', key, {_lua_str(F_STATUS)}, ARGV[1], {_lua_str(F_STATUS_REASON)}, ARGV[2],
               {_lua_str(F_UPDATED_AT)}, ARGV[3])
    for j = m0, m1, 2 do redis.call('HSET', key, ARGV[j], ARGV[j + 1]) end
  end
end
release()
return {{accepted and 1 or 0, cur, redis.call('HGETALL', key)}}
"""

# KEYS[1] lock key, ARGV[1] our token: delete the lock only if we still hold it.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: A lock whose holder is gone taken over: KEYS[1] the lock, ARGV the dead holder's token, ours,
#: and the TTL (ms). 1 if it still held the dead token and is ours now.
TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# A lock kept: KEYS[1] the lock, ARGV[1] the holder's token, ARGV[2] its new TTL (ms). Returns 1
# if the token still held it (its TTL now ARGV[2]), else 0.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

# One round trip, however many machines: the ids are read and counted inside Redis. KEYS[1] is
# the sorted set of every machine id, ARGV[1] the machine hash key prefix. Returns a flat list
# of status, count pairs.
COUNT_BY_STATUS = f"""
local counts = {{}}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local s = redis.call('HGET', ARGV[1] .. id, {_lua_str(F_STATUS)})
  if s then counts[s] = (counts[s] or 0) + 1 end
end
local out = {{}}
for s, n in pairs(counts) do out[#out + 1] = s; out[#out + 1] = n end
return out
"""

# machines.create or machines.rebuild with an idempotency key: the key and the machine record
# in one step, so two calls with one key (a retry racing the first, or 20 at once) make one
# machine. KEYS[1] the key's hash, KEYS[2] the machine hash, KEYS[3] all machines, KEYS[4] the
# instance's machines, KEYS[5] the instance. ARGV: fingerprint, machine id, score, the key's
# TTL in ms, then the machine hash's field/value pairs. Returns {created (0/1), machine id,
# fingerprint, replaces}: what the key names, this call's machine if it created one, and the
# instance's current machine it took the place of ('' if none), read in the same step (a
# rebuild archives that one, never one a racing call made since).
CREATE_ONCE = f"""
local prev = redis.call('HMGET', KEYS[1], {_lua_str(F_ONCE_MACHINE)},
                        {_lua_str(F_ONCE_FINGERPRINT)}, {_lua_str(F_ONCE_REPLACES)})
if prev[1] then return {{0, prev[1], prev[2] or '', prev[3] or ''}} end
local replaced = redis.call('HGET', KEYS[5], {_lua_str(F_CURRENT_MACHINE)}) or ''
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[5], {_lua_str(F_CURRENT_MACHINE)}, ARGV[2])
redis.call('HSET', KEYS[1], {_lua_str(F_ONCE_MACHINE)}, ARGV[2],
           {_lua_str(F_ONCE_FINGERPRINT)}, ARGV[1], {_lua_str(F_ONCE_REPLACES)}, replaced)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {{1, ARGV[2], ARGV[1], replaced}}
"""


class BoundScript:
    """A script registered once per Redis client (the registration holds its sha); the store's
    client can be another one later (``Store.on_client``, a new one after a reconnect)."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._script: Any = None
        self._client: object = None

    def on(self, client: Any) -> Any:
        if self._client is not client:
            self._script, self._client = client.register_script(self._source), client
        return self._script


# The boot watchdog's look at a booting machine (controlplane/store/boot_watch.py). KEYS[1] the
# machine's boot-watch hash. ARGV: now, the window's first start (its provisioned event's time), its
# daemon (external id), the gap (s) past which the watchdog was away, the hash's TTL (ms), and
# '1' when the machine is setting up (its window holds: the time since the last look is moved
# past, not counted). A new window starts (``since`` = now) when its daemon changed (started
# anew), or when the last look (or, at the first, the start) is older than the gap: the
# platform was not watching, so the time since is not the machine's. Returns {since, why,
# alive} as strings (Lua numbers would reach Python as integers); since '' when a machine
# setting up has no window yet.
BOOT_LOOK = """
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'since', 'seen', 'why', 'daemon', 'alive')
if ARGV[6] == '1' and not h[1] then return {'', 'provisioned', ''} end
local since, why, alive = tonumber(h[1] or ARGV[2]), h[3] or 'provisioned', h[5] or ''
local seen = tonumber(h[2] or ARGV[2])
if ARGV[6] == '1' then since = since + (now - seen)
elseif h[4] and h[4] ~= ARGV[3] then since, why, alive = now, 'daemon', ''
elseif now - seen > tonumber(ARGV[4]) then since, why, alive = now, 'platform', '' end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'since', tostring(since), 'seen', tostring(now), 'why', why,
           'daemon', ARGV[3])
if alive ~= '' then redis.call('HSET', KEYS[1], 'alive', alive) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {tostring(since), why, alive}
"""

# A booting machine past its window whose host says its daemon runs: a new window from now.
# KEYS[1] the boot-watch hash; ARGV: now. ``alive`` keeps when the first such window began
# (the watch's time since then is bounded by FLEET_BOOT_ALIVE_MAX_S). Returns ``alive``.
BOOT_ALIVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
redis.call('HSETNX', KEYS[1], 'alive', ARGV[1])
redis.call('HSET', KEYS[1], 'since', ARGV[1], 'why', 'alive')
return redis.call('HGET', KEYS[1], 'alive')
"""
