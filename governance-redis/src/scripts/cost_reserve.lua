
-- KEYS[1]: the pipeline cost hash (field "total", one field "agent:<id>" per agent;
-- integer nano-dollars). ARGV: agent field, amount, pipeline limit ("" = none),
-- agent limit ("" = none). Refuses before any write when a limit would be passed.
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
local mine = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local amount = tonumber(ARGV[2])
if ARGV[3] ~= '' and total + amount > tonumber(ARGV[3]) then
  return {0, 'pipeline', total}
end
if ARGV[4] ~= '' and mine + amount > tonumber(ARGV[4]) then
  return {0, 'agent', mine}
end
redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
return {1, 'ok', total + amount}
