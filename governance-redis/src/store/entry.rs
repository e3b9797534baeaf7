//! The ledger as stored: [`LedgerEntry`] (one hash-chained entry of `gov:{P}:ledger`), and
//! reading and verifying the chains ([`RedisStore::entries`], [`RedisStore::verify`]).

use governance_core::{LEDGER_GENESIS as GENESIS, LedgerRow};
use governance_core::{PipelineId, Result};
use serde::{Deserialize, Serialize};

use super::{RedisStore, hex};
use crate::conn::corrupt;

/// One ledger entry as stored in `gov:{P}:ledger` (wire protocol, `v: 1`). The hash covers
/// the same fields, in the same way, as the SQLite ledger's (`governance_core::chain`), so an
/// entry copied from one to the other keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Payload version (1).
    pub v: u32,
    /// The event's `seq`.
    pub seq: i64,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent the event is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Event time, nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The event's `data` object as compact JSON (without `pipeline_id`), as a string.
    pub data: String,
    /// Hex SHA-256 of the previous entry (64 zeros for seq 1).
    pub prev: String,
    /// Hex SHA-256 of this entry chained on `prev`.
    pub hash: String,
}

impl LedgerEntry {
    /// The ledger row of this entry in `pipeline`.
    #[must_use]
    pub fn row(&self, pipeline: &str) -> LedgerRow {
        LedgerRow {
            pipeline_id: pipeline.to_owned(),
            seq: self.seq,
            kind: self.kind.clone(),
            agent_id: self.agent_id.clone(),
            ts: self.ts,
            data: self.data.clone(),
        }
    }
}

impl RedisStore {
    /// Every ledger entry of `pipeline` as stored (for verification and archiving).
    ///
    /// # Errors
    /// Backend errors; a corrupt entry.
    pub async fn entries(&self, pipeline: &PipelineId) -> Result<Vec<LedgerEntry>> {
        let raw = self.ledger_raw(pipeline, 0, -1).await?;
        raw.iter()
            .map(|j| serde_json::from_str(j).map_err(|e| corrupt("ledger entry", e)))
            .collect()
    }

    /// Walks the hash chain of every pipeline in the registry: the first broken entry of each
    /// broken chain.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn verify(&self) -> Result<VerifyOutcome> {
        let ids = self.index_members("pipelines", false).await?;
        let mut out = VerifyOutcome::default();
        for id in ids {
            let Ok(pid) = PipelineId::new(id.clone()) else {
                out.broken
                    .push((id, 0, "invalid pipeline id in the index".into()));
                continue;
            };
            out.pipelines += 1;
            let raw = self.ledger_raw(&pid, 0, -1).await?;
            let mut prev = GENESIS;
            for (i, json) in raw.iter().enumerate() {
                out.entries += 1;
                let seq = i as i64 + 1;
                let problem = match serde_json::from_str::<LedgerEntry>(json) {
                    Err(e) => Some(format!("not a ledger entry: {e}")),
                    Ok(e) if e.seq != seq => Some(format!("holds seq {} at position {seq}", e.seq)),
                    Ok(e) if e.prev != hex(&prev) => Some("prev hash does not match".into()),
                    Ok(e) => {
                        let h = e.row(&id).hash(&prev);
                        if e.hash == hex(&h) {
                            prev = h;
                            None
                        } else {
                            Some("hash does not match its content".into())
                        }
                    }
                };
                if let Some(p) = problem {
                    out.broken.push((id.clone(), seq, p));
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// What [`RedisStore::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOutcome {
    /// Pipelines checked.
    pub pipelines: u64,
    /// Entries checked.
    pub entries: u64,
    /// `(pipeline, seq, problem)` of the first broken entry of each broken chain.
    pub broken: Vec<(String, i64, String)>,
}
