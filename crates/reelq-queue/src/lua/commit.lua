-- Commits a batch staged in chunks (`P stage:{batch}`, a list of JSON job tuples that
-- nothing claims): from here on, all of it will be queued. Small: the batch record and a
-- flag; the jobs are then moved to the queue chunk by chunk by release.lua.
-- KEYS[1]  due schedule (unused; every ledger script names it)
-- ARGV[1]  key prefix
-- ARGV[2]  batch id
-- ARGV[3]  idempotency record (full key name), or ""
-- ARGV[4]  idempotency record lifetime in seconds
-- ARGV[5]  digest of the request
-- ARGV[6]  receipt to keep under the idempotency key
-- ARGV[7]  the batch's options as JSON (see create_batch)
-- ARGV[8]  how many jobs the stage must hold
-- Returns {n_jobs, "", ""} when committed; {0, receipt, batch} or {-1, "", ""} as enqueue.lua does (the
-- stage is then left to expire); an error if the stage is not whole (it expired, or a chunk
-- is missing).
local batch, idem_key, idem_ttl, digest, receipt, n_jobs =
  ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[8])
local earlier = earlier_answer(idem_key, digest)
if earlier then return earlier end
local stage = prefix .. 'stage:' .. batch
local staged = redis.call('LLEN', stage)
if staged ~= n_jobs then
  return redis.error_reply('batch ' .. batch .. ' has ' .. staged .. ' of ' .. n_jobs .. ' jobs staged')
end
local now = now_ms()
create_batch(batch, cjson.decode(ARGV[7]), n_jobs, now)
redis.call('PERSIST', stage)
redis.call('ZADD', prefix .. 'releasing', now, batch)
remember_answer(idem_key, idem_ttl, digest, receipt, batch)
return { n_jobs, '', '' }
