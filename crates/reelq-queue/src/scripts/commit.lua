-- Commits a batch staged in chunks (`P stage:{batch}`, a list of JSON job tuples that
-- nothing claims): from here on, all of it will be queued. Small: the batch record and a
-- flag; the jobs are then moved to the queue chunk by chunk by release.lua.
-- Args (commit.rs): batch (its id), once (the request's idempotency, jobs.lua), options (the
-- batch's, see create_batch), n_jobs (how many jobs the stage must hold), waiting and
-- elsewhere (as enqueue.lua's).
-- Reply (jobs.rs's Answer): "new" with n_jobs when committed; "repeated" or "conflict" as
-- enqueue.lua answers, and "over_backlog" as it does (the stage is then left to expire); an
-- error if the stage is not whole
-- (it expired, or a chunk is missing).
local batch, n_jobs = A.batch, A.n_jobs
local legacy = refuse_in_legacy()
if legacy then return legacy end
local earlier = earlier_answer(A.once)
if earlier then return earlier end
local refused = over_backlog(A.waiting, A.elsewhere)
if refused then return refused end
local stage = prefix .. 'stage:' .. batch
local staged = redis.call('LLEN', stage)
if staged ~= n_jobs then
  return redis.error_reply('batch ' .. batch .. ' has ' .. staged .. ' of ' .. n_jobs .. ' jobs staged')
end
local now = now_ms()
create_batch(batch, A.options, n_jobs, now)
redis.call('PERSIST', stage)
redis.call('ZADD', prefix .. 'releasing', now, batch)
remember_answer(A.once, batch)
return new_answer(n_jobs)
