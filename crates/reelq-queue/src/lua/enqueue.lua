-- Enqueues a batch of validated jobs, all or none.
-- KEYS[1]  due schedule (zset)
-- ARGV[1]  key prefix
-- ARGV[2]  batch id, or "" for none
-- ARGV[3]  idempotency key (full key name), or "" for none
-- ARGV[4]  idempotency key lifetime in seconds
-- ARGV[5]  receipt to keep under the idempotency key
-- ARGV[6..] 5-tuples: job id, provider, spec JSON, deadline in unix ms or "", notify URL or ""
-- Returns {n_jobs, ""} when enqueued; {0, receipt} (and no write) when the idempotency key was
-- already used; an error (and no write) if any job id exists.
local due = KEYS[1]
local batch, idem_key, idem_ttl, receipt = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if idem_key ~= '' then
  local earlier = redis.call('GET', idem_key)
  if earlier then return { 0, earlier } end
end
local first = 6
local n_jobs = (#ARGV - first + 1) / 5
for job_idx = 0, n_jobs - 1 do
  local id = ARGV[first + job_idx * 5]
  if redis.call('EXISTS', prefix .. 'job:' .. id) == 1 then
    return redis.error_reply('job ' .. id .. ' already exists')
  end
end
local now = now_ms()
local ids, scored = {}, {}
for job_idx = 0, n_jobs - 1 do
  local base = first + job_idx * 5
  local id, provider, spec, deadline = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local notify_url = ARGV[base + 4]
  local fields = { 'state', 'queued', 'fence', 0, 'provider', provider, 'spec', spec,
    'created_ms', now, 'updated_ms', now, 'attempt', 0, 'submits', 0, 'polls', 0 }
  if deadline ~= '' then fields[#fields + 1] = 'deadline_ms'; fields[#fields + 1] = deadline end
  if notify_url ~= '' then fields[#fields + 1] = 'notify_url'; fields[#fields + 1] = notify_url end
  if batch ~= '' then fields[#fields + 1] = 'batch'; fields[#fields + 1] = batch end
  redis.call('HSET', prefix .. 'job:' .. id, unpack(fields))
  log_event(id, now, 'queued')
  ids[#ids + 1] = id
  scored[#scored + 1] = now
  scored[#scored + 1] = id
end
-- Index and schedule in chunks: one command per chunk, not per job, and under Lua's limit
-- on unpacked arguments.
local CHUNK = 1000
for i = 1, #ids, CHUNK do
  local last = math.min(i + CHUNK - 1, #ids)
  redis.call('ZADD', due, unpack(scored, 2 * i - 1, 2 * last))
  redis.call('ZADD', prefix .. 'state:queued', unpack(scored, 2 * i - 1, 2 * last))
  if batch ~= '' then redis.call('RPUSH', prefix .. 'batch:' .. batch, unpack(ids, i, last)) end
end
if idem_key ~= '' then redis.call('SET', idem_key, receipt, 'EX', idem_ttl) end
redis.call('PUBLISH', prefix .. 'wake', n_jobs)
return { n_jobs, '' }
