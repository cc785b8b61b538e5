-- The ledger's history (`P history`, a hash): how every client notices a ledger that went
-- back in time (a stale replica promoted, a primary booted from an AOF a power loss cut, a
-- restored backup). `epoch` names the history. Each client also counts its own durable
-- writes in the ledger (`P mark:{client}`, a counter it adds one to on the socket of each
-- such write, before that write's `WAIT`; ledger/history.rs) and remembers the count it
-- saw made durable. A client that finds another epoch, or its count below what it saw,
-- has lost history it saw acknowledged: it declares a rollback here, which starts a new
-- epoch and holds paid creates until every live worker has given the ledger back what it
-- knows first-hand (its paid creates) and acknowledged the new epoch. Only the client
-- itself writes its count, so nobody else's writes can hide the loss.
--
-- Fields: epoch, declared_ms, hold_min_ms and hold_max_ms (submits are held until the
-- first, and after it until every live worker acknowledged the epoch or the second
-- passed; both are removed when the hold is found over, so a client asks about a hold
-- only while they are there), rollbacks (how many were declared), last ("<ms> <by>: saw <n>, found <n>"),
-- held_ms (how long the last hold refused paid creates), ack:<worker> (the epoch that
-- worker repaired under).
--
-- Args (history.rs), by `op`:
--   open     epoch (a fresh epoch id, used if the ledger has none)   -> {epoch}
--   declare  found_epoch (the epoch the caller found, '' for none), epoch (a fresh epoch
--            id), by (who), saw (how many durable writes it had seen counted), found (how
--            many the ledger holds), hold_min_ms, hold_max_ms
--            -> {epoch, joined}: joined when another client declared this rollback first
--               (its hold is still on)
--   ack      worker (its name), epoch (the epoch it repaired under)  -> {epoch}
--   holding  live (the live workers' names) -> {holding = true while paid creates are held}
-- Reply: the table each op names after its arrow (one Reply type in history.rs).
local key = prefix .. 'history'
local op = A.op
local now = now_ms()

if op == 'open' then
  redis.call('HSETNX', key, 'epoch', A.epoch)
  return cjson.encode({ epoch = redis.call('HGET', key, 'epoch') })
end

if op == 'declare' then
  local h = redis.call('HMGET', key, 'epoch', 'hold_max_ms')
  local holding = tonumber(h[2] or '0') > now
  if (h[1] or '') ~= A.found_epoch or holding then
    -- Someone declared it first (the epoch moved on, or its hold is still on): join it.
    return cjson.encode({ epoch = h[1] or '', joined = true })
  end
  -- The acknowledgements of the old epoch are void.
  local stale = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 4) == 'ack:' then stale[#stale + 1] = field end
  end
  stale[#stale + 1] = 'held_ms'
  redis.call('HDEL', key, unpack(stale))
  redis.call('HSET', key, 'epoch', A.epoch, 'declared_ms', now,
    'hold_min_ms', now + A.hold_min_ms, 'hold_max_ms', now + A.hold_max_ms,
    'last', short_line(now .. ' ' .. A.by .. ': saw ' .. A.saw .. ', found ' .. A.found))
  redis.call('HINCRBY', key, 'rollbacks', 1)
  return cjson.encode({ epoch = A.epoch, joined = false })
end

if op == 'ack' then
  if redis.call('HGET', key, 'epoch') == A.epoch then
    redis.call('HSET', key, 'ack:' .. A.worker, A.epoch)
  end
  return cjson.encode({ epoch = redis.call('HGET', key, 'epoch') })
end

if op == 'holding' then
  local h = redis.call('HMGET', key, 'epoch', 'hold_min_ms', 'hold_max_ms', 'declared_ms')
  if not h[3] then return cjson.encode({ holding = false }) end
  local max_until = tonumber(h[3])
  local ends_at = max_until
  if now < max_until then
    if now < tonumber(h[2] or '0') then return cjson.encode({ holding = true }) end
    -- Every live worker (its heartbeat alive, as the caller read it at the home) must have
    -- repaired first.
    for _, name in ipairs(A.live) do
      if redis.call('HGET', key, 'ack:' .. name) ~= h[1] then
        return cjson.encode({ holding = true })
      end
    end
    ends_at = now
  end
  -- Over: end it for everyone (clients look for a hold only while its fields are there),
  -- and keep how long it lasted.
  redis.call('HDEL', key, 'hold_min_ms', 'hold_max_ms')
  redis.call('HSET', key, 'held_ms', ends_at - tonumber(h[4] or ends_at))
  return cjson.encode({ holding = false })
end

return redis.error_reply('history.lua: unknown op ' .. tostring(op))
