"""The Lua scripts of the webhooks' records (``controlplane/store/webhooks.py``): each step of a
delivery is one of these, so that replicas of the webhooks service and the gateway never see a queue
half-changed.

A queue is one endpoint's events from one machine (``k_webhook_queue``), by stream sequence;
``K_WEBHOOKS_DUE`` says when each queue's head is next attempted, and while a delivery process
works on a queue its lease (``K_WEBHOOKS_LEASES``: its token) and the lease's end stand there
instead: a process that dies loses its lease when that time passes, and another takes the
queue (at least once: the attempt it died in is made again).
"""

from __future__ import annotations

#: Queue one event for several endpoints. KEYS: due, leases, version, then per endpoint its
#: hash, queue, queues, bodies, done, tries. ARGV: now (ms), lease (ms; 0: claim nothing, the
#: queue is due at once), token, seq, event id, body, queue, the version the endpoints were
#: looked up at ('': not checked), then the endpoints' ids. At another version nothing is
#: done and ``stale`` returned: the endpoints changed since (look them up again). An event
#: already queued (or delivered within the hour) is not queued again; an endpoint deleted
#: meanwhile gets nothing. Returns, for each member (``<webhookId>|<queue>``) claimed for the
#: caller (an idle queue this event made due): {member, 1, tries, the endpoint's hash as flat
#: pairs} when this event is its head (as ``HEAD`` would answer, but the body the caller has),
#: else {member, 0} (an older event waits before it).
ENQUEUE = """
local now, lease, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local seq, id, body, q = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if ARGV[8] ~= '' and (redis.call('GET', KEYS[3]) or '0') ~= ARGV[8] then return 'stale' end
local claimed = {}
local n = (#KEYS - 3) / 6
for i = 0, n - 1 do
  local hook, queue, queues, bodies, done, tries = KEYS[4+6*i], KEYS[5+6*i], KEYS[6+6*i],
    KEYS[7+6*i], KEYS[8+6*i], KEYS[9+6*i]
  local member = ARGV[9 + i] .. '|' .. q
  if redis.call('EXISTS', hook) == 1 then
    local last = redis.call('GET', done)
    if (not last or tonumber(last) < tonumber(seq))
        and redis.call('HSETNX', bodies, id, body) == 1 then
      redis.call('ZADD', queue, seq, id)
      redis.call('SADD', queues, q)
    end
    if redis.call('ZCARD', queue) > 0 and not redis.call('ZSCORE', KEYS[1], member) then
      if lease > 0 then
        redis.call('ZADD', KEYS[1], now + lease, member)
        redis.call('HSET', KEYS[2], member, token)
        if redis.call('ZRANGE', queue, 0, 0)[1] == id then
          claimed[#claimed + 1] = {member, 1, redis.call('HGET', tries, id) or '',
                                   redis.call('HGETALL', hook)}
        else
          claimed[#claimed + 1] = {member, 0}
        end
      else
        redis.call('ZADD', KEYS[1], now, member)
      end
    end
  end
end
return claimed
"""

#: Claim the queues that are due. KEYS: due, leases. ARGV: now, lease, limit, token.
CLAIM = """
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local got = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(got) do
  redis.call('ZADD', KEYS[1], now + lease, m)
  redis.call('HSET', KEYS[2], m, ARGV[4])
end
return got
"""

#: The head of a claimed queue, the lease renewed. KEYS: due, leases, queue, bodies, tries,
#: hook, queues. ARGV: member, token, now, lease, queue. Returns {-1}: the lease is another's;
#: {-2}: the endpoint is gone; {0}: the queue is empty (and released); else {1, event id, seq,
#: body, tries, the endpoint's hash as flat pairs}.
HEAD = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return {-1} end
if redis.call('EXISTS', KEYS[6]) == 0 then return {-2} end
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #head == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[7], ARGV[5])
  return {0}
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
local id = head[1]
local body = redis.call('HGET', KEYS[4], id) or ''
return {1, id, head[2], body, redis.call('HGET', KEYS[5], id) or '', redis.call('HGETALL', KEYS[6])}
"""

#: An attempt's end. KEYS: due, leases, queue, bodies, tries, queues, attempts, hook, done,
#: version.
#: ARGV: member, token, now, lease, queue, event id, seq, the attempt (JSON), attempts kept,
#: mode (``done``: delivered or given up, the event leaves the queue; ``retry``: it stays),
#: next due (ms, retry), tries (retry), a reason to disable the endpoint ('' none), ``clear``
#: (a success: the endpoint fails no more) or ``mark`` (a failure: failing since now, unless
#: it already was). Returns 1 if the queue holds more and stays the caller's, else 0.
SETTLE = """
local owned = redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2]
if redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('LPUSH', KEYS[7], ARGV[8])
  redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[9]) - 1)
  if ARGV[14] == 'clear' then redis.call('HDEL', KEYS[8], 'failingSince')
  else redis.call('HSETNX', KEYS[8], 'failingSince', ARGV[3]) end
  if ARGV[13] ~= '' then
    redis.call('HSET', KEYS[8], 'disabled', '1', 'disabledReason', ARGV[13])
    redis.call('INCR', KEYS[10])
  end
end
if ARGV[10] == 'done' then
  redis.call('ZREM', KEYS[3], ARGV[6])
  redis.call('HDEL', KEYS[4], ARGV[6])
  redis.call('HDEL', KEYS[5], ARGV[6])
  redis.call('SET', KEYS[9], ARGV[7], 'EX', 3600)
else
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[12])
end
if not owned then return 0 end
if ARGV[10] == 'retry' then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[11]), ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
if redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[6], ARGV[5])
  return 0
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
return 1
"""

#: A queue dropped whole (its endpoint deleted or disabled). KEYS: due, leases, queue, bodies,
#: tries, queues. ARGV: member, queue. Returns how many events it held.
DROP = """
local ids = redis.call('ZRANGE', KEYS[3], 0, -1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return #ids
"""

#: A new endpoint, unless its scope holds the most it may. KEYS: scope set, hook, version.
#: ARGV: the most, id, then field/value pairs. Returns 1, or 0 (refused).
CREATE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('INCR', KEYS[3])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

#: The endpoints an event of a scope may go to. KEYS: version, the scope sets (an instance's,
#: the platform's). ARGV: the endpoint hash keys' prefix. Returns the version, then flat
#: triples: id, events (JSON), disabled ('1' or '').
TARGETS = """
local out = {redis.call('GET', KEYS[1]) or '0'}
for k = 2, #KEYS do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[k])) do
    local f = redis.call('HMGET', ARGV[1] .. id, 'events', 'disabled')
    if f[1] then
      out[#out + 1] = id
      out[#out + 1] = f[1]
      out[#out + 1] = f[2] or ''
    end
  end
end
return out
"""
