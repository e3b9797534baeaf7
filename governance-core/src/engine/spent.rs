//! What a pipeline spent in money, rebuilt from the system of record: the `cost_usd` of its
//! `llm_call` events, for a resume (`super::resume`) and after the coordination backend lost
//! its data (`super::rebuild`).

use std::collections::HashMap;

use super::parts::Live;
use crate::cost::Cost;
use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::ids::AgentId;

/// What a pipeline's `llm_call` events say it spent, in all and per agent.
#[derive(Debug, Default)]
pub(super) struct SpentCost {
    total: f64,
    agents: HashMap<AgentId, f64>,
}

impl SpentCost {
    /// What the `llm_call` events among `events` cost.
    pub(super) fn of(events: &[Event]) -> Self {
        let mut spent = Self::default();
        for e in events {
            if let EventKind::LlmCall {
                agent_id,
                cost_usd: Some(c),
                error: None,
                ..
            } = &e.kind
            {
                spent.add(agent_id.clone(), *c);
            }
        }
        spent
    }

    fn add(&mut self, agent: AgentId, cost_usd: f64) {
        if cost_usd.is_finite() && cost_usd > 0.0 {
            self.total += cost_usd;
            *self.agents.entry(agent).or_default() += cost_usd;
        }
    }

    /// Counts it as spent in the pipeline's budget (a restarted process starts from zero)
    /// and [`seeds`](Self::seed) the cost ledger with it.
    pub(super) async fn restore(&self, live: &Live) -> Result<()> {
        live.state.budget().preload(0, self.total);
        self.seed(live).await
    }

    /// Raises the pipeline's cost-ledger counters to it (a restarted process's memory ledger
    /// starts empty; a shared one may have lost them).
    pub(super) async fn seed(&self, live: &Live) -> Result<()> {
        let agents: Vec<(AgentId, Cost)> = self
            .agents
            .iter()
            .map(|(a, c)| (a.clone(), Cost::from_usd(*c)))
            .collect();
        live.state
            .budget()
            .cost_ledger()
            .seed(live.id(), Cost::from_usd(self.total), &agents)
            .await
    }
}
