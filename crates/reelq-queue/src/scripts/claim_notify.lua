-- Takes up to N due completion webhooks, each leased for a while (if the sender dies, the
-- webhook falls due again: delivery is at least once, under a stable event id).
-- Args (claim_notify.rs): max (N), lease_ms.
-- Members of `P notify_due` are job ids, or `batch:<id>` for a batch's completion webhook.
-- Reply: {claimed = {{member, url, event_id, attempt}, ...}}.
local due = prefix .. 'notify_due'
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, A.max)
local claimed = {}
for _, id in ipairs(ids) do
  local hash = prefix .. 'job:' .. id
  if string.sub(id, 1, 6) == 'batch:' then hash = prefix .. 'batchinfo:' .. string.sub(id, 7) end
  local f = redis.call('HMGET', hash, 'notify_url', 'notify_event', 'notify_attempt', 'notify_state')
  if f[1] and f[4] == 'pending' then
    redis.call('ZADD', due, now + A.lease_ms, id)
    claimed[#claimed + 1] = { member = id, url = f[1], event_id = f[2] or '',
      attempt = tonumber(f[3] or '0') }
  else
    redis.call('ZREM', due, id)
  end
end
return cjson.encode({ claimed = claimed })
