//! Checking every pipeline's hash chain in a database file (`governance ledger verify`).

use std::fmt;
use std::path::{Path, PathBuf};

use governance_core::Result;
use rusqlite::{Connection, OpenFlags};

use crate::errors::{file_error, sqlite_error};
use crate::ledger::{GENESIS, LedgerRow};
use crate::schema::{check_not_newer, stored_version};

/// The first broken entry of one pipeline's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenEntry {
    /// The pipeline.
    pub pipeline_id: String,
    /// The `seq` of the first entry that does not verify.
    pub seq: u64,
    /// Why it does not verify.
    pub reason: String,
}

impl fmt::Display for BrokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pipeline {} seq {}: {}",
            self.pipeline_id, self.seq, self.reason
        )
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The file checked.
    pub path: PathBuf,
    /// Pipelines with at least one ledger entry.
    pub pipelines: u64,
    /// Ledger entries read.
    pub entries: u64,
    /// The first broken entry of every broken chain, ordered by pipeline id.
    pub broken: Vec<BrokenEntry>,
    /// Problems that do not break a chain but weaken the guarantees (e.g. the append-only
    /// triggers were dropped).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// Whether every chain verified.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.broken.is_empty()
    }

    /// The first broken entry (lowest pipeline id), if any.
    #[must_use]
    pub fn first_broken(&self) -> Option<&BrokenEntry> {
        self.broken.first()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first_broken() {
            None => write!(
                f,
                "{}: ledger intact ({} entries in {} pipelines)",
                self.path.display(),
                self.entries,
                self.pipelines
            )?,
            Some(first) => write!(
                f,
                "{}: ledger BROKEN in {} of {} pipelines; first broken entry: {first}",
                self.path.display(),
                self.broken.len(),
                self.pipelines
            )?,
        }
        for warning in &self.warnings {
            write!(f, "\nwarning: {warning}")?;
        }
        Ok(())
    }
}

/// Checks every pipeline's hash chain in the database at `path` (opened read-only): each
/// entry's `seq` follows the previous one, its `prev_hash` is the previous entry's hash and its
/// hash matches its contents (see the crate docs for the hash).
///
/// # Errors
/// [`governance_core::Error::Backend`] naming the file when it cannot be opened, is not a
/// governance database, or has a newer schema. A broken chain is not an error: it is in the
/// report.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(file_error(path, "no such database file", false));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| sqlite_error(path, "open", &e))?;
    let version = stored_version(&conn, path)?;
    check_not_newer(path, version)?;
    if version == 0 {
        return Err(file_error(
            path,
            "not a governance database (no schema)",
            false,
        ));
    }
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        pipelines: 0,
        entries: 0,
        broken: Vec::new(),
        warnings: missing_triggers(&conn).map_err(|e| sqlite_error(path, "read the schema", &e))?,
    };
    walk(&conn, &mut report).map_err(|e| sqlite_error(path, "read the ledger", &e))?;
    Ok(report)
}

fn missing_triggers(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for name in ["ledger_no_update", "ledger_no_delete"] {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
            [name],
            |r| r.get(0),
        )?;
        if n == 0 {
            out.push(format!(
                "the append-only trigger {name} is missing: the ledger can be changed"
            ));
        }
    }
    Ok(out)
}

fn walk(conn: &Connection, report: &mut VerifyReport) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash \
         FROM ledger ORDER BY pipeline_id, seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut current: Option<String> = None;
    let mut expected_seq = 1_i64;
    let mut prev: Vec<u8> = GENESIS.to_vec();
    let mut broken = false;
    while let Some(r) = rows.next()? {
        report.entries += 1;
        let row = LedgerRow {
            pipeline_id: r.get(0)?,
            seq: r.get(1)?,
            kind: r.get(2)?,
            agent_id: r.get(3)?,
            ts: r.get(4)?,
            data: r.get(5)?,
        };
        let prev_hash: Vec<u8> = r.get(6)?;
        let hash: Vec<u8> = r.get(7)?;
        if current.as_deref() != Some(row.pipeline_id.as_str()) {
            report.pipelines += 1;
            current = Some(row.pipeline_id.clone());
            expected_seq = 1;
            prev = GENESIS.to_vec();
            broken = false;
        }
        if broken {
            continue;
        }
        let why = if row.seq != expected_seq {
            Some(format!(
                "expected seq {expected_seq}: entries {expected_seq}..{} are missing",
                row.seq - 1
            ))
        } else if prev_hash != prev {
            Some(if expected_seq == 1 {
                "prev_hash of the first entry is not the genesis hash".to_owned()
            } else {
                format!(
                    "prev_hash does not match the hash of entry {}",
                    expected_seq - 1
                )
            })
        } else if row.hash(&prev)[..] != hash[..] {
            Some("hash does not match the entry's contents (the entry was changed)".to_owned())
        } else {
            None
        };
        if let Some(reason) = why {
            broken = true;
            report.broken.push(BrokenEntry {
                pipeline_id: row.pipeline_id.clone(),
                seq: u64::try_from(row.seq).unwrap_or(0),
                reason,
            });
            continue;
        }
        expected_seq += 1;
        prev = hash;
    }
    Ok(())
}
