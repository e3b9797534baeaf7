//! [`RedisLeases`]: pipeline ownership leases with fencing tokens, taking over the pipelines
//! of a dead node, and carrying out commands other nodes forwarded (the protocol: see
//! [`crate::cluster`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governance_core::{Command, Error, Governance, Ownership, PipelineId, Result};
use tokio_util::sync::CancellationToken;

use super::relay::{commands_channel, relay_events};
use crate::conn::{Effect, Shared};
use crate::store::{LeaseTable, RedisStore};

/// Pipeline ownership leases of one server node on Redis: the [`Ownership`] of a
/// [`Governance`] engine when several nodes share one Redis. See the module docs.
#[derive(Clone)]
pub struct RedisLeases {
    shared: Arc<Shared>,
    table: Arc<LeaseTable>,
    store: RedisStore,
    lease: Duration,
    finished: Option<tokio::sync::mpsc::UnboundedSender<PipelineId>>,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases")
            .field("node", &self.table.node)
            .field("lease", &self.lease)
            .field("owned", &self.table.held.lock().len())
            .finish_non_exhaustive()
    }
}

impl RedisLeases {
    pub(crate) fn new(
        shared: Arc<Shared>,
        node_id: &str,
        lease: Duration,
    ) -> Result<(Self, RedisStore)> {
        governance_core::validate_id("node", node_id)?;
        if lease < Duration::from_millis(300) {
            return Err(Error::config(
                "GOVERNANCE_LEASE_MS",
                "a lease must be at least 300 ms",
            ));
        }
        let table = Arc::new(LeaseTable::new(node_id));
        let store = RedisStore::new(shared.clone(), Some(table.clone()));
        Ok((
            Self {
                shared,
                table,
                store: store.clone(),
                lease,
                finished: None,
            },
            store,
        ))
    }

    /// Sends the id of every pipeline this node finishes (ends in a terminal status) to `tx`,
    /// e.g. to archive it.
    #[must_use]
    pub fn on_finished(mut self, tx: tokio::sync::mpsc::UnboundedSender<PipelineId>) -> Self {
        self.finished = Some(tx);
        self
    }

    /// The lease duration.
    #[must_use]
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Pipelines this node owns now.
    #[must_use]
    pub fn owned(&self) -> Vec<PipelineId> {
        self.table.held.lock().keys().cloned().collect()
    }

    fn lease_ms(&self) -> String {
        self.lease.as_millis().to_string()
    }

    async fn acquire(&self, id: &PipelineId) -> Result<Option<u64>> {
        let k = self.shared.keys(id);
        let (won, value): (i64, String) = self
            .shared
            .run_script(
                &self.shared.scripts.lease_acquire,
                &[k.owner(), k.fence()],
                &[self.table.node.clone(), self.lease_ms()],
                "lease acquire",
                Effect::Read, // a repeat after a lost reply sees our own lease: handled below
            )
            .await?;
        if won == 1 {
            let token: u64 = value
                .parse()
                .map_err(|_| crate::conn::corrupt("fencing token", &value))?;
            self.table.held.lock().insert(id.clone(), token);
            return Ok(Some(token));
        }
        // a repeated attempt whose first try won finds its own lease
        if let Some((node, token)) = value.rsplit_once(':')
            && node == self.table.node
            && let Ok(token) = token.parse::<u64>()
        {
            self.table.held.lock().insert(id.clone(), token);
            return Ok(Some(token));
        }
        Ok(None)
    }

    /// Renews every lease this node holds once; returns the pipelines it lost.
    ///
    /// # Errors
    /// Backend errors (leases whose renewal failed are kept until they are refused).
    pub async fn renew_all(&self) -> Result<Vec<PipelineId>> {
        let held: Vec<(PipelineId, u64)> = self
            .table
            .held
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut lost = Vec::new();
        for (id, token) in held {
            let k = self.shared.keys(&id);
            let kept: i64 = self
                .shared
                .run_script(
                    &self.shared.scripts.lease_renew,
                    &[k.owner(), k.fence()],
                    &[
                        format!("{}:{token}", self.table.node),
                        token.to_string(),
                        self.lease_ms(),
                    ],
                    "lease renew",
                    Effect::Idempotent,
                )
                .await?;
            if kept == 0 {
                tracing::warn!(pipeline_id = %id, "lease lost to another node");
                self.table.forget(&id);
                lost.push(id);
            }
        }
        Ok(lost)
    }

    /// One takeover scan: adopts every active pipeline whose owner's lease is gone. Returns
    /// the pipelines this node took over.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn scan(&self, governance: &Governance) -> Result<Vec<PipelineId>> {
        let ids = self.store.active_ids().await?;
        let candidates: Vec<PipelineId> = {
            let held = self.table.held.lock();
            ids.into_iter().filter(|i| !held.contains_key(i)).collect()
        };
        let mut adopted = Vec::new();
        for chunk in candidates.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("EXISTS").arg(self.shared.keys(id).owner());
            }
            let exists: Vec<i64> = self.shared.query(&pipe, "lease scan", Effect::Read).await?;
            for (id, e) in chunk.iter().zip(exists) {
                if e != 0 {
                    continue;
                }
                match governance.adopt(id).await {
                    Ok(true) => {
                        tracing::info!(pipeline_id = %id, node = %self.table.node, "took the pipeline over");
                        adopted.push(id.clone());
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(pipeline_id = %id, error = %e, "takeover failed"),
                }
            }
        }
        Ok(adopted)
    }

    /// Runs this node's lease work until `cancel`: renews its leases every `lease / 3`, scans
    /// for pipelines to take over every `lease / 2`, and relays other nodes' events into
    /// `governance`'s live feed. Spawn it once per node.
    pub async fn run(self, governance: Governance, cancel: CancellationToken) {
        let (wake_tx, mut wake) = tokio::sync::mpsc::unbounded_channel::<PipelineId>();
        let relay = tokio::spawn(relay_events(
            self.shared.clone(),
            self.table.node.clone(),
            governance.clone(),
            wake_tx,
            cancel.clone(),
        ));
        let mut renew = tokio::time::interval(self.lease / 3);
        let mut scan = tokio::time::interval(self.lease / 2);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = renew.tick() => {
                    if let Err(e) = self.renew_all().await {
                        tracing::warn!(error = %e, "lease renewal failed");
                    }
                    // commands whose wake-up was missed (pub/sub is at-most-once)
                    if let Err(e) = self.run_commands(&governance, self.owned()).await {
                        tracing::warn!(error = %e, "reading forwarded commands failed");
                    }
                }
                Some(id) = wake.recv() => {
                    if self.table.token(&id).is_some()
                        && let Err(e) = self.run_commands(&governance, vec![id]).await
                    {
                        tracing::warn!(error = %e, "reading forwarded commands failed");
                    }
                }
                _ = scan.tick() => {
                    if let Err(e) = self.scan(&governance).await {
                        tracing::warn!(error = %e, "takeover scan failed");
                    }
                }
            }
        }
        relay.abort();
    }

    /// Carries out the commands other nodes forwarded for these pipelines (this node owns
    /// them): each command key is taken (`GETDEL`) and run once.
    async fn run_commands(&self, governance: &Governance, ids: Vec<PipelineId>) -> Result<()> {
        for chunk in ids.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("GETDEL").arg(self.shared.keys(id).command());
            }
            let found: Vec<Option<String>> = self
                .shared
                .query(&pipe, "command take", Effect::Read)
                .await?;
            for (id, json) in chunk.iter().zip(found) {
                let Some(json) = json else { continue };
                let command: Command = match serde_json::from_str(&json) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(pipeline_id = %id, error = %e, "ignoring a malformed command");
                        continue;
                    }
                };
                tracing::info!(pipeline_id = %id, ?command, "carrying out a forwarded command");
                let (gov, id) = (governance.clone(), id.clone());
                tokio::spawn(async move {
                    let r = match command {
                        Command::Stop => gov.stop(&id).await.map(|_| ()),
                        Command::Continue(req) => gov.continue_pipeline(&id, req).await,
                        Command::Approve {
                            decision,
                            decision_id,
                        } => gov
                            .approve_forwarded(&id, decision, decision_id)
                            .await
                            .map(|_| ()),
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        tracing::warn!(pipeline_id = %id, error = %e, "a forwarded command failed");
                    }
                });
            }
        }
        Ok(())
    }

    /// Releases every lease this node holds (after a graceful shutdown suspended its
    /// pipelines), so other nodes take them over at once instead of after the lease expires.
    pub async fn release_all(&self) {
        for id in self.owned() {
            self.release(&id, false).await;
        }
    }
}

#[async_trait]
impl Ownership for RedisLeases {
    fn node_id(&self) -> &str {
        &self.table.node
    }

    async fn claim_new(&self, id: &PipelineId) -> Result<()> {
        match self.acquire(id).await? {
            Some(_) => {
                self.store.mark_active(id).await?;
                Ok(())
            }
            None => Err(Error::Conflict(format!(
                "pipeline {id} is already owned by another node"
            ))),
        }
    }

    async fn take_over(&self, id: &PipelineId) -> Result<bool> {
        let Some(token) = self.acquire(id).await? else {
            return Ok(false);
        };
        // its owner may have finished it and let go just now: then there is nothing to take
        // over (and it is the finisher's to archive, not ours)
        match governance_core::PipelineRegistry::get(&self.store, id).await {
            Ok(Some(rec)) if rec.status.is_terminal() => {
                // its owner died after finishing it but before queueing it for archiving
                if self.store.archived_by(id).await?.is_none() {
                    self.store.mark_unarchived(id).await?;
                }
                self.drop_lease(id, token).await;
                self.store.mark_inactive(id).await?;
                Ok(false)
            }
            Ok(Some(_)) => Ok(true),
            Ok(None) => {
                // claimed by a node that died before writing anything: nothing to resume
                self.drop_lease(id, token).await;
                self.store.mark_inactive(id).await?;
                Ok(false)
            }
            Err(e) => {
                self.drop_lease(id, token).await;
                Err(e)
            }
        }
    }

    async fn forward(&self, id: &PipelineId, command: &Command) -> Result<bool> {
        let json = serde_json::to_string(command)
            .map_err(|e| Error::Internal(format!("cannot encode a command: {e}")))?;
        let mut pipe = redis::pipe();
        // kept an hour at most: a command for a pipeline that ended meanwhile is never read
        pipe.cmd("SET")
            .arg(self.shared.keys(id).command())
            .arg(json)
            .arg("EX")
            .arg(3600)
            .ignore();
        pipe.cmd("PUBLISH")
            .arg(commands_channel(&self.shared.config.key_prefix))
            .arg(id.as_str())
            .ignore();
        self.shared
            .query::<()>(&pipe, "command forward", Effect::Idempotent)
            .await?;
        Ok(true)
    }

    async fn release(&self, id: &PipelineId, terminal: bool) {
        let Some(token) = self.table.held.lock().get(id).copied() else {
            return;
        };
        if terminal {
            // queue it for archiving before it leaves the active index, so a crash in between
            // leaves it findable by some node
            if let Err(e) = self.store.mark_unarchived(id).await {
                tracing::warn!(pipeline_id = %id, error = %e, "could not queue the pipeline for archiving");
            }
            if let Err(e) = self.store.mark_inactive(id).await {
                tracing::warn!(pipeline_id = %id, error = %e, "could not update the active index");
            }
            if let Some(tx) = &self.finished {
                let _ = tx.send(id.clone());
            }
        }
        self.drop_lease(id, token).await;
    }
}

impl RedisLeases {
    /// Forgets the lease here and deletes it in Redis (it expires by itself if that fails).
    async fn drop_lease(&self, id: &PipelineId, token: u64) {
        self.table.forget(id);
        let k = self.shared.keys(id);
        if let Err(e) = self
            .shared
            .run_script::<i64>(
                &self.shared.scripts.lease_release,
                &[k.owner()],
                &[format!("{}:{token}", self.table.node)],
                "lease release",
                Effect::Idempotent,
            )
            .await
        {
            tracing::warn!(pipeline_id = %id, error = %e, "could not release the lease (it expires by itself)");
        }
    }
}
