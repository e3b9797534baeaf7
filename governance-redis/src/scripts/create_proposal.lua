
local id = ARGV[1]
local existing = redis.call('HGET', KEYS[1], id)
if existing then
  local stored = cjson.decode(existing)
  if stored['author'] ~= ARGV[2] then
    return {'CONFLICT', tostring(stored['author'])}
  end
  return {'EXISTS', existing, redis.call('HGET', KEYS[3], id) or 'OPEN',
          redis.call('HGET', KEYS[4], id) or '[]'}
end
redis.call('HSET', KEYS[1], id, ARGV[3])
redis.call('RPUSH', KEYS[2], id)
redis.call('HSET', KEYS[3], id, ARGV[4])
redis.call('HSET', KEYS[4], id, ARGV[5])
return {'CREATED', ARGV[3], ARGV[4], ARGV[5]}
