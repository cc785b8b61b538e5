-- Moves job records written before ledger schema 3 into its format (`reelq migrate`): the spec
-- from one `spec` field into short pieces (`s0`.., `spec_n`), the event log from its list
-- (`P log:{id}`) into the record (`events`, `e0`..), and the record written anew, so that
-- Redis keeps it as a compact listpack again (it never turns a hashtable back by
-- itself). Each record moves in one step, so workers may run meanwhile; a record already in
-- the new format is left alone, so running it again changes nothing. Expiries carry over.
-- Args (migrate.rs): job_ids.
-- Reply: {moved = how many records were moved}.
local moved = 0
for _, id in ipairs(A.job_ids) do
  local job, log = prefix .. 'job:' .. id, prefix .. 'log:' .. id
  local old_log = redis.call('LRANGE', log, 0, -1)
  local flat = redis.call('HGETALL', job)
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  if #flat > 0 and (fields.spec or #old_log > 0) then
    -- The events in order: the list's (the old release's), then any the record has already
    -- (a new release's moves on an old record); by time, ties kept in that order.
    local events = {}
    for _, line in ipairs(old_log) do events[#events + 1] = line end
    local count = tonumber(fields.events or '0')
    for n = math.max(0, count - EVENTS_KEPT), count - 1 do
      local line = fields['e' .. (n % EVENTS_KEPT)]
      if line then events[#events + 1] = line end
    end
    local order = {}
    for j, line in ipairs(events) do
      order[j] = { ms = tonumber(string.match(line, '^(%d+)') or '0'), j = j, line = line }
    end
    table.sort(order, function(a, b)
      if a.ms ~= b.ms then return a.ms < b.ms end
      return a.j < b.j
    end)
    local ttl = redis.call('PTTL', job)
    local set = {}
    for field, value in pairs(fields) do
      if field ~= 'spec' and field ~= 'events' and not string.match(field, '^e%d+$') then
        set[#set + 1] = field
        set[#set + 1] = value
      end
    end
    local first = math.max(1, #order - EVENTS_KEPT + 1)
    for j = first, #order do
      set[#set + 1] = 'e' .. (j - first)
      set[#set + 1] = short_line(order[j].line)
    end
    set[#set + 1] = 'events'
    set[#set + 1] = #order - first + 1
    if fields.spec then
      for _, v in ipairs(spec_fields(fields.spec)) do set[#set + 1] = v end
    end
    redis.call('DEL', job, log)
    redis.call('HSET', job, unpack(set))
    if ttl > 0 then redis.call('PEXPIRE', job, ttl) end
    moved = moved + 1
  end
end
return cjson.encode({ moved = moved })
