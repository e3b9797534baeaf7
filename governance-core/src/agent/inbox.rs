//! [`Inbox`]: an agent's place in its pipeline's message log.

use futures::StreamExt;
use futures::stream::BoxStream;

use super::AgentContext;
use crate::error::{Error, Result};
use crate::message_bus::Message;

/// Where an agent is in the pipeline's message log (from [`AgentContext::inbox`]).
pub struct Inbox {
    after: u64,
    live: Option<BoxStream<'static, Message>>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("after", &self.after)
            .field("live", &self.live.is_some())
            .finish()
    }
}

impl AgentContext {
    /// An inbox positioned at the start of the pipeline's message log, subscribed live.
    ///
    /// # Errors
    /// Bus failures.
    pub async fn inbox(&self) -> Result<Inbox> {
        let live = self.inner.bus.subscribe(self.inner.shared.id()).await.ok();
        Ok(Inbox { after: 0, live })
    }

    /// Waits until there is something new in the message log (or the poll interval passes),
    /// then returns the new messages addressed to this agent (possibly none).
    ///
    /// # Errors
    /// [`Error::Cancelled`] once cancelled; bus failures.
    pub async fn wait_messages(&self, inbox: &mut Inbox) -> Result<Vec<Message>> {
        self.check_cancel()?;
        let c = &self.inner;
        let mut fresh = c.bus.read(c.shared.id(), inbox.after, 256).await?;
        if fresh.is_empty() {
            let poll = c.config.agent_poll_interval;
            match inbox.live.as_mut() {
                Some(live) => tokio::select! {
                    _ = live.next() => {},
                    () = tokio::time::sleep(poll) => {},
                    () = c.cancel.cancelled() => return Err(Error::Cancelled),
                },
                None => self.sleep(poll).await?,
            }
            fresh = c.bus.read(c.shared.id(), inbox.after, 256).await?;
        }
        if let Some(last) = fresh.last() {
            inbox.after = last.seq;
        }
        Ok(fresh
            .into_iter()
            .filter(|m| m.is_for(&c.agent_id))
            .collect())
    }
}
