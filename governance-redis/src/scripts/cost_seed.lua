
-- KEYS[1]: the pipeline cost hash. ARGV: total, then pairs (agent field, amount).
-- Raises each counter to at least the amount given (never lowers one). Returns 1.
local function raise(field, v)
  local cur = tonumber(redis.call('HGET', KEYS[1], field) or '0')
  if cur < tonumber(v) then
    redis.call('HSET', KEYS[1], field, v)
  end
end
raise('total', ARGV[1])
for i = 2, #ARGV, 2 do
  raise(ARGV[i], ARGV[i + 1])
end
return 1
