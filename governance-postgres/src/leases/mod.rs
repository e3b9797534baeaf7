//! [`PgLeases`]: pipeline ownership of several server nodes sharing one PostgreSQL database,
//! with fencing tokens checked by the database inside every write's own transaction.
//!
//! # The protocol
//! - **Claim**: a node that spawns a pipeline inserts its lease row
//!   `leases (pipeline_id, owner, token, expires_at)`; the token comes from the sequence
//!   `lease_tokens`, so it only ever grows and is never reused. The expiry is the database's
//!   clock (`clock_timestamp()`), so nodes' clocks cannot disagree about it.
//! - **Renew**: every `lease / 3` the node extends all its leases in one `UPDATE … WHERE
//!   token = <its token>`; a row whose token changed (taken over) is lost.
//! - **Fence**: every write of a pipeline (ledger, checkpoint, record, a status change) reads
//!   the lease row `FOR SHARE` in its own transaction and is refused with
//!   [`Error::Fenced`](governance_core::Error::Fenced), writing nothing, when the token
//!   differs from the writer's. A takeover's `UPDATE` of the row waits for writes in flight
//!   and every later write sees the new token: an old owner cannot write after it.
//! - **Take over**: every `lease / 2` each node lists the pipelines that are not terminal
//!   and whose lease is missing or expired, and claims them with `INSERT … ON CONFLICT DO
//!   UPDATE … WHERE expires_at < clock_timestamp()`: at most one node wins (a new token) and
//!   resumes the pipeline from its last checkpoint, the ledger and the blackboard in Redis
//!   ([`Governance::adopt`]).
//! - **Commands**: `stop` / `continue` on a node that does not run the pipeline are stored
//!   in `commands` and announced with `NOTIFY`; the owner takes them (`DELETE … RETURNING`)
//!   when woken and at every renewal (a notification can be missed while reconnecting).
//! - **Events**: a fenced store's appends `NOTIFY` the pipeline and `seq` range (delivered at
//!   `COMMIT`, so never for a write that was rolled back); the other nodes read those entries
//!   from the ledger and relay them into their live feeds ([`Governance::relay`]).
//!   At most once, like Redis pub/sub: a client that reconnects with `since=<seq>` replays
//!   what it missed from the ledger.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governance_core::{Command, Error, Governance, Ownership, PipelineId, PipelineStatus, Result};
use tokio_util::sync::CancellationToken;

mod relay;

use crate::errors::OpError;
use crate::fence::LeaseTable;
use crate::store::PgStore;

/// Pipeline ownership leases of one server node on PostgreSQL (see the module docs).
#[derive(Clone)]
pub struct PgLeases {
    store: PgStore,
    table: Arc<LeaseTable>,
    lease: Duration,
    channels: Channels,
}

/// The notification channels of one schema.
#[derive(Debug, Clone)]
struct Channels {
    events: String,
    commands: String,
}

impl std::fmt::Debug for PgLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeases")
            .field("node", &self.table.node)
            .field("lease", &self.lease)
            .field("owned", &self.table.held.lock().len())
            .finish_non_exhaustive()
    }
}

fn terminal_statuses() -> Vec<String> {
    PipelineStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str().to_owned())
        .collect()
}

impl PgStore {
    /// Cluster mode: ownership leases for the node `node_id`, and a store whose writes are
    /// fenced by them and announce their events to the other nodes.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid node id or a lease shorter than 300 ms.
    pub fn cluster(&self, node_id: &str, lease: Duration) -> Result<(PgLeases, PgStore)> {
        governance_core::validate_id("node", node_id)?;
        if lease < Duration::from_millis(300) {
            return Err(Error::config(
                "GOVERNANCE_LEASE_MS",
                "a lease must be at least 300 ms",
            ));
        }
        let schema = self.config.schema.as_deref().unwrap_or("public");
        let channels = Channels {
            events: format!("gov_events:{schema}"),
            commands: format!("gov_commands:{schema}"),
        };
        let table = Arc::new(LeaseTable::new(node_id));
        let mut fenced = self.clone();
        fenced.leases = Some(table.clone());
        fenced.notify = Some((channels.events.clone(), node_id.to_owned()));
        Ok((
            PgLeases {
                store: self.clone(),
                table,
                lease,
                channels,
            },
            fenced,
        ))
    }
}

impl PgLeases {
    /// The lease duration.
    #[must_use]
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Pipelines this node owns now.
    #[must_use]
    pub fn owned(&self) -> Vec<PipelineId> {
        self.table.owned().into_iter().map(|(id, _)| id).collect()
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Claims `id` when it has no lease or an expired one; the new token, or `None` when
    /// another node holds it.
    async fn acquire(&self, id: &PipelineId) -> Result<Option<i64>> {
        let (p, node, secs) = (id.to_string(), self.table.node.clone(), self.lease_secs());
        let token: Option<i64> = self
            .store
            .db
            .write("claim a lease", &move |tx| {
                let (p, node) = (p.clone(), node.clone());
                Box::pin(async move {
                    let won = tx
                        .query_opt(
                            "INSERT INTO leases (pipeline_id, owner, token, expires_at) \
                             VALUES ($1, $2, nextval('lease_tokens'), \
                                     clock_timestamp() + make_interval(secs => $3)) \
                             ON CONFLICT (pipeline_id) DO UPDATE SET owner = EXCLUDED.owner, \
                               token = EXCLUDED.token, expires_at = EXCLUDED.expires_at \
                             WHERE leases.expires_at < clock_timestamp() \
                             RETURNING token",
                            &[&p, &node, &secs],
                        )
                        .await?;
                    if let Some(row) = won {
                        return Ok(Some(row.get(0)));
                    }
                    // a repeat whose first attempt won (its reply was lost) finds its own lease
                    let held = tx
                        .query_opt(
                            "SELECT owner, token FROM leases WHERE pipeline_id = $1",
                            &[&p],
                        )
                        .await?;
                    Ok(held.and_then(|r| (r.get::<_, &str>(0) == node).then(|| r.get(1))))
                })
            })
            .await?;
        if let Some(t) = token {
            self.table.held.lock().insert(id.clone(), t);
        }
        Ok(token)
    }

    /// Renews every lease this node holds once; returns the pipelines it lost.
    ///
    /// # Errors
    /// Backend errors (the leases are kept until a renewal shows them lost).
    pub async fn renew_all(&self) -> Result<Vec<PipelineId>> {
        let held = self.table.owned();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64)> = held.iter().map(|(id, t)| (id.to_string(), *t)).collect();
        let secs = self.lease_secs();
        // one autocommitted statement per lease (pipelined on one connection), never one
        // statement over many rows: a statement that holds one row lock and waits for a
        // writer's `FOR SHARE` on another could deadlock with a group commit that locks
        // several pipelines' leases in another order
        let kept: Vec<String> = self
            .store
            .db
            .read("renew leases", &move |c| {
                let rows = rows.clone();
                Box::pin(async move {
                    let stmt = c
                        .prepare_cached(
                            "UPDATE leases SET expires_at = clock_timestamp() + make_interval(secs => $3) \
                             WHERE pipeline_id = $1 AND token = $2",
                        )
                        .await?;
                    let stmt = &stmt;
                    let renewed = futures::future::try_join_all(rows.iter().map(|(p, t)| async move {
                        Ok::<_, tokio_postgres::Error>((p, c.execute(stmt, &[p, t, &secs]).await?))
                    }))
                    .await?;
                    Ok(renewed
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(p, _)| p.clone())
                        .collect())
                })
            })
            .await?;
        let mut lost = Vec::new();
        for (id, token) in held {
            if !kept.iter().any(|k| k == id.as_str()) && self.table.token(&id) == Some(token) {
                tracing::warn!(pipeline_id = %id, "lease lost to another node");
                self.table.forget(&id);
                lost.push(id);
            }
        }
        Ok(lost)
    }

    /// One takeover scan: adopts every pipeline that is not terminal and whose owner's lease
    /// is gone. Returns the pipelines this node took over.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn scan(&self, governance: &Governance) -> Result<Vec<PipelineId>> {
        let terminal = terminal_statuses();
        let orphans: Vec<String> = self
            .store
            .db
            .read("scan for orphaned pipelines", &move |c| {
                let terminal = terminal.clone();
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT p.id FROM pipelines p LEFT JOIN leases l ON l.pipeline_id = p.id \
                             WHERE p.status <> ALL($1::text[]) \
                               AND (l.pipeline_id IS NULL OR l.expires_at < clock_timestamp()) \
                             ORDER BY p.created_at LIMIT 500",
                            &[&terminal],
                        )
                        .await?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                })
            })
            .await?;
        let mut adopted = Vec::new();
        for id in orphans {
            let Ok(id) = PipelineId::new(&id) else {
                continue;
            };
            if self.table.token(&id).is_some() {
                continue;
            }
            match governance.adopt(&id).await {
                Ok(true) => {
                    tracing::info!(pipeline_id = %id, node = %self.table.node, "took the pipeline over");
                    adopted.push(id);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(pipeline_id = %id, error = %e, "takeover failed"),
            }
        }
        Ok(adopted)
    }

    /// Deletes expired leases of pipelines that ended or were never written, and commands
    /// older than an hour (nobody will read them).
    async fn clean_up(&self) -> Result<()> {
        let terminal = terminal_statuses();
        self.store
            .db
            .write("clean up leases", &move |tx| {
                let terminal = terminal.clone();
                Box::pin(async move {
                    tx.execute(
                        "DELETE FROM leases l WHERE l.expires_at < clock_timestamp() - interval '1 minute' \
                         AND NOT EXISTS (SELECT 1 FROM pipelines p WHERE p.id = l.pipeline_id \
                                         AND p.status <> ALL($1::text[]))",
                        &[&terminal],
                    )
                    .await?;
                    tx.execute(
                        "DELETE FROM commands WHERE created_at < now() - interval '1 hour'",
                        &[],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Runs this node's lease work until `cancel`: renews its leases every `lease / 3` (and
    /// takes forwarded commands), scans for pipelines to take over every `lease / 2`, and
    /// relays other nodes' events into `governance`'s live feed. Spawn it once per node.
    pub async fn run(self, governance: Governance, cancel: CancellationToken) {
        let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
        let listener = tokio::spawn(crate::listen::listen(
            self.store.config.clone(),
            vec![self.channels.events.clone(), self.channels.commands.clone()],
            tx,
            cancel.clone(),
        ));
        // notifications are handled by a task of their own, so a burst of relayed events (each
        // a ledger read) never delays a renewal
        let relay = {
            let (me, gov) = (self.clone(), governance.clone());
            tokio::spawn(async move {
                while let Some((channel, payload)) = notes.recv().await {
                    me.on_note(&gov, &channel, &payload).await;
                }
            })
        };
        let mut renew = tokio::time::interval(self.lease / 3);
        let mut scan = tokio::time::interval(self.lease / 2);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut scans = 0u32;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = renew.tick() => {
                    if let Err(e) = self.renew_all().await {
                        tracing::warn!(error = %e, "lease renewal failed");
                    }
                    if let Err(e) = self.run_commands(&governance, self.owned()).await {
                        tracing::warn!(error = %e, "reading forwarded commands failed");
                    }
                }
                _ = scan.tick() => {
                    if let Err(e) = self.scan(&governance).await {
                        tracing::warn!(error = %e, "takeover scan failed");
                    }
                    scans += 1;
                    if scans.is_multiple_of(100)
                        && let Err(e) = self.clean_up().await
                    {
                        tracing::warn!(error = %e, "cleaning up leases failed");
                    }
                }
            }
        }
        listener.abort();
        relay.abort();
    }

    /// Releases every lease this node holds (after a graceful shutdown suspended its
    /// pipelines), so other nodes take them over at once instead of after the lease expires.
    pub async fn release_all(&self) {
        for id in self.owned() {
            self.release(&id, false).await;
        }
    }

    /// Forgets the lease here and deletes its row (it expires by itself if that fails).
    async fn drop_lease(&self, id: &PipelineId, token: i64) {
        self.table.forget(id);
        let p = id.to_string();
        let r = self
            .store
            .db
            .write("release a lease", &move |tx| {
                let p = p.clone();
                Box::pin(async move {
                    tx.execute(
                        "DELETE FROM leases WHERE pipeline_id = $1 AND token = $2",
                        &[&p, &token],
                    )
                    .await?;
                    Ok::<(), OpError>(())
                })
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(pipeline_id = %id, error = %e, "could not release the lease (it expires by itself)");
        }
    }
}

#[async_trait]
impl Ownership for PgLeases {
    fn node_id(&self) -> &str {
        &self.table.node
    }

    async fn claim_new(&self, id: &PipelineId) -> Result<()> {
        match self.acquire(id).await? {
            Some(_) => Ok(()),
            None => Err(Error::Conflict(format!(
                "pipeline {id} is already owned by another node"
            ))),
        }
    }

    async fn take_over(&self, id: &PipelineId) -> Result<bool> {
        let Some(token) = self.acquire(id).await? else {
            return Ok(false);
        };
        match governance_core::PipelineRegistry::get(&self.store, id).await {
            Ok(Some(rec)) if !rec.status.is_terminal() => Ok(true),
            Ok(_) => {
                // it ended meanwhile, or its owner died before writing anything
                self.drop_lease(id, token).await;
                Ok(false)
            }
            Err(e) => {
                self.drop_lease(id, token).await;
                Err(e)
            }
        }
    }

    async fn release(&self, id: &PipelineId, _terminal: bool) {
        if let Some(token) = self.table.token(id) {
            self.drop_lease(id, token).await;
        }
    }

    async fn forward(&self, id: &PipelineId, command: &Command) -> Result<bool> {
        let json = serde_json::to_string(command)
            .map_err(|e| Error::Internal(format!("cannot encode a command: {e}")))?;
        let (p, channel) = (id.to_string(), self.channels.commands.clone());
        self.store
            .db
            .write("forward a command", &move |tx| {
                let (p, channel, json) = (p.clone(), channel.clone(), json.clone());
                Box::pin(async move {
                    tx.execute(
                        "INSERT INTO commands (pipeline_id, command) VALUES ($1, $2) \
                         ON CONFLICT (pipeline_id) DO UPDATE SET command = EXCLUDED.command, \
                         created_at = now()",
                        &[&p, &json],
                    )
                    .await?;
                    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &p])
                        .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(true)
    }
}
