-- Queues the next chunk of a committed batch's staged jobs. Any client may run it, any number
-- at once (each takes its own chunk): the producer that committed the batch, a replay of its
-- request, or a worker's sweep when that producer died mid-way.
-- Args (release.rs): batch (its id), max_jobs (the most jobs to queue).
-- Reply: {queued = queued now, left = still staged}.
local batch = A.batch
if not redis.call('ZSCORE', prefix .. 'releasing', batch) then
  return cjson.encode({ queued = 0, left = 0 })
end
local stage = prefix .. 'stage:' .. batch
local entries = redis.call('LPOP', stage, A.max_jobs) or {}
local jobs = {}
for i, entry in ipairs(entries) do
  local job = cjson.decode(entry)
  if job[1] then
    -- The stage's format (jobs.rs, QueuedJob::staged): {id, provider, spec, deadline or "",
    -- notify URL or "", cost, tenant or "", route hold "<patience ms> <on>" or ""}, which
    -- releases before typed edges read too.
    local patience, on = string.match(job[8] or '', '^(%d+) (%a+)$')
    job = { id = job[1], provider = job[2], spec = job[3], deadline_ms = tonumber(job[4]),
      notify_url = job[5] ~= '' and job[5] or nil, cost_micros = tonumber(job[6]),
      tenant = (job[7] or '') ~= '' and job[7] or nil,
      route_hold = patience and { patience_ms = tonumber(patience), on = on } or nil }
  end
  jobs[i] = job
end
local info = redis.call('HMGET', prefix .. 'batchinfo:' .. batch, 'priority', 'start_after_ms')
add_jobs(batch, info[1] == 'low', tonumber(info[2]), jobs, now_ms())
local left = redis.call('LLEN', stage)
if left == 0 then redis.call('ZREM', prefix .. 'releasing', batch) end
return cjson.encode({ queued = #jobs, left = left })
