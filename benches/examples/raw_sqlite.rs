//! The raw-SQLite limit for `scripts/bench`: copies every row that `governance bench --db SRC`
//! wrote (ledger, checkpoints, registry, ...) into a fresh file DST with the same schema
//! (tables, indexes, triggers, read from SRC) and the same pragmas as `governance-sqlite`'s
//! writer (WAL, `synchronous=FULL`, `busy_timeout=5000`, `foreign_keys=ON`), using prepared
//! statements and `--batch` rows per transaction (default 1,000), in the order the engine wrote
//! them. Only the inserts are timed. Prints one JSON object:
//! `{"rows": n, "seconds": s, "rows_per_s": r, "batch": b, "tables": {"ledger": n, ...}}`.
//!
//! `cargo run --release -p governance-benches --example raw_sqlite -- SRC DST [--batch N]`

use std::path::PathBuf;
use std::time::Instant;

use rusqlite::types::Value;

/// One table of SRC: its name, column count and rows in write order.
struct Table {
    name: String,
    columns: usize,
    rows: Vec<Vec<Value>>,
}

/// The order in which the engine wrote a table's rows (best known column), else storage order.
fn order_by(table: &str) -> &'static str {
    match table {
        "ledger" => " ORDER BY ts, pipeline_id, seq",
        "pipelines" => " ORDER BY created_at, id",
        _ => " ORDER BY rowid",
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(src), Some(dst)) = (args.next(), args.next()) else {
        return Err("usage: raw_sqlite SRC DST [--batch N]".into());
    };
    let mut batch = 1000_usize;
    while let Some(a) = args.next() {
        if a == "--batch" {
            batch = args.next().ok_or("--batch needs a number")?.parse()?;
        }
    }
    let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));

    let source = rusqlite::Connection::open(&src)?;
    let mut schema: Vec<(String, String)> = source
        .prepare(
            "SELECT type, sql FROM sqlite_master WHERE sql IS NOT NULL \
             AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = source
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut tables = Vec::new();
    for name in names {
        let sql = format!("SELECT * FROM \"{name}\"");
        // WITHOUT ROWID tables have no rowid to order by
        let ordered = format!("{sql}{}", order_by(&name));
        let mut stmt = source.prepare(&ordered).or_else(|_| source.prepare(&sql))?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| (0..columns).map(|i| r.get::<_, Value>(i)).collect())?
            .collect::<Result<Vec<Vec<Value>>, _>>()?;
        tables.push(Table {
            name,
            columns,
            rows,
        });
    }
    drop(source);

    let _ = std::fs::remove_file(&dst);
    let mut conn = rusqlite::Connection::open(&dst)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    assert!(mode.eq_ignore_ascii_case("wal"), "journal_mode {mode}");
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    schema.sort_by_key(|(kind, _)| kind != "table");
    for (_, sql) in &schema {
        conn.execute_batch(sql)?;
    }

    let total: usize = tables.iter().map(|t| t.rows.len()).sum();
    let start = Instant::now();
    for t in &tables {
        let placeholders = vec!["?"; t.columns].join(", ");
        let insert = format!("INSERT INTO \"{}\" VALUES ({placeholders})", t.name);
        for chunk in t.rows.chunks(batch.max(1)) {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(&insert)?;
                for row in chunk {
                    stmt.execute(rusqlite::params_from_iter(row.iter()))?;
                }
            }
            tx.commit()?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rows_per_s = total as f64 / seconds;
    let counts: serde_json::Map<String, serde_json::Value> = tables
        .iter()
        .map(|t| (t.name.clone(), t.rows.len().into()))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "rows": total,
            "seconds": seconds,
            "rows_per_s": rows_per_s,
            "batch": batch,
            "tables": counts,
        })
    );
    Ok(())
}
