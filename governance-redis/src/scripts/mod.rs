//! The Lua scripts behind every multi-key update, published so that other clients (and
//! `redis-benchmark`) can run exactly the same code.
//!
//! Rules every script follows (checked by `tests/scripts_declare_keys.rs`):
//! - every key it touches comes from `KEYS[n]` (Dragonfly refuses undeclared keys, Redis Cluster
//!   needs them to route), and all keys of one call share the pipeline's hash tag;
//! - it checks everything that can fail *before* its first write, so a refused call changes
//!   nothing (Lua scripts are not rolled back on error);
//! - it uses no command newer than Redis 7.0 and only the `cjson` library for reading JSON
//!   (stored JSON is never re-encoded by Lua: `cjson` would turn `[]` into `{}` and round
//!   floats).

/// A script: its name, source and the number of keys it declares.
#[derive(Debug, Clone, Copy)]
pub struct ScriptSource {
    /// Short name (`vote`, `publish`, ...).
    pub name: &'static str,
    /// Lua source.
    pub source: &'static str,
    /// Number of `KEYS` the caller passes.
    pub num_keys: usize,
}

/// `create_proposal`. KEYS: proposals, proposal_ids, proposal_status, votes.
/// ARGV: id, author, body JSON, status, votes JSON array.
/// Returns `{"CREATED"|"EXISTS", body, status, votes}` or `{"CONFLICT", stored_author}`.
pub const CREATE_PROPOSAL: ScriptSource = ScriptSource {
    name: "create_proposal",
    num_keys: 4,
    source: r"
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
",
};

/// `vote`: records a vote and applies the consensus rule atomically.
/// KEYS: proposals, proposal_status, votes, consensus.
/// ARGV: proposal id, voter, approve (`1`/`0`), vote JSON, quorum, decided_at (RFC 3339),
/// payload version.
/// Returns `{"NOT_FOUND"}`, `{"DUPLICATE", approvals, rejections, status, consensus JSON or
/// nil, the stored vote's approve ("1"/"0")}` or
/// `{"RECORDED", approvals, rejections, status, consensus JSON or nil}`.
pub const VOTE: ScriptSource = ScriptSource {
    name: "vote",
    num_keys: 4,
    source: r#"
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
local consensus = false
if status == 'OPEN' then
  if approve and approvals >= quorum then
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
"#,
};

/// `create_handoff`. KEYS: handoffs, handoff_ids, handoff_claims.
/// ARGV: id, handoff JSON, claimer (empty = unclaimed). Returns 1 when created, 0 when the id
/// already existed (nothing changed).
pub const CREATE_HANDOFF: ScriptSource = ScriptSource {
    name: "create_handoff",
    num_keys: 3,
    source: r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
  return 1
end
return 0
",
};

/// `claim_handoff`. KEYS: handoffs, handoff_claims. ARGV: id, claimer.
/// Returns -1 (no such handoff), 1 (claimed by this claimer, now or before) or 0 (claimed by
/// another agent).
pub const CLAIM_HANDOFF: ScriptSource = ScriptSource {
    name: "claim_handoff",
    num_keys: 2,
    source: r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local c = redis.call('HGET', KEYS[2], ARGV[1])
if not c then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
if c == ARGV[2] then return 1 end
return 0
",
};

/// `restore`: replaces a pipeline's blackboard. KEYS: the ten blackboard keys in the order of
/// [`crate::PipelineKeys::blackboard_keys`]. ARGV (flat): `n`, then `n` × (proposal id, body,
/// status, votes JSON); consensus JSON (empty = none); `n`, `n` × solution JSON; `n`, `n` ×
/// (handoff id, handoff JSON, claimer or empty); `n`, `n` × (partial key, partial JSON).
pub const RESTORE: ScriptSource = ScriptSource {
    name: "restore",
    num_keys: 10,
    source: r"
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
",
};

/// `publish`: appends a bus message with the next gap-free `seq` and fans it out.
/// KEYS: bus_seq, bus_log. ARGV: message JSON without `seq` (an object), maxlen (empty = no
/// trimming), live channel. The stored and published JSON is the message with `"seq":n`
/// inserted first; the stream entry id is `<seq>-0`. Returns the seq.
///
/// The XADD runs before the counter is written, so a refused XADD leaves no gap.
pub const PUBLISH: ScriptSource = ScriptSource {
    name: "publish",
    num_keys: 2,
    source: r#"
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
"#,
};

/// `append_state`: appends ledger entries and stores a checkpoint and the registry record in
/// one step, refused unless the caller holds the pipeline's current fencing token.
/// KEYS: fence, ledger, checkpoint, checkpoint_meta, record.
/// ARGV: token (`""` = unfenced), first seq, n, n × entry JSON, checkpoint JSON or `""`,
/// checkpoint seq, record JSON or `""`, event channel, event payload or `""`.
/// A checkpoint older (lower seq) than the stored one is counted but does not replace it.
/// Returns `{"FENCED", current token or ""}`, `{"SEQ", ledger length}` (the first seq is not
/// `length + 1`; nothing stored) or `{"OK", new length}`.
pub const APPEND_STATE: ScriptSource = ScriptSource {
    name: "append_state",
    num_keys: 5,
    source: r"
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
",
};

/// `lease_acquire`: takes a pipeline's lease when nobody holds it, with a new fencing token.
/// KEYS: owner, fence. ARGV: node id, lease in milliseconds.
/// Returns `{1, token}` (acquired) or `{0, current owner "<node>:<token>"}`.
pub const LEASE_ACQUIRE: ScriptSource = ScriptSource {
    name: "lease_acquire",
    num_keys: 2,
    source: r"
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. t, 'PX', ARGV[2])
return {1, tostring(t)}
",
};

/// `lease_renew`: extends the caller's lease; re-takes it when it expired but nobody else
/// took the pipeline (the fencing token is still the caller's).
/// KEYS: owner, fence. ARGV: `"<node>:<token>"`, token, lease in milliseconds.
/// Returns 1 (held) or 0 (lost to another owner).
pub const LEASE_RENEW: ScriptSource = ScriptSource {
    name: "lease_renew",
    num_keys: 2,
    source: r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if not cur and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
",
};

/// `lease_release`: drops the caller's lease (nothing when another node holds it).
/// KEYS: owner. ARGV: `"<node>:<token>"`. Returns 1 when released.
pub const LEASE_RELEASE: ScriptSource = ScriptSource {
    name: "lease_release",
    num_keys: 1,
    source: r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
};

/// Every script of this crate.
pub const ALL: &[ScriptSource] = &[
    CREATE_PROPOSAL,
    VOTE,
    CREATE_HANDOFF,
    CLAIM_HANDOFF,
    RESTORE,
    PUBLISH,
    APPEND_STATE,
    LEASE_ACQUIRE,
    LEASE_RENEW,
    LEASE_RELEASE,
];

/// The scripts, hashed once; each is run by `EVALSHA` and reloaded on `NOSCRIPT` (for
/// example after a server restart).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub create_proposal: redis::Script,
    pub vote: redis::Script,
    pub create_handoff: redis::Script,
    pub claim_handoff: redis::Script,
    pub restore: redis::Script,
    pub publish: redis::Script,
    pub append_state: redis::Script,
    pub lease_acquire: redis::Script,
    pub lease_renew: redis::Script,
    pub lease_release: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            create_proposal: redis::Script::new(CREATE_PROPOSAL.source),
            vote: redis::Script::new(VOTE.source),
            create_handoff: redis::Script::new(CREATE_HANDOFF.source),
            claim_handoff: redis::Script::new(CLAIM_HANDOFF.source),
            restore: redis::Script::new(RESTORE.source),
            publish: redis::Script::new(PUBLISH.source),
            append_state: redis::Script::new(APPEND_STATE.source),
            lease_acquire: redis::Script::new(LEASE_ACQUIRE.source),
            lease_renew: redis::Script::new(LEASE_RENEW.source),
            lease_release: redis::Script::new(LEASE_RELEASE.source),
        }
    }
}
