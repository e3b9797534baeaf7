//! Checking every pipeline's hash chain in the database (`governance ledger verify
//! --database-url`), with the same rules as SQLite's `verify`.

use std::fmt;

use governance_core::{LEDGER_GENESIS as GENESIS, LedgerRow, Result};

use crate::errors::OpError;
use crate::store::PgStore;

/// Rows read per round trip.
const PAGE: i64 = 5000;

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

/// What [`PgStore::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The redacted URL (and schema) checked.
    pub target: String,
    /// Pipelines with at least one ledger entry.
    pub pipelines: u64,
    /// Ledger entries read.
    pub entries: u64,
    /// The first broken entry of every broken chain, ordered by pipeline id.
    pub broken: Vec<BrokenEntry>,
    /// Problems that do not break a chain but weaken the guarantees (a dropped trigger).
    pub warnings: Vec<String>,
}

impl VerifyReport {
    /// Whether every chain verified.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.broken.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.broken.first() {
            None => write!(
                f,
                "{}: ledger intact ({} entries in {} pipelines)",
                self.target, self.entries, self.pipelines
            )?,
            Some(b) => write!(
                f,
                "{}: ledger BROKEN in {} of {} pipelines; first broken entry: pipeline {} seq {}: {}",
                self.target,
                self.broken.len(),
                self.pipelines,
                b.pipeline_id,
                b.seq,
                b.reason
            )?,
        }
        for w in &self.warnings {
            write!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

/// A walk over the chains in `(pipeline_id, seq)` order.
struct Walk {
    current: Option<String>,
    expected: i64,
    prev: Vec<u8>,
    broken: bool,
}

impl Walk {
    fn step(
        &mut self,
        report: &mut VerifyReport,
        row: &LedgerRow,
        prev_hash: &[u8],
        hash: Vec<u8>,
    ) {
        report.entries += 1;
        if self.current.as_deref() != Some(row.pipeline_id.as_str()) {
            report.pipelines += 1;
            self.current = Some(row.pipeline_id.clone());
            self.expected = 1;
            self.prev = GENESIS.to_vec();
            self.broken = false;
        }
        if self.broken {
            return;
        }
        let why = if row.seq != self.expected {
            Some(format!(
                "expected seq {}: entries {}..{} are missing",
                self.expected,
                self.expected,
                row.seq - 1
            ))
        } else if prev_hash != self.prev.as_slice() {
            Some(if self.expected == 1 {
                "prev_hash of the first entry is not the genesis hash".to_owned()
            } else {
                format!(
                    "prev_hash does not match the hash of entry {}",
                    self.expected - 1
                )
            })
        } else if row.hash(&self.prev)[..] != hash[..] {
            Some("hash does not match the entry's contents (the entry was changed)".to_owned())
        } else {
            None
        };
        match why {
            Some(reason) => {
                self.broken = true;
                report.broken.push(BrokenEntry {
                    pipeline_id: row.pipeline_id.clone(),
                    seq: u64::try_from(row.seq).unwrap_or(0),
                    reason,
                });
            }
            None => {
                self.expected += 1;
                self.prev = hash;
            }
        }
    }
}

impl PgStore {
    /// Checks every pipeline's hash chain: each entry's `seq` follows the previous one, its
    /// `prev_hash` is the previous entry's hash and its hash matches its contents. Also warns
    /// when an append-only trigger is missing. A broken chain is in the report, not an error.
    ///
    /// # Errors
    /// [`governance_core::Error::Backend`] when the ledger cannot be read.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let client = self.db.get_client("verify the ledger").await?;
        let target = self.db.target.clone();
        let fail =
            |e: tokio_postgres::Error| OpError::Pg(e).into_error(&target, "verify the ledger");
        let mut report = VerifyReport {
            target: target.clone(),
            pipelines: 0,
            entries: 0,
            broken: Vec::new(),
            warnings: Vec::new(),
        };
        for name in ["ledger_no_update", "ledger_no_delete"] {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = $1 \
                     AND tgrelid = to_regclass('ledger')",
                    &[&name],
                )
                .await
                .map_err(fail)?
                .get(0);
            if n == 0 {
                report.warnings.push(format!(
                    "the append-only trigger {name} is missing: the ledger can be changed"
                ));
            }
        }
        let mut walk = Walk {
            current: None,
            expected: 1,
            prev: GENESIS.to_vec(),
            broken: false,
        };
        let (mut after_p, mut after_s) = (String::new(), 0_i64);
        loop {
            let rows = client
                .query(
                    "SELECT pipeline_id, seq, type, agent_id, ts, data, prev_hash, hash FROM ledger \
                     WHERE (pipeline_id, seq) > ($1, $2) ORDER BY pipeline_id, seq LIMIT $3",
                    &[&after_p, &after_s, &PAGE],
                )
                .await
                .map_err(fail)?;
            let Some(last) = rows.last() else { break };
            (after_p, after_s) = (last.get(0), last.get(1));
            for r in &rows {
                let row = LedgerRow {
                    pipeline_id: r.get(0),
                    seq: r.get(1),
                    kind: r.get(2),
                    agent_id: r.get(3),
                    ts: r.get(4),
                    data: r.get(5),
                };
                let prev: Vec<u8> = r.get(6);
                walk.step(&mut report, &row, &prev, r.get(7));
            }
        }
        Ok(report)
    }
}
