//! [`RedisBlackboard`]: the [`Blackboard`] on Redis / DragonflyDB.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use governance_core::{
    AgentId, Blackboard, BlackboardSnapshot, Consensus, ConsensusRule, Error, Handoff, HandoffId,
    PipelineId, Proposal, ProposalId, ProposalStatus, Result, Solution, Vote, VoteOutcome,
};
use redis::Value;

use crate::conn::{Effect, Shared, corrupt, corrupt_json};
use crate::keys::PipelineKeys;
use crate::wire::{self, ProposalMaps, assemble_all, assemble_handoffs};

/// The [`Blackboard`] on Redis / DragonflyDB (see `docs/wire-protocol.md` for the keys).
///
/// # Atomicity
/// Every update is one command or one Lua script (`crate::scripts`), so concurrent agents on
/// any number of connections or processes never see or produce a half-applied update. Reads
/// that span keys run in one `MULTI`/`EXEC`.
///
/// # Retries and unknown outcomes
/// An error with `retryable: true` means the operation was certainly not applied (the server
/// was unreachable or refused it before running it). When the connection fails *after* the
/// command may have been sent, the backend resolves the outcome itself for up to
/// [`RedisConfig::outage_timeout`](crate::RedisConfig::outage_timeout):
/// every write except [`add_solution`](Blackboard::add_solution) is idempotent and is simply
/// repeated — `create_proposal` (same id and author returns the stored proposal), `vote` (the
/// same voter is never counted twice; when the repeat finds this call's own vote already
/// stored it reports `recorded: true` and the consensus that vote decided), `create_handoff`
/// (same id), `claim_handoff` (same claimer gets `true` again), `put_partial` (last write
/// wins), `restore` and `clear`; `add_solution` is appended again only when the identical
/// solution is not among the newest 1000. Only when the server stays unreachable that long is
/// the error the non-retryable "outcome unknown".
#[derive(Clone)]
pub struct RedisBlackboard {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBlackboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBlackboard")
            .field("url", &self.shared.config.redacted_url())
            .field("key_prefix", &self.shared.config.key_prefix)
            .finish()
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Result<u32> {
    match v {
        Value::Int(i) => u32::try_from(*i).map_err(|_| corrupt("vote count", i)),
        other => Err(corrupt("vote count", format!("{other:?}"))),
    }
}

fn field(reply: &[Value], i: usize, what: &str) -> Result<String> {
    reply
        .get(i)
        .and_then(text)
        .ok_or_else(|| corrupt(what, "missing field in script reply"))
}

fn parse_status(s: &str) -> Result<ProposalStatus> {
    serde_json::from_value(serde_json::Value::from(s))
        .map_err(|e| corrupt_json("proposal status", e))
}

impl RedisBlackboard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn keys(&self, p: &PipelineId) -> PipelineKeys {
        self.shared.keys(p)
    }

    async fn proposal_maps(&self, k: &PipelineKeys) -> Result<ProposalMaps> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hgetall(k.proposals())
            .lrange(k.proposal_ids(), 0, -1)
            .hgetall(k.proposal_status())
            .hgetall(k.votes());
        self.shared.query(&pipe, "proposals", Effect::Read).await
    }

    async fn handoff_maps(
        &self,
        k: &PipelineKeys,
    ) -> Result<(
        HashMap<String, String>,
        Vec<String>,
        HashMap<String, String>,
    )> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hgetall(k.handoffs())
            .lrange(k.handoff_ids(), 0, -1)
            .hgetall(k.handoff_claims());
        self.shared.query(&pipe, "handoffs", Effect::Read).await
    }
}

#[async_trait]
impl Blackboard for RedisBlackboard {
    async fn create_proposal(&self, pipeline: &PipelineId, proposal: Proposal) -> Result<Proposal> {
        let k = self.keys(pipeline);
        let keys = [
            k.proposals(),
            k.proposal_ids(),
            k.proposal_status(),
            k.votes(),
        ];
        let args = [
            proposal.id.to_string(),
            proposal.author.to_string(),
            wire::proposal_body(&proposal)?,
            wire::status_str(&proposal)?,
            wire::votes(&proposal.votes)?,
        ];
        let reply: Vec<Value> = self
            .shared
            .run_script(
                &self.shared.scripts.create_proposal,
                &keys,
                &args,
                "create_proposal",
                Effect::Idempotent,
            )
            .await?;
        match field(&reply, 0, "create_proposal reply")?.as_str() {
            "CONFLICT" => Err(Error::Conflict(format!(
                "proposal {} already exists with author {}",
                proposal.id,
                field(&reply, 1, "author")?
            ))),
            // Stored exactly as sent: no need to decode the echo.
            "CREATED" => Ok(proposal),
            "EXISTS" => wire::assemble_proposal(
                &field(&reply, 1, "proposal")?,
                &field(&reply, 2, "status")?,
                &field(&reply, 3, "votes")?,
            ),
            other => Err(corrupt("create_proposal reply", other)),
        }
    }

    async fn proposal(&self, pipeline: &PipelineId, id: &ProposalId) -> Result<Proposal> {
        let k = self.keys(pipeline);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(k.proposals(), id.as_str())
            .hget(k.proposal_status(), id.as_str())
            .hget(k.votes(), id.as_str());
        let (body, status, votes): (Option<String>, Option<String>, Option<String>) =
            self.shared.query(&pipe, "proposal", Effect::Read).await?;
        let body = body.ok_or_else(|| Error::not_found("proposal", id))?;
        wire::assemble_proposal(
            &body,
            status.as_deref().unwrap_or("OPEN"),
            votes.as_deref().unwrap_or("[]"),
        )
    }

    async fn proposals(&self, pipeline: &PipelineId) -> Result<Vec<Proposal>> {
        let k = self.keys(pipeline);
        assemble_all(&self.proposal_maps(&k).await?)
    }

    async fn vote(
        &self,
        pipeline: &PipelineId,
        proposal: &ProposalId,
        vote: Vote,
        rule: &ConsensusRule,
    ) -> Result<VoteOutcome> {
        let k = self.keys(pipeline);
        let ids = |v: &[AgentId]| {
            serde_json::to_string(&v.iter().map(|a| a.as_str()).collect::<Vec<_>>())
                .map_err(|e| Error::Internal(format!("encoding the consensus rule: {e}")))
        };
        let keys = [k.proposals(), k.proposal_status(), k.votes(), k.consensus()];
        let args = [
            proposal.to_string(),
            vote.voter.to_string(),
            if vote.approve { "1" } else { "0" }.to_owned(),
            wire::vote(&vote)?,
            rule.quorum.to_string(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            wire::WIRE_VERSION.to_string(),
            ids(&rule.required)?,
            ids(&rule.mediators)?,
        ];
        let (reply, repeated): (Vec<Value>, bool) = self
            .shared
            .run_script_resolving(
                &self.shared.scripts.vote,
                &keys,
                &args,
                "vote",
                Effect::Idempotent,
            )
            .await?;
        let code = field(&reply, 0, "vote reply")?;
        if code == "NOT_FOUND" {
            return Err(Error::not_found("proposal", proposal));
        }
        let mut consensus = match reply.get(4).and_then(text) {
            Some(json) => Some(wire::decode_consensus(&json)?),
            None => None,
        };
        let recorded = match code.as_str() {
            "RECORDED" => true,
            // This call's first attempt was applied but its reply was lost: report what that
            // attempt did (the caller never saw it), including the consensus it decided.
            "DUPLICATE"
                if repeated
                    && reply.get(5).and_then(text).as_deref()
                        == Some(if vote.approve { "1" } else { "0" }) =>
            {
                consensus = consensus
                    .filter(|c| &c.proposal_id == proposal && c.voters.last() == Some(&vote.voter));
                true
            }
            "DUPLICATE" => {
                consensus = None;
                false
            }
            other => return Err(corrupt("vote reply", other)),
        };
        Ok(VoteOutcome {
            recorded,
            approvals: int(reply.get(1).unwrap_or(&Value::Nil))?,
            rejections: int(reply.get(2).unwrap_or(&Value::Nil))?,
            status: parse_status(&field(&reply, 3, "status")?)?,
            consensus,
        })
    }

    async fn consensus(&self, pipeline: &PipelineId) -> Result<Option<Consensus>> {
        let k = self.keys(pipeline);
        let json: Option<String> = self
            .shared
            .query(
                &*redis::cmd("GET").arg(k.consensus()),
                "consensus",
                Effect::Read,
            )
            .await?;
        json.as_deref().map(wire::decode_consensus).transpose()
    }

    async fn add_solution(&self, pipeline: &PipelineId, solution: Solution) -> Result<()> {
        let k = self.keys(pipeline);
        let json = wire::solution(&solution)?;
        let (key, json) = (&k.solutions(), &json);
        self.shared
            .append(
                "add_solution",
                |mut conn| async move {
                    redis::cmd("RPUSH")
                        .arg(key)
                        .arg(json)
                        .query_async::<i64>(&mut conn)
                        .await
                        .map(drop)
                },
                |mut conn| async move {
                    // Solutions carry their agent and a microsecond timestamp: an identical
                    // entry among the newest is this one.
                    let newest: Vec<String> = redis::cmd("LRANGE")
                        .arg(key)
                        .arg(-1000)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await?;
                    Ok(newest.iter().any(|s| s == json).then_some(()))
                },
            )
            .await
    }

    async fn create_handoff(&self, pipeline: &PipelineId, handoff: Handoff) -> Result<()> {
        let k = self.keys(pipeline);
        let keys = [k.handoffs(), k.handoff_ids(), k.handoff_claims()];
        let args = [
            handoff.id.to_string(),
            wire::handoff(&handoff)?,
            handoff
                .claimed_by
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ];
        let _: i64 = self
            .shared
            .run_script(
                &self.shared.scripts.create_handoff,
                &keys,
                &args,
                "create_handoff",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }

    async fn claim_handoff(
        &self,
        pipeline: &PipelineId,
        id: &HandoffId,
        claimer: &AgentId,
    ) -> Result<bool> {
        let k = self.keys(pipeline);
        let keys = [k.handoffs(), k.handoff_claims()];
        let args = [id.to_string(), claimer.to_string()];
        let r: i64 = self
            .shared
            .run_script(
                &self.shared.scripts.claim_handoff,
                &keys,
                &args,
                "claim_handoff",
                Effect::Idempotent,
            )
            .await?;
        match r {
            -1 => Err(Error::not_found("handoff", id)),
            0 => Ok(false),
            _ => Ok(true),
        }
    }

    async fn handoffs(&self, pipeline: &PipelineId) -> Result<Vec<Handoff>> {
        let k = self.keys(pipeline);
        let (bodies, ids, claims) = self.handoff_maps(&k).await?;
        assemble_handoffs(&bodies, &ids, &claims)
    }

    async fn put_partial(
        &self,
        pipeline: &PipelineId,
        key: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        let k = self.keys(pipeline);
        let json = wire::partial(&value)?;
        let _: i64 = self
            .shared
            .query(
                &*redis::cmd("HSET").arg(k.partials()).arg(key).arg(json),
                "put_partial",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }

    async fn snapshot(&self, pipeline: &PipelineId) -> Result<BlackboardSnapshot> {
        let k = self.keys(pipeline);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hgetall(k.proposals())
            .lrange(k.proposal_ids(), 0, -1)
            .hgetall(k.proposal_status())
            .hgetall(k.votes())
            .get(k.consensus())
            .lrange(k.solutions(), 0, -1)
            .hgetall(k.handoffs())
            .lrange(k.handoff_ids(), 0, -1)
            .hgetall(k.handoff_claims())
            .hgetall(k.partials());
        #[allow(clippy::type_complexity)]
        let (bodies, ids, statuses, votes, consensus, solutions, hbodies, hids, claims, partials): (
            HashMap<String, String>,
            Vec<String>,
            HashMap<String, String>,
            HashMap<String, String>,
            Option<String>,
            Vec<String>,
            HashMap<String, String>,
            Vec<String>,
            HashMap<String, String>,
            HashMap<String, String>,
        ) = self.shared.query(&pipe, "snapshot", Effect::Read).await?;
        Ok(BlackboardSnapshot {
            proposals: assemble_all(&(bodies, ids, statuses, votes))?,
            consensus: consensus
                .as_deref()
                .map(wire::decode_consensus)
                .transpose()?,
            solutions: solutions
                .iter()
                .map(|s| wire::decode_solution(s))
                .collect::<Result<_>>()?,
            handoffs: assemble_handoffs(&hbodies, &hids, &claims)?,
            partials: partials
                .into_iter()
                .map(|(key, json)| wire::decode_partial(&json).map(|v| (key, v)))
                .collect::<Result<BTreeMap<_, _>>>()?,
        })
    }

    async fn restore(&self, pipeline: &PipelineId, snapshot: BlackboardSnapshot) -> Result<()> {
        let k = self.keys(pipeline);
        let mut args = Vec::new();
        let mut seen = HashSet::new();
        let proposals: Vec<&Proposal> = snapshot
            .proposals
            .iter()
            .filter(|p| seen.insert(p.id.clone()))
            .collect();
        args.push(proposals.len().to_string());
        for p in proposals {
            args.push(p.id.to_string());
            args.push(wire::proposal_body(p)?);
            args.push(wire::status_str(p)?);
            args.push(wire::votes(&p.votes)?);
        }
        args.push(match &snapshot.consensus {
            Some(c) => wire::consensus(c)?,
            None => String::new(),
        });
        args.push(snapshot.solutions.len().to_string());
        for s in &snapshot.solutions {
            args.push(wire::solution(s)?);
        }
        let mut seen = HashSet::new();
        let handoffs: Vec<&Handoff> = snapshot
            .handoffs
            .iter()
            .filter(|h| seen.insert(h.id.clone()))
            .collect();
        args.push(handoffs.len().to_string());
        for h in handoffs {
            args.push(h.id.to_string());
            args.push(wire::handoff(h)?);
            args.push(
                h.claimed_by
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
        }
        args.push(snapshot.partials.len().to_string());
        for (key, value) in &snapshot.partials {
            args.push(key.clone());
            args.push(wire::partial(value)?);
        }
        let _: i64 = self
            .shared
            .run_script(
                &self.shared.scripts.restore,
                &k.blackboard_keys(),
                &args,
                "restore",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }

    async fn clear(&self, pipeline: &PipelineId) -> Result<()> {
        let k = self.keys(pipeline);
        let _: i64 = self
            .shared
            .query(
                &*redis::cmd("DEL").arg(&k.blackboard_keys()[..]),
                "clear",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.shared.ping().await
    }

    async fn generation(&self) -> Result<Option<governance_core::DataGeneration>> {
        self.shared.generation().await.map(Some)
    }
}
