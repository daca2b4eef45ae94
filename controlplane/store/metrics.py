"""Machines' samples in Redis (``store.metrics``; contracts/gateway/metrics.py): two bounded
series a machine, each a Redis stream whose entry ids are the samples' times (ms), so that a
second provisioner replica of the same host sampling the same instant adds nothing; trimmed to
its keep at each add, and gone a keep after a machine's last sample (its key's expiry). A
sorted set names the machines sampled lately (the gateway's per-machine gauges)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

import msgspec

from contracts.gateway.metrics import COARSE_KEEP_S, FINE_KEEP_S
from contracts.models import MachineSample
from controlplane.store import scripts as store_scripts

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

Tier = Literal["fine", "coarse"]
KEEP_S: dict[Tier, int] = {"fine": FINE_KEEP_S, "coarse": COARSE_KEEP_S}
#: The field of a stream entry that holds the sample (JSON).
_FIELD = "s"
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(MachineSample)
#: KEYS: the series; ARGV: the sample's time (ms), the oldest time kept (ms), the key's life
#: (s), the sample. 1 if added; 0 if the series has one as late already.
ADD = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local ms = tonumber(string.match(last[1][1], '^(%d+)'))
  if ms >= tonumber(ARGV[1]) then return 0 end
end
redis.call('XADD', KEYS[1], 'MINID', ARGV[2], ARGV[1] .. '-0', 's', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class MetricsRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys
        self._add = store_scripts.BoundScript(ADD)

    async def add(self, tier: Tier, samples: dict[str, MachineSample]) -> None:
        """One sample each of these machines, in one round trip."""
        if not samples:
            return
        r = self._redis
        keep = KEEP_S[tier]
        script = self._add.on(r)
        async with r.pipeline(transaction=False) as pipe:
            for mid, s in samples.items():
                at_ms = int(s.at * 1000)
                args = [at_ms, at_ms - keep * 1000, keep, _ENCODER.encode(s).decode()]
                await script(keys=[self._k.k_machine_metrics(mid, tier)], args=args, client=pipe)
            if tier == "fine":
                pipe.zadd(self._k.K_METRICS_MACHINES, {m: s.at for m, s in samples.items()})
            await pipe.execute()

    async def series(self, machine_id: str, tier: Tier, since_s: float) -> list[MachineSample]:
        """The machine's samples of ``tier`` taken after ``since_s`` (epoch s), oldest first."""
        rows = cast(
            list[tuple[str, dict[str, str]]],
            await self._redis.xrange(
                self._k.k_machine_metrics(machine_id, tier), f"({int(since_s * 1000)}", "+"
            ),
        )
        return [_DECODER.decode(fields[_FIELD]) for _, fields in rows]

    async def latest(self, machine_ids: list[str], after_s: float) -> dict[str, MachineSample]:
        """Each machine's last sample, if it was taken after ``after_s``. One round trip."""
        if not machine_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for mid in machine_ids:
                pipe.xrevrange(self._k.k_machine_metrics(mid, "fine"), "+", "-", count=1)
            rows = cast(list[list[tuple[str, dict[str, str]]]], await pipe.execute())
        found: dict[str, MachineSample] = {}
        for mid, last in zip(machine_ids, rows, strict=True):
            if last:
                sample = _DECODER.decode(last[0][1][_FIELD])
                if sample.at > after_s:
                    found[mid] = sample
        return found

    async def sampled_since(self, after_s: float) -> list[str]:
        """The machines with a sample after ``after_s``; the others are forgotten here."""
        r = self._redis
        await r.zremrangebyscore(self._k.K_METRICS_MACHINES, "-inf", after_s)
        return cast(list[str], await r.zrangebyscore(self._k.K_METRICS_MACHINES, after_s, "+inf"))
