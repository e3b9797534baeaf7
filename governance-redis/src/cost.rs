//! [`RedisCostLedger`]: money budgets shared by every process on one Redis — the server
//! nodes and the `governance worker`s playing roles of the same pipelines — so that together
//! they cannot pass a budget.
//!
//! One HASH per pipeline ([`PipelineKeys::cost`](crate::PipelineKeys::cost)), integer
//! nano-dollars: `total` and `agent:<id>`, each settled spending plus reservations in flight.
//! Reserving is one Lua script (`cost_reserve.lua`) that checks both limits and adds to both
//! counters atomically, or changes nothing; settling (`cost_settle.lua`) adds the difference
//! between the actual cost and the reservation.
//!
//! Redis holds only what the system of record can rebuild: the counters are the sum of the
//! `cost_usd` of the pipeline's `llm_call` events plus what is in flight. A resumed pipeline
//! raises them to that sum (`cost_seed.lua`, never lowering them); if Redis lost them while
//! the pipeline runs on, reservations start again from what is in flight (see the README's
//! "Budgets in money").

use std::sync::Arc;

use governance_core::{
    AgentId, Cost, CostLedger, CostReservation, Error, PipelineId, Result, async_trait, cost,
};

use crate::conn::{Effect, Shared};

/// A [`CostLedger`] in Redis: reservations are atomic across processes.
#[derive(Clone)]
pub struct RedisCostLedger {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisCostLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCostLedger")
            .field("key_prefix", &self.shared.config.key_prefix)
            .finish_non_exhaustive()
    }
}

fn agent_field(agent: &AgentId) -> String {
    format!("agent:{agent}")
}

fn limit_arg(limit: Option<Cost>) -> String {
    limit.map_or_else(String::new, |l| l.nanos().to_string())
}

impl RedisCostLedger {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl CostLedger for RedisCostLedger {
    async fn reserve(
        &self,
        pipeline: &PipelineId,
        agent: &AgentId,
        amount: Cost,
        pipeline_limit: Option<Cost>,
        agent_limit: Option<Cost>,
    ) -> Result<CostReservation> {
        let (ok, which, counted): (i64, String, u64) = self
            .shared
            .run_script(
                &self.shared.scripts.cost_reserve,
                &[self.shared.keys(pipeline).cost()],
                &[
                    agent_field(agent),
                    amount.nanos().to_string(),
                    limit_arg(pipeline_limit),
                    limit_arg(agent_limit),
                ],
                "cost reserve",
                Effect::Append,
            )
            .await?;
        if ok == 1 {
            return Ok(CostReservation {
                pipeline: pipeline.clone(),
                agent: agent.clone(),
                amount,
            });
        }
        let counted = Cost::from_nanos(counted);
        Err(match (which.as_str(), pipeline_limit, agent_limit) {
            ("pipeline", Some(l), _) => {
                cost::refusal("max_cost_per_pipeline_usd", counted, amount, l)
            }
            ("agent", _, Some(l)) => cost::refusal("max_cost_per_agent_usd", counted, amount, l),
            _ => Error::Internal(format!("cost_reserve answered {which:?}")),
        })
    }

    async fn settle(&self, reservation: CostReservation, actual: Cost) -> Result<()> {
        let delta = i128::from(actual.nanos()) - i128::from(reservation.amount.nanos());
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        if delta == 0 {
            return Ok(());
        }
        let _total: i64 = self
            .shared
            .run_script(
                &self.shared.scripts.cost_settle,
                &[self.shared.keys(&reservation.pipeline).cost()],
                &[agent_field(&reservation.agent), delta.to_string()],
                "cost settle",
                Effect::Append,
            )
            .await?;
        Ok(())
    }

    async fn spent(&self, pipeline: &PipelineId) -> Result<Cost> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.shared.keys(pipeline).cost()).arg("total");
        let v: Option<u64> = self.shared.query(&cmd, "cost read", Effect::Read).await?;
        Ok(Cost::from_nanos(v.unwrap_or(0)))
    }

    async fn agent_spent(&self, pipeline: &PipelineId, agent: &AgentId) -> Result<Cost> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.shared.keys(pipeline).cost())
            .arg(agent_field(agent));
        let v: Option<u64> = self.shared.query(&cmd, "cost read", Effect::Read).await?;
        Ok(Cost::from_nanos(v.unwrap_or(0)))
    }

    async fn seed(
        &self,
        pipeline: &PipelineId,
        total: Cost,
        agents: &[(AgentId, Cost)],
    ) -> Result<()> {
        let mut args = vec![total.nanos().to_string()];
        for (a, c) in agents {
            args.push(agent_field(a));
            args.push(c.nanos().to_string());
        }
        let _: i64 = self
            .shared
            .run_script(
                &self.shared.scripts.cost_seed,
                &[self.shared.keys(pipeline).cost()],
                &args,
                "cost seed",
                Effect::Idempotent,
            )
            .await?;
        Ok(())
    }
}
