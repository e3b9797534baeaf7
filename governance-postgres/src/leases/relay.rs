//! What the other nodes send this one: forwarded commands (taken from `commands` and carried
//! out) and notifications of appended events (read from the ledger and relayed into the
//! live feed).

use std::sync::Arc;

use governance_core::{Command, Governance, PipelineId, Result};

use super::PgLeases;
use crate::ledger::Appended;

impl PgLeases {
    pub(super) async fn on_note(&self, governance: &Governance, channel: &str, payload: &str) {
        if channel == self.channels.commands {
            if let Ok(id) = PipelineId::new(payload)
                && self.table.token(&id).is_some()
                && let Err(e) = self.run_commands(governance, vec![id]).await
            {
                tracing::warn!(error = %e, "reading forwarded commands failed");
            }
            return;
        }
        let Ok(a) = serde_json::from_str::<Appended>(payload) else {
            tracing::debug!(payload, "ignoring a malformed event notification");
            return;
        };
        if a.node == self.table.node {
            return;
        }
        let (Ok(id), Ok(from), Ok(n)) = (
            PipelineId::new(&a.pipeline),
            u64::try_from(a.from - 1),
            usize::try_from(a.to - a.from + 1),
        ) else {
            return;
        };
        match governance_core::LedgerStore::read(&self.store, &id, from, n).await {
            Ok(events) => {
                for e in events {
                    governance.relay(Arc::new(e));
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read events to relay"),
        }
    }

    /// Carries out the commands other nodes forwarded for these pipelines (this node owns
    /// them): each is taken (`DELETE … RETURNING`) and run once.
    pub(super) async fn run_commands(
        &self,
        governance: &Governance,
        ids: Vec<PipelineId>,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let taken: Vec<(String, String)> = self
            .store
            .db
            .write("take forwarded commands", &move |tx| {
                let ids = ids.clone();
                Box::pin(async move {
                    let rows = tx
                        .query(
                            "DELETE FROM commands WHERE pipeline_id = ANY($1) \
                             RETURNING pipeline_id, command",
                            &[&ids],
                        )
                        .await?;
                    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
                })
            })
            .await?;
        for (id, json) in taken {
            let (Ok(id), Ok(command)) =
                (PipelineId::new(&id), serde_json::from_str::<Command>(&json))
            else {
                tracing::warn!(pipeline_id = %id, "ignoring a malformed command");
                continue;
            };
            tracing::info!(pipeline_id = %id, ?command, "carrying out a forwarded command");
            let gov = governance.clone();
            tokio::spawn(async move {
                let r = match command {
                    Command::Stop => gov.stop(&id).await.map(|_| ()),
                    Command::Continue(req) => gov.continue_pipeline(&id, req).await,
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    tracing::warn!(pipeline_id = %id, error = %e, "a forwarded command failed");
                }
            });
        }
        Ok(())
    }
}
