
local i = 1
local function nxt() local v = ARGV[i]; i = i + 1; return v end
for k = 1, #KEYS do redis.call('DEL', KEYS[k]) end
local n = tonumber(nxt())
for _ = 1, n do
  local id = nxt()
  redis.call('HSET', KEYS[1], id, nxt())
  redis.call('RPUSH', KEYS[2], id)
  redis.call('HSET', KEYS[3], id, nxt())
  redis.call('HSET', KEYS[4], id, nxt())
end
local c = nxt()
if c ~= '' then redis.call('SET', KEYS[5], c) end
n = tonumber(nxt())
for _ = 1, n do redis.call('RPUSH', KEYS[6], nxt()) end
n = tonumber(nxt())
for _ = 1, n do
  local id = nxt()
  redis.call('HSET', KEYS[7], id, nxt())
  redis.call('RPUSH', KEYS[8], id)
  local claimer = nxt()
  if claimer ~= '' then redis.call('HSET', KEYS[9], id, claimer) end
end
n = tonumber(nxt())
for _ = 1, n do
  local key = nxt()
  redis.call('HSET', KEYS[10], key, nxt())
end
return 1
