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
#: hash, queue, queues, bodies, done, tries, sizes. ARGV: now (ms), lease (ms; 0: claim
#: nothing, the queue is due at once), token, seq, event id, body, queue, the version the
#: endpoints were looked up at ('': not checked), the most events and bytes an endpoint holds,
#: then per endpoint its id and whether the caller may claim its queue ('1' or '0'). At another
#: version nothing is done and ``stale`` returned: the endpoints changed since (look them up
#: again). An event already queued (or delivered within the hour) is not queued again; an
#: endpoint deleted meanwhile gets nothing. Returns {claimed, over}: for each member
#: (``<webhookId>|<queue>``) claimed for the caller (an idle queue this event made due),
#: {member, 1, tries, the endpoint's hash as flat pairs} when this event is its head (as
#: ``HEAD`` would answer, but the body the caller has), else {member, 0} (an older event waits
#: before it); and the ids of the endpoints now past their bound (``TRIM`` them).
ENQUEUE = """
local now, lease, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local seq, id, body, q = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local most_events, most_bytes = tonumber(ARGV[9]), tonumber(ARGV[10])
if ARGV[8] ~= '' and (redis.call('GET', KEYS[3]) or '0') ~= ARGV[8] then return 'stale' end
local claimed, over = {}, {}
local n = (#KEYS - 3) / 7
for i = 0, n - 1 do
  local hook, queue, queues, bodies, done, tries, sizes = KEYS[4+7*i], KEYS[5+7*i],
    KEYS[6+7*i], KEYS[7+7*i], KEYS[8+7*i], KEYS[9+7*i], KEYS[10+7*i]
  local w = ARGV[11 + 2*i]
  local member = w .. '|' .. q
  if redis.call('EXISTS', hook) == 1 then
    local last = redis.call('GET', done)
    if (not last or tonumber(last) < tonumber(seq))
        and redis.call('HSETNX', bodies, id, body) == 1 then
      redis.call('ZADD', queue, seq, id)
      redis.call('SADD', queues, q)
      redis.call('ZINCRBY', sizes, #body, q)
      local held = redis.call('HINCRBY', hook, 'queuedBytes', #body)
      if held > most_bytes or redis.call('HLEN', bodies) > most_events then
        over[#over + 1] = w
      end
    end
    if redis.call('ZCARD', queue) > 0 and not redis.call('ZSCORE', KEYS[1], member) then
      if lease > 0 and ARGV[12 + 2*i] == '1' then
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
return {claimed, over}
"""

#: An endpoint past its bound brought back under it: the oldest events of one queue (the
#: largest by bytes, as the caller read it) dropped and counted, until the endpoint is under
#: its bound or that queue is empty. KEYS: hook, sizes, bodies, tries, the queue. ARGV: the
#: queue, the most events, the most bytes. Returns 0: under its bound; 1: that queue is
#: empty and the endpoint still over (trim the next largest); -1: that queue is no longer
#: the largest (read again). An event dropped while it is being sent is settled as any other.
TRIM = """
local q, most_events, most_bytes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function over()
  return tonumber(redis.call('HGET', KEYS[1], 'queuedBytes') or '0') > most_bytes
    or redis.call('HLEN', KEYS[3]) > most_events
end
if not over() then return 0 end
if redis.call('ZREVRANGE', KEYS[2], 0, 0)[1] ~= q then return -1 end
while over() do
  local head = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
  if not head then
    redis.call('ZREM', KEYS[2], q)
    return 1
  end
  local size = redis.call('HSTRLEN', KEYS[3], head)
  redis.call('ZREM', KEYS[5], head)
  redis.call('HDEL', KEYS[3], head)
  redis.call('HDEL', KEYS[4], head)
  redis.call('ZINCRBY', KEYS[2], -size, q)
  redis.call('HINCRBY', KEYS[1], 'queuedBytes', -size)
  redis.call('HINCRBY', KEYS[1], 'dropped', 1)
end
if redis.call('ZCARD', KEYS[5]) == 0 then redis.call('ZREM', KEYS[2], q) end
return 0
"""

#: Claim the queues that are due, the earliest first, at most ``most`` of one scope held by
#: the caller (a queue of an endpoint with no scope recorded: of scope ''). KEYS: due, leases,
#: scopes. ARGV: now, lease, limit, token, most per scope, how many due queues are looked at,
#: then flat pairs: a scope and how many of its queues the caller holds. Returns flat pairs:
#: each member claimed and its scope.
CLAIM = """
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local most = tonumber(ARGV[5])
local held = {}
for i = 7, #ARGV, 2 do held[ARGV[i]] = tonumber(ARGV[i + 1]) end
local got = {}
if limit <= 0 then return got end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0,
                              tonumber(ARGV[6]))) do
  local scope = redis.call('HGET', KEYS[3], string.match(m, '^[^|]*')) or ''
  local n = held[scope] or 0
  if n < most then
    held[scope] = n + 1
    redis.call('ZADD', KEYS[1], now + lease, m)
    redis.call('HSET', KEYS[2], m, ARGV[4])
    got[#got + 1] = m
    got[#got + 1] = scope
    if #got >= 2 * limit then break end
  end
end
return got
"""

#: The head of a claimed queue, the lease renewed. KEYS: due, leases, queue, bodies, tries,
#: hook, queues, sizes. ARGV: member, token, now, lease, queue. Returns {-1}: the lease is
#: another's; {-2}: the endpoint is gone; {0}: the queue is empty (and released); else {1,
#: event id, seq, body, tries, the endpoint's hash as flat pairs}.
HEAD = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return {-1} end
if redis.call('EXISTS', KEYS[6]) == 0 then return {-2} end
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if #head == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[7], ARGV[5])
  redis.call('ZREM', KEYS[8], ARGV[5])
  return {0}
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
local id = head[1]
local body = redis.call('HGET', KEYS[4], id) or ''
return {1, id, head[2], body, redis.call('HGET', KEYS[5], id) or '', redis.call('HGETALL', KEYS[6])}
"""

#: An attempt's end. KEYS: due, leases, queue, bodies, tries, queues, attempts, hook, done,
#: version, sizes.
#: ARGV: member, token, now, lease, queue, event id, seq, the attempt (JSON), attempts kept,
#: mode (``done``: delivered or given up, the event leaves the queue; ``retry``: it stays),
#: next due (ms, retry), tries (retry), a reason to disable the endpoint ('' none), ``clear``
#: (a success: the endpoint fails no more) or ``mark`` (a failure: failing since now, unless
#: it already was). An event dropped (``TRIM``) while it was sent is recorded, nothing more.
#: Returns 1 if the queue holds more and stays the caller's, else 0.
SETTLE = """
local owned = redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2]
local hooked = redis.call('EXISTS', KEYS[8]) == 1
if hooked then
  redis.call('LPUSH', KEYS[7], ARGV[8])
  redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[9]) - 1)
  if ARGV[14] == 'clear' then redis.call('HDEL', KEYS[8], 'failingSince')
  else redis.call('HSETNX', KEYS[8], 'failingSince', ARGV[3]) end
  if ARGV[13] ~= '' then
    redis.call('HSET', KEYS[8], 'disabled', '1', 'disabledReason', ARGV[13])
    redis.call('INCR', KEYS[10])
  end
end
local queued = redis.call('ZSCORE', KEYS[3], ARGV[6])
if ARGV[10] == 'done' then
  if queued then
    local size = redis.call('HSTRLEN', KEYS[4], ARGV[6])
    redis.call('ZREM', KEYS[3], ARGV[6])
    redis.call('ZINCRBY', KEYS[11], -size, ARGV[5])
    if hooked then redis.call('HINCRBY', KEYS[8], 'queuedBytes', -size) end
  end
  redis.call('HDEL', KEYS[4], ARGV[6])
  redis.call('HDEL', KEYS[5], ARGV[6])
  redis.call('SET', KEYS[9], ARGV[7], 'EX', 3600)
elseif queued then
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[12])
end
if not owned then return 0 end
if ARGV[10] == 'retry' and queued then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[11]), ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
if redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[6], ARGV[5])
  redis.call('ZREM', KEYS[11], ARGV[5])
  return 0
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
return 1
"""

#: A queue dropped whole (its endpoint deleted or disabled). KEYS: due, leases, queue, bodies,
#: tries, queues, sizes, hook. ARGV: member, queue. Returns how many events it held.
DROP = """
local ids = redis.call('ZRANGE', KEYS[3], 0, -1)
local bytes = 0
for _, id in ipairs(ids) do
  bytes = bytes + redis.call('HSTRLEN', KEYS[4], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[7], ARGV[2])
if redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('HINCRBY', KEYS[8], 'queuedBytes', -bytes)
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return #ids
"""

#: A new endpoint, unless its scope holds the most it may. KEYS: scope set, hook, version,
#: scopes. ARGV: the most, id, its scope, then field/value pairs. Returns 1, or 0 (refused).
CREATE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('INCR', KEYS[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""

#: The endpoints an event of a scope may go to. KEYS: version, the scope sets (the platform's,
#: an instance's). ARGV: the endpoint hash keys' prefix. Returns the version, then flat
#: quadruples: id, events (JSON), disabled ('1' or ''), the scope set's place in KEYS (2: the
#: platform's).
TARGETS = """
local out = {redis.call('GET', KEYS[1]) or '0'}
for k = 2, #KEYS do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[k])) do
    local f = redis.call('HMGET', ARGV[1] .. id, 'events', 'disabled')
    if f[1] then
      out[#out + 1] = id
      out[#out + 1] = f[1]
      out[#out + 1] = f[2] or ''
      out[#out + 1] = k
    end
  end
end
return out
"""

#: An endpoint disabled, if it exists. KEYS: hook, version. ARGV: the reason. Returns 1, or 0
#: (gone).
DISABLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disabled', '1', 'disabledReason', ARGV[1])
redis.call('INCR', KEYS[2])
return 1
"""
