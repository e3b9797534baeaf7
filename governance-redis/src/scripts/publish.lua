
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
local s = string.format('%d', seq)
local msg = '{"seq":' .. s .. ',' .. string.sub(ARGV[1], 2)
if ARGV[2] == '' then
  redis.call('XADD', KEYS[2], s .. '-0', 'm', msg)
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], s .. '-0', 'm', msg)
end
redis.call('SET', KEYS[1], s)
redis.call('PUBLISH', ARGV[3], msg)
return seq
