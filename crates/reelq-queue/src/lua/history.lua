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
-- ARGV[1]  key prefix
-- ARGV[2]  op:
--   open     ARGV[3] a fresh epoch id, used if the ledger has none   -> epoch
--   declare  ARGV[3] the epoch the caller found ('' for none), ARGV[4] a fresh epoch id,
--            ARGV[5] who, ARGV[6] how many durable writes it had seen counted, ARGV[7] how
--            many the ledger holds, ARGV[8] min hold ms, ARGV[9] max hold ms
--            -> {"declared" or "joined", epoch}: "joined" when another client declared
--               this rollback first (its hold is still on)
--   ack      ARGV[3] worker name, ARGV[4] the epoch it repaired under  -> epoch
--   holding  -> {1 while paid creates are held, else 0}
local key = prefix .. 'history'
local op = ARGV[2]
local now = now_ms()

if op == 'open' then
  redis.call('HSETNX', key, 'epoch', ARGV[3])
  return redis.call('HGET', key, 'epoch')
end

if op == 'declare' then
  local h = redis.call('HMGET', key, 'epoch', 'hold_max_ms')
  local holding = tonumber(h[2] or '0') > now
  if (h[1] or '') ~= ARGV[3] or holding then
    -- Someone declared it first (the epoch moved on, or its hold is still on): join it.
    return { 'joined', h[1] or '' }
  end
  -- The acknowledgements of the old epoch are void.
  local stale = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 4) == 'ack:' then stale[#stale + 1] = field end
  end
  stale[#stale + 1] = 'held_ms'
  redis.call('HDEL', key, unpack(stale))
  redis.call('HSET', key, 'epoch', ARGV[4], 'declared_ms', now,
    'hold_min_ms', now + tonumber(ARGV[8]), 'hold_max_ms', now + tonumber(ARGV[9]),
    'last', short_line(now .. ' ' .. ARGV[5] .. ': saw ' .. ARGV[6] .. ', found ' .. ARGV[7]))
  redis.call('HINCRBY', key, 'rollbacks', 1)
  return { 'declared', ARGV[4] }
end

if op == 'ack' then
  if redis.call('HGET', key, 'epoch') == ARGV[4] then
    redis.call('HSET', key, 'ack:' .. ARGV[3], ARGV[4])
  end
  return redis.call('HGET', key, 'epoch')
end

if op == 'holding' then
  local h = redis.call('HMGET', key, 'epoch', 'hold_min_ms', 'hold_max_ms', 'declared_ms')
  if not h[3] then return { 0 } end
  local max_until = tonumber(h[3])
  local ends_at = max_until
  if now < max_until then
    if now < tonumber(h[2] or '0') then return { 1 } end
    -- Every worker still listed (its heartbeat key alive) must have repaired first.
    for _, name in ipairs(redis.call('ZRANGE', prefix .. 'workers', 0, -1)) do
      if redis.call('EXISTS', prefix .. 'worker:' .. name) == 1
          and redis.call('HGET', key, 'ack:' .. name) ~= h[1] then
        return { 1 }
      end
    end
    ends_at = now
  end
  -- Over: end it for everyone (clients look for a hold only while its fields are there),
  -- and keep how long it lasted.
  redis.call('HDEL', key, 'hold_min_ms', 'hold_max_ms')
  redis.call('HSET', key, 'held_ms', ends_at - tonumber(h[4] or ends_at))
  return { 0 }
end

return redis.error_reply('history.lua: unknown op ' .. tostring(op))
