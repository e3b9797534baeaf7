//! [`PgStore`]: the ledger, checkpoints, registry and LLM exchanges on PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use governance_core::{
    Checkpoint, CheckpointStore, Error, Event, LedgerRow, LedgerStore, PipelineFilter, PipelineId,
    PipelineRecord, PipelineRegistry, PipelineStatus, Result, StateStore, StatusChange,
};

use crate::config::PgConfig;
use crate::db::Db;
use crate::errors::{OpError, json_error};
use crate::fence::LeaseTable;
use crate::group::Groups;
use crate::ledger::{self, Fencing};
use crate::ops::{Job, Op};
use crate::registry;
use crate::rows::{CheckpointRow, ExchangeRow, RecordRow};
use crate::schema;

/// The audit ledger, checkpoints, pipeline registry and recorded LLM exchanges in one
/// PostgreSQL database (the system of record; see the crate docs).
///
/// Cheap to clone (clones share the pool). Implements [`StateStore`] (a status change is one
/// transaction) and [`governance_core::ExchangeStore`].
///
/// # Durability
/// Every write returns `Ok` after its `COMMIT`; with the server's default
/// `synchronous_commit = on` that means the WAL record is flushed to disk.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) db: Db,
    pub(crate) config: Arc<PgConfig>,
    pub(crate) leases: Option<Arc<LeaseTable>>,
    /// `(channel, node)` of the notifications of appended events (cluster mode).
    pub(crate) notify: Option<(String, String)>,
    /// The group-commit writers every write goes through.
    pub(crate) groups: Arc<Groups>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.db.target)
            .field("fenced", &self.leases.is_some())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (riding out a server that is not up yet for
    /// [`PgConfig::outage_timeout`]) and applies the schema migrations this database lacks.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL or schema name that does not parse;
    /// [`Error::Backend`] naming the redacted URL when the server cannot be reached, refuses
    /// the credentials, or holds a newer schema.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let db = Db::new(&config)?;
        let target = db.target.clone();
        let mut client = db.get_client("connect").await?;
        schema::migrate(&mut client, config.schema.as_deref(), &target).await?;
        drop(client);
        tracing::debug!(target_db = %target, "opened governance-postgres store");
        let groups = Arc::new(Groups::start(&db, writers(&config)));
        Ok(Self {
            db,
            config: Arc::new(config),
            leases: None,
            notify: None,
            groups,
        })
    }

    /// Connects to a database that already holds a governance schema, without migrating it
    /// (for read-only tools such as `governance ledger verify`).
    ///
    /// # Errors
    /// As [`connect`](Self::connect), and [`Error::Backend`] when the database (schema) holds
    /// no governance tables or a newer schema than this build's.
    pub async fn connect_existing(config: PgConfig) -> Result<Self> {
        let db = Db::new(&config)?;
        let client = db.get_client("connect").await?;
        let version = schema::version(&client, &db.target).await?;
        drop(client);
        if version == 0 {
            return Err(Error::backend(
                crate::errors::BACKEND,
                format!("{}: not a governance database (no schema)", db.target),
                false,
            ));
        }
        if version > schema::SCHEMA_VERSION {
            return Err(Error::backend(
                crate::errors::BACKEND,
                format!(
                    "{}: the database has schema version {version}, newer than this build's {}: upgrade governance",
                    db.target,
                    schema::SCHEMA_VERSION
                ),
                false,
            ));
        }
        let groups = Arc::new(Groups::start(&db, writers(&config)));
        Ok(Self {
            db,
            config: Arc::new(config),
            leases: None,
            notify: None,
            groups,
        })
    }

    /// The schema version of the database (after [`connect`](Self::connect): this build's
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION)).
    ///
    /// # Errors
    /// [`Error::Backend`] when it cannot be read.
    pub async fn schema_version(&self) -> Result<i32> {
        let client = self.db.get_client("read the schema version").await?;
        schema::version(&client, &self.db.target).await
    }

    /// The redacted URL (and schema) this store writes to.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.db.target
    }

    /// The fencing of a write of `pipelines`: this node's tokens (refused at once when it
    /// holds none) and the notification of appended events.
    fn fencing(&self, pipelines: &BTreeSet<String>) -> Result<Fencing> {
        let mut tokens = Vec::new();
        if let Some(table) = &self.leases {
            for p in pipelines {
                let id = PipelineId::new(p)?;
                match table.token(&id) {
                    Some(t) => tokens.push((p.clone(), t)),
                    None => {
                        return Err(Error::Fenced {
                            pipeline: p.clone(),
                        });
                    }
                }
            }
        }
        Ok(Fencing {
            tokens,
            notify: self.notify.clone(),
        })
    }

    async fn run(&self, _doing: &str, pipelines: BTreeSet<String>, op: Op) -> Result<()> {
        let fencing = self.fencing(&pipelines)?;
        self.groups
            .submit(|reply| Job {
                pipelines,
                fencing,
                op,
                reply,
            })
            .await
    }

    /// Records one LLM exchange (request and response JSON) of `pipeline` by `agent`.
    /// Repeating an identical exchange stores it once.
    ///
    /// # Errors
    /// [`Error::Backend`] when the write fails.
    pub async fn record_exchange(
        &self,
        pipeline: &PipelineId,
        agent: &governance_core::AgentId,
        request: &serde_json::Value,
        response: &serde_json::Value,
    ) -> Result<()> {
        let row = ExchangeRow::new(pipeline, agent.as_str(), request, response)?;
        self.run("record an LLM exchange", BTreeSet::new(), Op::Exchange(row))
            .await
    }

    /// The recorded exchanges of `pipeline` in recording order: `(agent, request, response)`.
    ///
    /// # Errors
    /// [`Error::Backend`] when the read fails.
    pub async fn exchange_rows(
        &self,
        pipeline: &PipelineId,
    ) -> Result<Vec<(String, serde_json::Value, serde_json::Value)>> {
        let p = pipeline.to_string();
        let target = self.db.target.clone();
        self.db
            .read("read LLM exchanges", &move |c| {
                let (p, target) = (p.clone(), target.clone());
                Box::pin(async move {
                    let rows = c
                        .query(
                            "SELECT agent_id, request, response FROM llm_exchanges \
                             WHERE pipeline_id = $1 ORDER BY id",
                            &[&p],
                        )
                        .await?;
                    rows.into_iter()
                        .map(|r| {
                            let parse = |i: usize, what: &str| {
                                serde_json::from_str(r.get::<_, &str>(i))
                                    .map_err(|e| OpError::Rejected(json_error(&target, what, &e)))
                            };
                            Ok((
                                r.get(0),
                                parse(1, "an LLM request")?,
                                parse(2, "an LLM response")?,
                            ))
                        })
                        .collect()
                })
            })
            .await
    }

    async fn body<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        doing: &'static str,
        what: &'static str,
        sql: &'static str,
        key: String,
    ) -> Result<Option<T>> {
        let target = self.db.target.clone();
        self.db
            .read(doing, &move |c| {
                let (key, target) = (key.clone(), target.clone());
                Box::pin(async move {
                    let row = c.query_opt(sql, &[&key]).await?;
                    row.map(|r| {
                        serde_json::from_str(r.get::<_, &str>(0))
                            .map_err(|e| OpError::Rejected(json_error(&target, what, &e)))
                    })
                    .transpose()
                })
            })
            .await
    }

    async fn count_rows(&self, doing: &'static str, sql: &'static str, key: String) -> Result<i64> {
        self.db
            .read(doing, &move |c| {
                let key = key.clone();
                Box::pin(async move { Ok(c.query_one(sql, &[&key]).await?.get::<_, i64>(0)) })
            })
            .await
    }
}

/// Writer tasks of a store: a quarter of the pool (at least one), the rest for reads and
/// leases.
fn writers(config: &PgConfig) -> usize {
    (config.pool_size / 4).max(1)
}

fn one(p: &PipelineId) -> BTreeSet<String> {
    BTreeSet::from([p.to_string()])
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn append(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = events
            .iter()
            .map(LedgerRow::from_event)
            .collect::<Result<Vec<_>>>()?;
        let pipelines = rows.iter().map(|r| r.pipeline_id.clone()).collect();
        self.run("append to the ledger", pipelines, Op::Append(rows))
            .await
    }

    async fn read(&self, pipeline: &PipelineId, after: u64, limit: usize) -> Result<Vec<Event>> {
        let p = pipeline.clone();
        let target = self.db.target.clone();
        self.db
            .read("read the ledger", &move |c| {
                let (p, target) = (p.clone(), target.clone());
                Box::pin(async move {
                    ledger::read(c, &p, after, limit)
                        .await?
                        .into_iter()
                        .map(|e| {
                            e.map_err(|why| {
                                OpError::Rejected(Error::Internal(format!(
                                    "{target}: unreadable ledger {why}"
                                )))
                            })
                        })
                        .collect()
                })
            })
            .await
    }

    async fn last_seq(&self, pipeline: &PipelineId) -> Result<u64> {
        let n = self
            .count_rows(
                "read the ledger",
                "SELECT coalesce(max(seq), 0) FROM ledger WHERE pipeline_id = $1",
                pipeline.to_string(),
            )
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One `SELECT 1` on a pooled connection, not ridden out (a health check must answer).
    async fn ping(&self) -> Result<()> {
        self.db.ping().await
    }
}

#[async_trait]
impl CheckpointStore for PgStore {
    async fn save(&self, checkpoint: &Checkpoint) -> Result<()> {
        let row = CheckpointRow::new(checkpoint)?;
        self.run(
            "save a checkpoint",
            one(&checkpoint.record.id),
            Op::Save(row),
        )
        .await
    }

    async fn latest(&self, pipeline: &PipelineId) -> Result<Option<Checkpoint>> {
        self.body(
            "read checkpoints",
            "a checkpoint",
            "SELECT body FROM checkpoints WHERE pipeline_id = $1 ORDER BY seq DESC, id DESC LIMIT 1",
            pipeline.to_string(),
        )
        .await
    }

    async fn count(&self, pipeline: &PipelineId) -> Result<usize> {
        let n = self
            .count_rows(
                "count checkpoints",
                "SELECT count(*) FROM checkpoints WHERE pipeline_id = $1",
                pipeline.to_string(),
            )
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl PipelineRegistry for PgStore {
    async fn upsert(&self, record: &PipelineRecord) -> Result<()> {
        let row = RecordRow::new(record)?;
        self.run("write the registry", one(&record.id), Op::Upsert(row))
            .await
    }

    async fn get(&self, id: &PipelineId) -> Result<Option<PipelineRecord>> {
        self.body(
            "read the registry",
            "a pipeline record",
            "SELECT record FROM pipelines WHERE id = $1",
            id.to_string(),
        )
        .await
    }

    async fn list(&self, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
        registry::list(&self.db, filter).await
    }

    async fn count_by_status(&self) -> Result<Vec<(PipelineStatus, u64)>> {
        registry::count_by_status(&self.db).await
    }
}

#[async_trait]
impl StateStore for PgStore {
    /// One transaction: the fencing check, the events, the checkpoint and the record, or
    /// nothing.
    async fn commit(&self, change: StatusChange<'_>) -> Result<()> {
        change.validate()?;
        let rows = change
            .events
            .iter()
            .map(LedgerRow::from_event)
            .collect::<Result<Vec<_>>>()?;
        let checkpoint = CheckpointRow::new(change.checkpoint)?;
        let record = RecordRow::new(change.record)?;
        self.run(
            "commit a status change",
            one(change.pipeline()),
            Op::Commit(rows, checkpoint, record),
        )
        .await
    }
}
