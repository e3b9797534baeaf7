//! The RUNNING stage: the REPORTER writes the report, and the pipeline moves to REPORT.

use std::time::Duration;

use super::live::Outcome;
use super::parts::{Engine, Live};
use crate::error::{Error, Result};
use crate::llm::Purpose;
use crate::parse::ReportDraft;
use crate::prompt;
use crate::role::Role;
use crate::state_machine::PipelineStatus;
use crate::store::{AgentState, Report};

/// RUNNING: the report. Returns how the pipeline ends when it does not reach REPORT (the
/// driver finishes it); `None` when it rests at REPORT, or when the engine is shutting down
/// before the stage began (nothing to write: a resume runs it again).
pub(super) async fn run(engine: &Engine, live: &Live) -> Result<Option<Outcome>> {
    let status = *live.status_rx().borrow();
    if engine.shutdown.is_cancelled() {
        return Ok(None);
    }
    if live.stop.is_cancelled() {
        return Ok(Some(Outcome::Stopped));
    }
    if status == PipelineStatus::Spawned {
        live.set_status(engine, PipelineStatus::Running, None)
            .await?;
    }
    let timeout = Duration::from_secs(live.with_record(|r| r.timeout_secs).await);
    let reporter = Role::REPORTER.agent_id();
    let ctx = match live
        .agent_context(
            engine,
            reporter,
            Role::REPORTER.as_str(),
            live.stop.child_token(),
            (None, engine.coordination.epoch()),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return Ok(Some(Outcome::OrchestrationError(e.to_string()))),
    };
    live.state
        .register_agent("REPORTER", "REPORTER", ctx.model());
    let ask = ctx.ask::<ReportDraft>(
        Purpose::Report,
        prompt::report(live.state.objective()),
        |_| Ok(()),
    );
    let result = tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout(format!(
                "report not written within {}s",
                timeout.as_secs()
            )))
        });
    let (state, outcome) = match result {
        Ok(d) => {
            let report = Report {
                summary: d.summary,
                findings: d.findings,
                complexity: d.complexity,
                partial: false,
            };
            live.state.set_report(report.clone());
            live.with_record(|r| r.report = Some(report)).await;
            (AgentState::Done, None)
        }
        Err(Error::Cancelled) if engine.shutdown.is_cancelled() => {
            (AgentState::Cancelled, Some(Outcome::Suspended))
        }
        Err(Error::Cancelled) => (AgentState::Cancelled, Some(Outcome::Stopped)),
        Err(Error::Timeout(m)) => (AgentState::Cancelled, Some(Outcome::Timeout(m))),
        Err(Error::Unauthorized(m)) => (
            AgentState::Failed,
            Some(Outcome::OrchestrationError(format!(
                "LLM provider refused the credentials: {m}"
            ))),
        ),
        Err(e) if e.provider_outage().is_some() => (
            AgentState::Failed,
            Some(Outcome::Failed(e.provider_outage().unwrap_or_default())),
        ),
        Err(e @ Error::Revoked(_)) => (
            AgentState::Revoked,
            Some(Outcome::Failed(format!("REPORTER {e}"))),
        ),
        Err(e) => (
            AgentState::Failed,
            Some(Outcome::Failed(format!("report stage failed: {e}"))),
        ),
    };
    live.state.agent_finished(
        Role::REPORTER.as_str(),
        state,
        outcome.as_ref().and_then(Outcome::reason),
    );
    if outcome.is_some() {
        return Ok(outcome);
    }
    live.set_status(engine, PipelineStatus::Report, None)
        .await?;
    // a stop that is the engine shutting down suspends the pipeline at REPORT (its checkpoint
    // is written): only an operator's stop ends it
    if live.stop.is_cancelled() && !engine.shutdown.is_cancelled() {
        return Ok(Some(Outcome::Stopped));
    }
    Ok(None)
}
