//! Versioned schema migrations, run when a [`PgStore`](crate::PgStore) opens.
//!
//! `governance_migrations (version, name, applied_at)` lists what was applied. Each migration
//! runs in its own transaction together with its row in that table, after taking
//! `pg_advisory_xact_lock` on a key of the schema: several nodes starting at once queue on
//! the lock, and each finds the versions the first one applied and skips them. A database
//! whose newest applied version is higher than this build knows is refused with both
//! versions in the message (an older build must not write a newer schema).

use governance_core::{Error, Result};

use crate::errors::{BACKEND, OpError};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Advisory lock class of the migrations (the second key is a hash of the schema).
const MIGRATION_LOCK: i32 = 0x676f_7631;

/// `(version, name, SQL)` in order.
const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "ledger, checkpoints, registry, exchanges, leases", V1)];

const V1: &str = r"
CREATE TABLE ledger (
    pipeline_id text NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    type text NOT NULL,
    agent_id text,
    ts bigint NOT NULL,
    data text NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (pipeline_id, seq)
);
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit ledger is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

CREATE TABLE checkpoints (
    id bigserial PRIMARY KEY,
    pipeline_id text NOT NULL,
    seq bigint NOT NULL,
    status text NOT NULL,
    is_final boolean NOT NULL,
    created_at bigint NOT NULL,
    digest bytea NOT NULL,
    body text NOT NULL
);
CREATE INDEX checkpoints_latest ON checkpoints (pipeline_id, seq DESC, id DESC);

CREATE TABLE pipelines (
    id text PRIMARY KEY,
    status text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    record text NOT NULL
);
CREATE INDEX pipelines_by_status ON pipelines (status, created_at DESC, id DESC);
CREATE INDEX pipelines_by_creation ON pipelines (created_at DESC, id DESC);

CREATE TABLE llm_exchanges (
    id bigserial PRIMARY KEY,
    pipeline_id text NOT NULL,
    agent_id text NOT NULL,
    recorded_at bigint NOT NULL,
    digest bytea NOT NULL,
    request text NOT NULL,
    response text NOT NULL,
    UNIQUE (pipeline_id, digest)
);

CREATE SEQUENCE lease_tokens;
CREATE TABLE leases (
    pipeline_id text PRIMARY KEY,
    owner text NOT NULL,
    token bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX leases_by_owner ON leases (owner);

CREATE TABLE commands (
    pipeline_id text PRIMARY KEY,
    command text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
";

/// Applies every migration this database lacks; returns the versions applied now.
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Client,
    schema: Option<&str>,
    target: &str,
) -> Result<Vec<i32>> {
    let lock_key = format!("governance-migrations:{}", schema.unwrap_or(""));
    let fail = |doing: &str, e: tokio_postgres::Error| OpError::Pg(e).into_error(target, doing);
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(|e| fail("begin a migration", e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&MIGRATION_LOCK, &lock_key],
        )
        .await
        .map_err(|e| fail("lock the migrations", e))?;
        if let Some(schema) = schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(|e| fail("create the schema", e))?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS governance_migrations (\
                 version integer PRIMARY KEY, name text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(|e| fail("create the migrations table", e))?;
        let newest: Option<i32> = tx
            .query_one("SELECT max(version) FROM governance_migrations", &[])
            .await
            .map_err(|e| fail("read the schema version", e))?
            .get(0);
        let newest = newest.unwrap_or(0);
        if newest > SCHEMA_VERSION {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "{target}: the database has schema version {newest}, newer than this \
                     build's {SCHEMA_VERSION}: upgrade governance"
                ),
                false,
            ));
        }
        if version <= newest {
            tx.commit().await.map_err(|e| fail("end a migration", e))?;
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| fail(&format!("apply migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO governance_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .map_err(|e| fail("record a migration", e))?;
        tx.commit()
            .await
            .map_err(|e| fail(&format!("commit migration {version}"), e))?;
        tracing::info!(target_db = %target, version, name, "applied a schema migration");
        applied.push(version);
    }
    Ok(applied)
}

/// The newest applied schema version (0 when none).
pub(crate) async fn version(client: &deadpool_postgres::Client, target: &str) -> Result<i32> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('governance_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| OpError::Pg(e).into_error(target, "read the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM governance_migrations", &[])
        .await
        .map_err(|e| OpError::Pg(e).into_error(target, "read the schema version"))?
        .get(0);
    Ok(v.unwrap_or(0))
}
