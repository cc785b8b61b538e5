-- Records a completion webhook's delivery attempt.
-- Args (notified.rs): member (a job id, or `batch:<id>`); event_id (the event that was sent:
-- a newer ending of the job leaves its own event alone); outcome ("sent", "retry",
-- "gave_up" or "skipped": an ending the job did not ask to hear of); delay_ms (retry: until
-- the next attempt); detail (for the event log).
-- Reply: {recorded = true}, or false when the job has a newer event.
local due = prefix .. 'notify_due'
local id = A.member
local is_batch = string.sub(id, 1, 6) == 'batch:'
local job = prefix .. 'job:' .. id
if is_batch then job = prefix .. 'batchinfo:' .. string.sub(id, 7) end
if redis.call('HGET', job, 'notify_event') ~= A.event_id then
  return cjson.encode({ recorded = false })
end
local now = now_ms()
if A.outcome == 'retry' then
  redis.call('HINCRBY', job, 'notify_attempt', 1)
  redis.call('ZADD', due, now + A.delay_ms, id)
else
  redis.call('HSET', job, 'notify_state', A.outcome)
  redis.call('ZREM', due, id)
  if not is_batch then log_event(job, now, 'notify ' .. A.outcome .. ' ' .. A.detail) end
end
return cjson.encode({ recorded = true })
