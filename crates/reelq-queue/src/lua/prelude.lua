-- Shared by every ledger script (prepended by ledger.rs). ARGV[1] is always the key prefix,
-- e.g. "{reelq}:", so every key of one deployment hashes to one slot.
local prefix = ARGV[1]

-- Redis's clock, not the caller's: replicas with skewed clocks still agree on what is due.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Moves a job between states: state field, per-state index, capped event log, change feed.
local function move(job, id, from, to, now, detail)
  redis.call('HSET', job, 'state', to, 'updated_ms', now)
  redis.call('ZREM', prefix .. 'state:' .. from, id)
  redis.call('ZADD', prefix .. 'state:' .. to, now, id)
  local log = prefix .. 'log:' .. id
  redis.call('RPUSH', log, now .. ' ' .. to .. ' ' .. detail)
  redis.call('LTRIM', log, -32, -1)
  redis.call('PUBLISH', prefix .. 'changes', id .. ' ' .. to)
end

-- Sets when a worker should next act on a job: in delay_ms, or never (a negative delay).
local function schedule(due, id, now, delay_ms)
  if delay_ms >= 0 then
    redis.call('ZADD', due, now + delay_ms, id)
  else
    redis.call('ZREM', due, id)
  end
end
