-- Takes up to N due completion webhooks, each leased for a while (if the sender dies, the
-- webhook falls due again: delivery is at least once, under a stable event id).
-- KEYS[1]  notify schedule (zset: job id -> unix ms when the webhook should be sent)
-- ARGV[1]  key prefix
-- ARGV[2]  N
-- ARGV[3]  lease in ms
-- Members are job ids, or `batch:<id>` for a batch's completion webhook.
-- Returns {{member, notify_url, event_id, attempt}, ...}.
local due = KEYS[1]
local max_n, lease_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, max_n)
local claimed = {}
for _, id in ipairs(ids) do
  local hash = prefix .. 'job:' .. id
  if string.sub(id, 1, 6) == 'batch:' then hash = prefix .. 'batchinfo:' .. string.sub(id, 7) end
  local f = redis.call('HMGET', hash, 'notify_url', 'notify_event', 'notify_attempt', 'notify_state')
  if f[1] and f[4] == 'pending' then
    redis.call('ZADD', due, now + lease_ms, id)
    claimed[#claimed + 1] = { id, f[1], f[2], tonumber(f[3] or '0') }
  else
    redis.call('ZREM', due, id)
  end
end
return claimed
