//! The raw-PostgreSQL limit for `scripts/bench`: copies every row that `governance bench
//! --database-url URL --pg-schema SRC` left (ledger, checkpoints, registry) into a fresh schema
//! DST with the same tables, indexes and append-only triggers, with `synchronous_commit=on`
//! (the durability the engine's writes have), using prepared single-row `INSERT`s, `--batch`
//! rows per transaction (default 1,000), pipelined on one connection, in the order the engine
//! wrote them. Only the inserts are timed. DST is dropped at the end. Prints one JSON object:
//! `{"rows": n, "seconds": s, "rows_per_s": r, "batch": b, "tables": {"ledger": n, ...}}`.
//!
//! `cargo run --release -p governance-benches --example raw_postgres -- URL SRC DST [--batch N]`

use std::time::Instant;

use futures::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

type Row = Vec<Box<dyn ToSql + Sync + Send>>;

/// The rows of one table, typed, in write order.
async fn rows(client: &Client, src: &str, table: &str) -> Result<Vec<Row>, tokio_postgres::Error> {
    let out = match table {
        "ledger" => client
            .query(
                &format!(
                    "SELECT pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash \
                     FROM {src}.ledger ORDER BY ts, pipeline_id, seq"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| -> Row {
                vec![
                    Box::new(r.get::<_, String>(0)),
                    Box::new(r.get::<_, i64>(1)),
                    Box::new(r.get::<_, String>(2)),
                    Box::new(r.get::<_, Option<String>>(3)),
                    Box::new(r.get::<_, i64>(4)),
                    Box::new(r.get::<_, String>(5)),
                    Box::new(r.get::<_, Vec<u8>>(6)),
                    Box::new(r.get::<_, Vec<u8>>(7)),
                ]
            })
            .collect(),
        "checkpoints" => client
            .query(
                &format!(
                    "SELECT pipeline_id, seq, status, is_final, created_at, digest, body \
                     FROM {src}.checkpoints ORDER BY id"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| -> Row {
                vec![
                    Box::new(r.get::<_, String>(0)),
                    Box::new(r.get::<_, i64>(1)),
                    Box::new(r.get::<_, String>(2)),
                    Box::new(r.get::<_, bool>(3)),
                    Box::new(r.get::<_, i64>(4)),
                    Box::new(r.get::<_, Vec<u8>>(5)),
                    Box::new(r.get::<_, String>(6)),
                ]
            })
            .collect(),
        _ => client
            .query(
                &format!(
                    "SELECT id, status, created_at, updated_at, record FROM {src}.pipelines \
                     ORDER BY created_at, id"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| -> Row {
                vec![
                    Box::new(r.get::<_, String>(0)),
                    Box::new(r.get::<_, String>(1)),
                    Box::new(r.get::<_, i64>(2)),
                    Box::new(r.get::<_, i64>(3)),
                    Box::new(r.get::<_, String>(4)),
                ]
            })
            .collect(),
    };
    Ok(out)
}

fn insert_sql(dst: &str, table: &str) -> String {
    match table {
        "ledger" => format!(
            "INSERT INTO {dst}.ledger (pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        "checkpoints" => format!(
            "INSERT INTO {dst}.checkpoints (pipeline_id, seq, status, is_final, created_at, digest, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
        _ => format!(
            "INSERT INTO {dst}.pipelines (id, status, created_at, updated_at, record) \
             VALUES ($1, $2, $3, $4, $5)"
        ),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(src), Some(dst)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: raw_postgres URL SRC_SCHEMA DST_SCHEMA [--batch N]".into());
    };
    let mut batch = 1000_usize;
    while let Some(a) = args.next() {
        if a == "--batch" {
            batch = args.next().ok_or("--batch needs a number")?.parse()?;
        }
    }
    let (mut client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "SET synchronous_commit = on; DROP SCHEMA IF EXISTS {dst} CASCADE; CREATE SCHEMA {dst}; \
             CREATE TABLE {dst}.ledger (LIKE {src}.ledger INCLUDING ALL); \
             CREATE TABLE {dst}.checkpoints (LIKE {src}.checkpoints INCLUDING ALL); \
             CREATE TABLE {dst}.pipelines (LIKE {src}.pipelines INCLUDING ALL); \
             CREATE TRIGGER ledger_no_update BEFORE UPDATE ON {dst}.ledger \
               FOR EACH ROW EXECUTE FUNCTION {src}.ledger_append_only(); \
             CREATE TRIGGER ledger_no_delete BEFORE DELETE ON {dst}.ledger \
               FOR EACH ROW EXECUTE FUNCTION {src}.ledger_append_only();"
        ))
        .await?;
    let tables = ["ledger", "checkpoints", "pipelines"];
    let mut loaded = Vec::new();
    for t in tables {
        loaded.push((t, rows(&client, &src, t).await?));
    }
    let total: usize = loaded.iter().map(|(_, r)| r.len()).sum();
    let started = Instant::now();
    for (t, rows) in &loaded {
        let stmt = client.prepare(&insert_sql(&dst, t)).await?;
        for chunk in rows.chunks(batch) {
            let tx = client.transaction().await?;
            try_join_all(chunk.iter().map(|r| {
                let params: Vec<&(dyn ToSql + Sync)> = r
                    .iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let (tx, stmt) = (&tx, &stmt);
                async move { tx.execute(stmt, &params).await }
            }))
            .await?;
            tx.commit().await?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    client
        .batch_execute(&format!("DROP SCHEMA {dst} CASCADE"))
        .await?;
    let counts: Vec<String> = loaded
        .iter()
        .map(|(t, r)| format!("\"{t}\": {}", r.len()))
        .collect();
    println!(
        "{{\"rows\": {total}, \"seconds\": {seconds:.6}, \"rows_per_s\": {:.1}, \"batch\": {batch}, \"tables\": {{{}}}}}",
        total as f64 / seconds.max(1e-9),
        counts.join(", ")
    );
    Ok(())
}
