-- Enqueues a batch of validated jobs, all or none.
-- KEYS[1]  due schedule (zset)
-- ARGV[1]  key prefix
-- ARGV[2]  batch id, or "" for none
-- ARGV[3]  idempotency key (full key name), or "" for none
-- ARGV[4]  idempotency key lifetime in seconds
-- ARGV[5]  receipt to keep under the idempotency key
-- ARGV[6]  the batch's options as JSON (name, start_after_ms, budget_micros, low_priority,
--          notify_url),
--          or "" (kept in `P batchinfo:{batch}` with the job count and the reserved spend)
-- ARGV[7..] 6-tuples: job id, provider, spec JSON, deadline in unix ms or "", notify URL or "",
--          estimated cost in millionths of a dollar (0: unpriced)
-- Jobs of a low-priority batch wait in `P due_low`; a batch's start time is their first due
-- time.
-- Returns {n_jobs, ""} when enqueued; {0, receipt} (and no write) when the idempotency key was
-- already used; an error (and no write) if any job id exists.
local due = KEYS[1]
local batch, idem_key, idem_ttl, receipt = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if idem_key ~= '' then
  local earlier = redis.call('GET', idem_key)
  if earlier then return { 0, earlier } end
end
local first, width = 7, 6
local n_jobs = (#ARGV - first + 1) / width
for job_idx = 0, n_jobs - 1 do
  local id = ARGV[first + job_idx * width]
  if redis.call('EXISTS', prefix .. 'job:' .. id) == 1 then
    return redis.error_reply('job ' .. id .. ' already exists')
  end
end
local now = now_ms()
local options = ARGV[6] ~= '' and cjson.decode(ARGV[6]) or {}
local queue, due_at = due, now
if options.low_priority then queue = prefix .. 'due_low' end
if options.start_after_ms and options.start_after_ms > now then due_at = options.start_after_ms end
if batch ~= '' then
  local info = { 'created_ms', now, 'total', n_jobs, 'open', n_jobs, 'reserved_micros', 0 }
  for _, field in ipairs({ 'name', 'start_after_ms', 'budget_micros', 'notify_url' }) do
    if options[field] then
      info[#info + 1] = field
      info[#info + 1] = tostring(options[field])
    end
  end
  if options.low_priority then info[#info + 1] = 'priority'; info[#info + 1] = 'low' end
  redis.call('HSET', prefix .. 'batchinfo:' .. batch, unpack(info))
  redis.call('ZADD', prefix .. 'batches', now, batch)
end
local ids, scored, indexed = {}, {}, {}
for job_idx = 0, n_jobs - 1 do
  local base = first + job_idx * width
  local id, provider, spec, deadline = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local notify_url, cost = ARGV[base + 4], tonumber(ARGV[base + 5])
  local fields = { 'state', 'queued', 'fence', 0, 'provider', provider, 'spec', spec,
    'created_ms', now, 'updated_ms', now, 'attempt', 0, 'submits', 0, 'polls', 0 }
  if deadline ~= '' then fields[#fields + 1] = 'deadline_ms'; fields[#fields + 1] = deadline end
  if notify_url ~= '' then fields[#fields + 1] = 'notify_url'; fields[#fields + 1] = notify_url end
  if batch ~= '' then fields[#fields + 1] = 'batch'; fields[#fields + 1] = batch end
  if cost > 0 then fields[#fields + 1] = 'cost_micros'; fields[#fields + 1] = cost end
  redis.call('HSET', prefix .. 'job:' .. id, unpack(fields))
  log_event(id, now, 'queued')
  ids[#ids + 1] = id
  scored[#scored + 1] = due_at
  scored[#scored + 1] = id
  indexed[#indexed + 1] = now
  indexed[#indexed + 1] = id
end
-- Index and schedule in chunks: one command per chunk, not per job, and under Lua's limit
-- on unpacked arguments.
local CHUNK = 1000
for i = 1, #ids, CHUNK do
  local last = math.min(i + CHUNK - 1, #ids)
  redis.call('ZADD', queue, unpack(scored, 2 * i - 1, 2 * last))
  redis.call('ZADD', prefix .. 'state:queued', unpack(indexed, 2 * i - 1, 2 * last))
  if batch ~= '' then redis.call('RPUSH', prefix .. 'batch:' .. batch, unpack(ids, i, last)) end
end
if idem_key ~= '' then redis.call('SET', idem_key, receipt, 'EX', idem_ttl) end
redis.call('PUBLISH', prefix .. 'wake', n_jobs)
return { n_jobs, '' }
