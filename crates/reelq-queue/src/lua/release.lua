-- Queues the next chunk of a committed batch's staged jobs. Any client may run it, any number
-- at once (each takes its own chunk): the producer that committed the batch, a replay of its
-- request, or a worker's sweep when that producer died mid-way.
-- KEYS[1]  due schedule
-- ARGV[1]  key prefix
-- ARGV[2]  batch id
-- ARGV[3]  most jobs to queue
-- Returns {queued now, still staged}.
local due = KEYS[1]
local batch, max_jobs = ARGV[2], tonumber(ARGV[3])
if not redis.call('ZSCORE', prefix .. 'releasing', batch) then return { 0, 0 } end
local stage = prefix .. 'stage:' .. batch
local entries = redis.call('LPOP', stage, max_jobs) or {}
local jobs = {}
for i, entry in ipairs(entries) do jobs[i] = cjson.decode(entry) end
local info = redis.call('HMGET', prefix .. 'batchinfo:' .. batch, 'priority', 'start_after_ms')
add_jobs(due, batch, info[1] == 'low', tonumber(info[2]), jobs, now_ms())
local left = redis.call('LLEN', stage)
if left == 0 then redis.call('ZREM', prefix .. 'releasing', batch) end
return { #jobs, left }
