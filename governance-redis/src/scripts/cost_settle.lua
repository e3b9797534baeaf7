
-- KEYS[1]: the pipeline cost hash. ARGV: agent field, delta (actual - reserved, may be
-- negative). A counter never goes below zero. Returns the pipeline's new total.
local t = redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
if t < 0 then
  redis.call('HSET', KEYS[1], 'total', 0)
  t = 0
end
local a = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if a < 0 then
  redis.call('HSET', KEYS[1], ARGV[1], 0)
end
return t
