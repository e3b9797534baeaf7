//! The Lua scripts behind every multi-key update, published so that other clients (and
//! `redis-benchmark`) can run exactly the same code.
//!
//! Each script is a file of this folder (`<name>.lua`), included at build time with
//! `include_str!`; [`ScriptSource::source`] is that file's text byte for byte (each starts with
//! an empty line, as the inline sources did), so the scripts' SHA-1s and the Python agent's
//! copy of `publish.lua` (`examples/python/critic_agent.py`) stay the same.
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
    source: include_str!("create_proposal.lua"),
};

/// `vote`: records a vote and applies the consensus rule atomically.
/// KEYS: proposals, proposal_status, votes, consensus.
/// ARGV: proposal id, voter, approve (`1`/`0`), vote JSON, quorum, decided_at (RFC 3339),
/// payload version, required voters (JSON array of ids), mediators (JSON array of ids): see
/// [`governance_core::ConsensusRule`].
/// Returns `{"NOT_FOUND"}`, `{"DUPLICATE", approvals, rejections, status, consensus JSON or
/// nil, the stored vote's approve ("1"/"0")}` or
/// `{"RECORDED", approvals, rejections, status, consensus JSON or nil}`.
pub const VOTE: ScriptSource = ScriptSource {
    name: "vote",
    num_keys: 4,
    source: include_str!("vote.lua"),
};

/// `create_handoff`. KEYS: handoffs, handoff_ids, handoff_claims.
/// ARGV: id, handoff JSON, claimer (empty = unclaimed). Returns 1 when created, 0 when the id
/// already existed (nothing changed).
pub const CREATE_HANDOFF: ScriptSource = ScriptSource {
    name: "create_handoff",
    num_keys: 3,
    source: include_str!("create_handoff.lua"),
};

/// `claim_handoff`. KEYS: handoffs, handoff_claims. ARGV: id, claimer.
/// Returns -1 (no such handoff), 1 (claimed by this claimer, now or before) or 0 (claimed by
/// another agent).
pub const CLAIM_HANDOFF: ScriptSource = ScriptSource {
    name: "claim_handoff",
    num_keys: 2,
    source: include_str!("claim_handoff.lua"),
};

/// `restore`: replaces a pipeline's blackboard. KEYS: the ten blackboard keys in the order of
/// [`crate::PipelineKeys::blackboard_keys`]. ARGV (flat): `n`, then `n` × (proposal id, body,
/// status, votes JSON); consensus JSON (empty = none); `n`, `n` × solution JSON; `n`, `n` ×
/// (handoff id, handoff JSON, claimer or empty); `n`, `n` × (partial key, partial JSON).
pub const RESTORE: ScriptSource = ScriptSource {
    name: "restore",
    num_keys: 10,
    source: include_str!("restore.lua"),
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
    source: include_str!("publish.lua"),
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
    source: include_str!("append_state.lua"),
};

/// `lease_acquire`: takes a pipeline's lease when nobody holds it, with a new fencing token.
/// KEYS: owner, fence. ARGV: node id, lease in milliseconds.
/// Returns `{1, token}` (acquired) or `{0, current owner "<node>:<token>"}`.
pub const LEASE_ACQUIRE: ScriptSource = ScriptSource {
    name: "lease_acquire",
    num_keys: 2,
    source: include_str!("lease_acquire.lua"),
};

/// `lease_renew`: extends the caller's lease; re-takes it when it expired but nobody else
/// took the pipeline (the fencing token is still the caller's).
/// KEYS: owner, fence. ARGV: `"<node>:<token>"`, token, lease in milliseconds.
/// Returns 1 (held) or 0 (lost to another owner).
pub const LEASE_RENEW: ScriptSource = ScriptSource {
    name: "lease_renew",
    num_keys: 2,
    source: include_str!("lease_renew.lua"),
};

/// `lease_release`: drops the caller's lease (nothing when another node holds it).
/// KEYS: owner. ARGV: `"<node>:<token>"`. Returns 1 when released.
pub const LEASE_RELEASE: ScriptSource = ScriptSource {
    name: "lease_release",
    num_keys: 1,
    source: include_str!("lease_release.lua"),
};

/// `cost_reserve`: reserves a call's worst case against the pipeline's and the agent's money
/// budgets, atomically across every process on this store.
/// KEYS: cost. ARGV: agent field (`agent:<id>`), amount (nano-dollars), pipeline limit
/// (`""` = none), agent limit (`""` = none).
/// Returns `{1, "ok", new total}` or `{0, "pipeline"|"agent", counter}` (nothing changed).
pub const COST_RESERVE: ScriptSource = ScriptSource {
    name: "cost_reserve",
    num_keys: 1,
    source: include_str!("cost_reserve.lua"),
};

/// `cost_settle`: replaces a reservation with the actual cost.
/// KEYS: cost. ARGV: agent field, delta (actual − reserved, signed). Counters floor at 0.
/// Returns the pipeline's new total.
pub const COST_SETTLE: ScriptSource = ScriptSource {
    name: "cost_settle",
    num_keys: 1,
    source: include_str!("cost_settle.lua"),
};

/// `cost_seed`: raises the counters to at least the amounts given (rebuilt from the ledger).
/// KEYS: cost. ARGV: total, then pairs (agent field, amount). Returns 1.
pub const COST_SEED: ScriptSource = ScriptSource {
    name: "cost_seed",
    num_keys: 1,
    source: include_str!("cost_seed.lua"),
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
    COST_RESERVE,
    COST_SETTLE,
    COST_SEED,
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
    pub cost_reserve: redis::Script,
    pub cost_settle: redis::Script,
    pub cost_seed: redis::Script,
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
            cost_reserve: redis::Script::new(COST_RESERVE.source),
            cost_settle: redis::Script::new(COST_SETTLE.source),
            cost_seed: redis::Script::new(COST_SEED.source),
        }
    }
}
