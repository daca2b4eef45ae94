"""The store's Lua scripts. The status transition script is generated from
``contracts.status.ADVANCE_FROM``, so Redis enforces exactly the table that ``can_advance``
reads: there is one transition table, and this is a rendering of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set

from contracts.status import ADVANCE_FROM, MachineStatus
from services.common.store_keys import F_STATUS, F_STATUS_REASON, F_UPDATED_AT

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

# KEYS[1] lock key, ARGV[1] our token: delete the lock only if we still hold it.
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
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
