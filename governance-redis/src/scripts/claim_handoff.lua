
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
if c == ARGV[2] then return 1 end
return 0
