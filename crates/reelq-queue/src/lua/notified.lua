-- Records a completion webhook's delivery attempt.
-- KEYS[1]  notify schedule
-- ARGV[1]  key prefix
-- ARGV[2]  job id, or `batch:<id>`
-- ARGV[3]  event id that was sent (a newer ending of the job leaves its own event alone)
-- ARGV[4]  "sent", "retry", "gave_up" or "skipped" (an ending the job did not ask to hear of)
-- ARGV[5]  retry: ms until the next attempt
-- ARGV[6]  detail for the event log
local due = KEYS[1]
local id, event, outcome, delay_ms, detail = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local is_batch = string.sub(id, 1, 6) == 'batch:'
local job = prefix .. 'job:' .. id
if is_batch then job = prefix .. 'batchinfo:' .. string.sub(id, 7) end
if redis.call('HGET', job, 'notify_event') ~= event then return 0 end
local now = now_ms()
if outcome == 'retry' then
  redis.call('HINCRBY', job, 'notify_attempt', 1)
  redis.call('ZADD', due, now + delay_ms, id)
else
  redis.call('HSET', job, 'notify_state', outcome)
  redis.call('ZREM', due, id)
  if not is_batch then log_event(job, now, 'notify ' .. outcome .. ' ' .. detail) end
end
return 1
