-- Enqueues a few validated jobs (at most one chunk), all or none, in one step.
-- Args (enqueue.rs): batch (its id; absent: none), once (the request's idempotency, jobs.lua),
-- options (the batch's, see create_batch; absent: no batch), jobs (QueuedJob tables, see
-- add_jobs).
-- Reply (jobs.rs's Answer): "new" with n_jobs; "repeated" (and no write) when the
-- idempotency key was already used for this request; "conflict" when it was used for
-- another; "over_backlog" (and no write) when a tenant would pass its cap on jobs waiting
-- (`waiting`: tenant -> its jobs here; `elsewhere`: tenant -> its jobs waiting in
-- other partitions); an error (and no write) if any job id exists.
local legacy = refuse_in_legacy()
if legacy then return legacy end
local earlier = earlier_answer(A.once)
if earlier then return earlier end
local refused = over_backlog(A.waiting, A.elsewhere)
if refused then return refused end
for _, job in ipairs(A.jobs) do
  if redis.call('EXISTS', prefix .. 'job:' .. job.id) == 1 then
    return redis.error_reply('job ' .. job.id .. ' already exists')
  end
end
local now = now_ms()
local options = A.options or {}
if A.batch then create_batch(A.batch, options, #A.jobs, now) end
add_jobs(A.batch, options.low_priority, options.start_after_ms, A.jobs, now)
remember_answer(A.once, A.batch)
return new_answer(#A.jobs)
