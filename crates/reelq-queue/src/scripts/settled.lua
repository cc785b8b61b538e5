-- Ends a claim made where the home has a slot of its own, once home.lua made or refused each
-- job's take: a job the claim keeps gets the fields its take earned (its budget reservation,
-- its account's and its tenant's slots; a routed job leaving its candidate instead earned none, and gives its
-- batch's reservation back); a job refused is put back as the claim found it, due again when
-- the home's limit lets it go, with its batch's reservation given back, and nobody's lease. A
-- job no longer under this claim's fence and token (an operator's move since) is left alone.
-- Either way the job's `bpending` (the batch reservation the claim made, to give back if no
-- settle came) goes: the reservation is now the job's, or given back here.
-- Args (settled.rs): token (the claim's); kept ({{id, fence, reserved, reserved_day, tslot,
-- aslot (it holds its account's slot), batch, give_back}, ...}); refused ({{id, fence, queue,
-- tenant (when the queue is its tenant's), provider, batch, batch_cost, wait_ms}, ...}).
-- Reply: {kept = how many were still the claim's, put_back = how many}.
local now = now_ms()
local function ours(job, fence)
  local f = redis.call('HMGET', job, 'fence', 'token')
  return tonumber(f[1] or '0') == fence and f[2] == A.token
end
local function give_back(batch, cost)
  if batch and cost > 0 then
    redis.call('HINCRBY', prefix .. 'batchinfo:' .. batch, 'reserved_micros', -cost)
  end
end
local kept, put_back = 0, 0
for _, g in ipairs(A.kept) do
  local job = prefix .. 'job:' .. g.id
  if ours(job, g.fence) then
    local fields = {}
    if g.reserved then
      fields = { 'reserved', g.reserved, 'reserved_day', g.reserved_day }
    end
    if g.tslot then fields[#fields + 1], fields[#fields + 2] = 'tslot', 1 end
    if g.aslot then fields[#fields + 1], fields[#fields + 2] = 'aslot', 1 end
    if #fields > 0 then redis.call('HSET', job, unpack(fields)) end
    redis.call('HDEL', job, 'bpending')
    give_back(g.batch, g.give_back)
    kept = kept + 1
  end
end
local due = prefix .. 'due'
for _, r in ipairs(A.refused) do
  local job = prefix .. 'job:' .. r.id
  if ours(job, r.fence) then
    redis.call('HSET', job, 'provider', r.provider, 'token', '', 'owner', '')
    redis.call('HDEL', job, 'bpending')
    give_back(r.batch, r.batch_cost)
    if r.queue ~= due then redis.call('ZREM', due, r.id) end
    redis.call('ZADD', r.queue, now + r.wait_ms, r.id)
    -- Back in its tenant's queue: the claim that took it may have found the queue empty
    -- after it and taken the tenant out of the ranking.
    if r.tenant then tenant_active(r.tenant) end
    put_back = put_back + 1
  end
end
return cjson.encode({ kept = kept, put_back = put_back })
