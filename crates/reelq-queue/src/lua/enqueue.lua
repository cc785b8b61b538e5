-- Enqueues a batch of validated jobs, all or none.
-- KEYS[1]  due schedule (zset)
-- ARGV[1]  key prefix
-- ARGV[2]  batch id, or "" for none
-- ARGV[3..] 5-tuples: job id, provider, spec JSON, deadline in unix ms or "", notify URL or ""
-- Returns the number of jobs enqueued; an error (and no write) if any job id exists.
local due = KEYS[1]
local batch = ARGV[2]
local n_jobs = (#ARGV - 2) / 5
for job_idx = 0, n_jobs - 1 do
  local id = ARGV[3 + job_idx * 5]
  if redis.call('EXISTS', prefix .. 'job:' .. id) == 1 then
    return redis.error_reply('job ' .. id .. ' already exists')
  end
end
local now = now_ms()
for job_idx = 0, n_jobs - 1 do
  local base = 3 + job_idx * 5
  local id, provider, spec, deadline = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local notify_url = ARGV[base + 4]
  local job = prefix .. 'job:' .. id
  redis.call('HSET', job, 'state', 'queued', 'fence', 0, 'provider', provider, 'spec', spec,
    'created_ms', now,
    'updated_ms', now, 'attempt', 0, 'submits', 0, 'polls', 0)
  if deadline ~= '' then redis.call('HSET', job, 'deadline_ms', deadline) end
  if notify_url ~= '' then redis.call('HSET', job, 'notify_url', notify_url) end
  if batch ~= '' then
    redis.call('HSET', job, 'batch', batch)
    redis.call('RPUSH', prefix .. 'batch:' .. batch, id)
  end
  redis.call('ZADD', prefix .. 'state:queued', now, id)
  redis.call('ZADD', due, now, id)
  redis.call('RPUSH', prefix .. 'log:' .. id, now .. ' queued')
end
redis.call('PUBLISH', prefix .. 'wake', n_jobs)
return n_jobs
