-- What a claim needs to know of the home, read just before it where the home has a slot of its
-- own (claim.lua decides from it; home.lua checks each job's take against the home again).
-- Args (claim_view.rs): accounts (the worker's, and those it has limits for).
-- Reply: {now_ms, accounts = {[account] = {pause_ms (left of its pause; <= 0: none), tat (its
-- request bucket's), used (its generation slots taken), spent (its reservations today)}},
-- tenants = {[tenant] = {used, day, month}} (each tenant with a cap: its slots taken, its
-- spend reserved today and this month)}.
local now = now_ms()
local day = math.floor(now / 86400000)
local live = '(' .. now
local accounts, tenants = {}, {}
for _, account in ipairs(A.accounts) do
  accounts[account] = {
    pause_ms = redis.call('PTTL', home .. 'pause:' .. account),
    tat = tonumber(redis.call('GET', home .. 'rate:' .. account) or '0'),
    used = redis.call('ZCOUNT', home .. 'inflight:' .. account, live, '+inf'),
    spent = tonumber(redis.call('GET', home .. 'spend:' .. account .. ':' .. day) or '0'),
  }
end
local caps = redis.call('HGETALL', home .. 'tenant_limits')
for i = 1, #caps, 2 do
  local tenant, cap = caps[i], cjson.decode(caps[i + 1])
  local seen = {}
  if type(cap.max_in_flight) == 'number' and cap.max_in_flight > 0 then
    seen.used = redis.call('ZCOUNT', home .. 'tenant_inflight:' .. tenant, live, '+inf')
  end
  if type(cap.daily_micros) == 'number' or type(cap.monthly_micros) == 'number' then
    local spent = redis.call('MGET', tenant_spend_keys(tenant, day))
    seen.day, seen.month = tonumber(spent[1] or '0'), tonumber(spent[2] or '0')
  end
  tenants[tenant] = seen
end
return cjson.encode({ now_ms = now, accounts = accounts, tenants = tenants })
