-- Enqueues a few validated jobs (at most one chunk), all or none, in one step.
-- KEYS[1]  due schedule (zset)
-- ARGV[1]  key prefix
-- ARGV[2]  batch id, or "" for none
-- ARGV[3]  idempotency record (full key name), or "" for none
-- ARGV[4]  idempotency record lifetime in seconds
-- ARGV[5]  digest of the request, kept under the idempotency key
-- ARGV[6]  receipt to keep under the idempotency key
-- ARGV[7]  the batch's options as JSON (see create_batch), or "" (no batch)
-- ARGV[8..] 6-tuples: job id, provider, spec JSON, deadline in unix ms or "", notify URL or "",
--          estimated cost in millionths of a dollar (0: unpriced)
-- Returns {n_jobs, "", ""} when enqueued; {0, receipt, batch} (and no write) when the
-- idempotency key was already used for this request; {-1, "", ""} when it was used for
-- another; an error (and no
-- write) if any job id exists.
local due = KEYS[1]
local batch, idem_key, idem_ttl, digest, receipt =
  ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local earlier = earlier_answer(idem_key, digest)
if earlier then return earlier end
local first, width = 8, 6
local jobs = {}
for base = first, #ARGV, width do
  local id = ARGV[base]
  if redis.call('EXISTS', prefix .. 'job:' .. id) == 1 then
    return redis.error_reply('job ' .. id .. ' already exists')
  end
  jobs[#jobs + 1] = { id, ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5] }
end
local now = now_ms()
local options = ARGV[7] ~= '' and cjson.decode(ARGV[7]) or {}
if batch ~= '' then create_batch(batch, options, #jobs, now) end
add_jobs(due, batch, options.low_priority, options.start_after_ms, jobs, now)
remember_answer(idem_key, idem_ttl, digest, receipt, batch)
return { #jobs, '', '' }
