"""A machine's repos that did not reach it (``store.repo_warnings``): one hash of checkout path
to reason per machine, and their summary in the machine's own record (``setupWarning``), which
``machines.get``, ``fleet machines get`` and the console show. The machine stays usable: a repo
that could not be cloned or switched is a warning on it, not its failure, once it is known.

Both are written in one step (a Lua script) and only while the machine's record exists: a
warning never makes a record of a machine that is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

#: KEYS: the machine's hash, its warnings' hash; ARGV: its summary field, then pairs of path
#: and reason ('' clears the path's). 1 if written, 0 if the machine has no record.
NOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[i])
  else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
local all = redis.call('HGETALL', KEYS[2])
local lines = {}
for i = 1, #all, 2 do table.insert(lines, 'repo ' .. all[i] .. ': ' .. all[i + 1]) end
table.sort(lines)
if #lines == 0 then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], table.concat(lines, '; ')) end
return 1
"""
#: The machine record's field that holds the summary (``Machine.setup_warning``).
FIELD = "setupWarning"
#: The longest reason kept for one repo: git's stderr can be long, and a machine's is untrusted.
MAX_REASON = 500


class RepoWarnings:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys

    def _keys(self, machine_id: str) -> list[str]:
        k = self._k
        return [k.k_machine(machine_id), k.k_repo_warnings(machine_id)]

    async def note(self, machine_id: str, reasons: Mapping[str, str | None]) -> bool:
        """Each path's warning set to its reason, or cleared (None); False if the machine has
        no record."""
        if not reasons:
            return True
        pairs = [x for path, why in reasons.items()
                 for x in (path, " ".join((why or "").split())[:MAX_REASON])]  # fmt: skip
        done = await self._redis.eval(NOTE, 2, *self._keys(machine_id), FIELD, *pairs)
        return bool(int(done))

    async def of(self, machine_id: str) -> dict[str, str]:
        """The machine's repos that did not reach it, and why."""
        got = await self._redis.hgetall(self._k.k_repo_warnings(machine_id))
        return cast(dict[str, str], got)
