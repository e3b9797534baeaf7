
if ARGV[1] ~= '' then
  local f = redis.call('GET', KEYS[1])
  if f ~= ARGV[1] then return {'FENCED', f or ''} end
end
local first = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local len = redis.call('LLEN', KEYS[2])
if n > 0 and len ~= first - 1 then return {'SEQ', tostring(len)} end
for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[3 + i]) end
local cp = ARGV[4 + n]
if cp ~= '' then
  local cp_seq = tonumber(ARGV[5 + n])
  local stored = tonumber(redis.call('HGET', KEYS[4], 'seq') or '-1')
  if cp_seq >= stored then
    redis.call('SET', KEYS[3], cp)
    redis.call('HSET', KEYS[4], 'seq', ARGV[5 + n])
  end
  redis.call('HINCRBY', KEYS[4], 'count', 1)
end
local rec = ARGV[6 + n]
if rec ~= '' then redis.call('SET', KEYS[5], rec) end
local payload = ARGV[8 + n]
if payload ~= '' then redis.call('PUBLISH', ARGV[7 + n], payload) end
return {'OK', tostring(len + n)}
