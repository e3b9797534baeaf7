
local id = ARGV[1]
local voter = ARGV[2]
if redis.call('HEXISTS', KEYS[1], id) == 0 then return {'NOT_FOUND'} end
local votes_json = redis.call('HGET', KEYS[3], id) or '[]'
local votes = cjson.decode(votes_json)
local approvals, rejections, seen = 0, 0, false
for _, v in ipairs(votes) do
  if v['voter'] == voter then seen = (v['approve'] == true) and '1' or '0' end
  if v['approve'] == true then approvals = approvals + 1 else rejections = rejections + 1 end
end
local status = redis.call('HGET', KEYS[2], id) or 'OPEN'
if seen then
  return {'DUPLICATE', approvals, rejections, status, redis.call('GET', KEYS[4]), seen}
end
local approve = ARGV[3] == '1'
if #votes == 0 then
  votes_json = '[' .. ARGV[4] .. ']'
else
  votes_json = string.sub(string.match(votes_json, '^(.-)%s*$'), 1, -2) .. ',' .. ARGV[4] .. ']'
end
redis.call('HSET', KEYS[3], id, votes_json)
if approve then approvals = approvals + 1 else rejections = rejections + 1 end
local quorum = tonumber(ARGV[5])
-- the consensus rule's required voters (ARGV[8]) and mediators (ARGV[9]), JSON arrays of ids:
-- accepted only with every required voter's approval, or a mediator's
local approvers = {}
for _, v in ipairs(votes) do
  if v['approve'] == true then approvers[v['voter']] = true end
end
if approve then approvers[voter] = true end
local required_ok = true
for _, r in ipairs(cjson.decode(ARGV[8] or '[]')) do
  if not approvers[r] then required_ok = false end
end
if not required_ok then
  for _, m in ipairs(cjson.decode(ARGV[9] or '[]')) do
    if approvers[m] then required_ok = true end
  end
end
local consensus = false
if status == 'OPEN' then
  if approve and approvals >= quorum and required_ok then
    if redis.call('EXISTS', KEYS[4]) == 0 then
      status = 'ACCEPTED'
      local voters = {}
      for _, v in ipairs(votes) do
        if v['approve'] == true then table.insert(voters, '"' .. v['voter'] .. '"') end
      end
      table.insert(voters, '"' .. voter .. '"')
      consensus = '{"v":' .. ARGV[7] .. ',"proposal_id":"' .. id .. '","votes":' ..
        string.format('%d', approvals) .. ',"voters":[' .. table.concat(voters, ',') ..
        '],"decided_at":"' .. ARGV[6] .. '"}'
      redis.call('SET', KEYS[4], consensus)
    else
      status = 'SUPERSEDED'
    end
    redis.call('HSET', KEYS[2], id, status)
  elseif (not approve) and rejections >= quorum then
    status = 'REJECTED'
    redis.call('HSET', KEYS[2], id, status)
  end
end
return {'RECORDED', approvals, rejections, status, consensus}
