//! Appending to a pipeline's ledger (with its checkpoint and record) in one fenced
//! `append_state` script call, against the cached tail of its hash chain.

use governance_core::{Checkpoint, Error, Event, PipelineId, PipelineRecord, Result};
use governance_core::{LEDGER_GENESIS as GENESIS, LedgerRow};

use super::entry::LedgerEntry;
use super::relay::relay_payload;
use super::{MAX_TAILS, RedisStore, decode_hash, hex, seq_i64, to_json};
use crate::conn::{Effect, corrupt};

impl RedisStore {
    async fn tail(&self, pipeline: &PipelineId) -> Result<(i64, [u8; 32])> {
        if let Some(t) = self.tails.lock().get(pipeline) {
            return Ok(*t);
        }
        let k = self.shared.keys(pipeline);
        let last: Option<String> = self
            .shared
            .query(
                redis::cmd("LINDEX").arg(k.ledger()).arg(-1),
                "ledger tail",
                Effect::Read,
            )
            .await?;
        let tail = match last {
            None => (0, GENESIS),
            Some(json) => {
                let e: LedgerEntry =
                    serde_json::from_str(&json).map_err(|e| corrupt("ledger entry", e))?;
                (e.seq, decode_hash(&e.hash)?)
            }
        };
        Ok(tail)
    }

    fn remember(&self, pipeline: &PipelineId, tail: (i64, [u8; 32])) {
        let mut t = self.tails.lock();
        if t.len() > MAX_TAILS {
            t.clear();
        }
        t.insert(pipeline.clone(), tail);
    }

    /// Appends one pipeline's events (with optional state) in one fenced script call. Events
    /// already stored identically are skipped (an idempotent repeat); the rest must follow the
    /// stored tail without a gap.
    pub(super) async fn append_one(
        &self,
        pipeline: &PipelineId,
        events: &[&Event],
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<()> {
        let token = self.token(pipeline)?;
        for attempt in 0..2 {
            let mut tail = self.tail(pipeline).await?;
            if attempt == 0 && events.first().is_some_and(|e| seq_i64(e.seq) > tail.0 + 1) {
                // the cached tail may be stale (another node wrote since): read it again
                self.tails.lock().remove(pipeline);
                tail = self.tail(pipeline).await?;
            }
            let split = events
                .iter()
                .position(|e| seq_i64(e.seq) > tail.0)
                .unwrap_or(events.len());
            let (old, new) = events.split_at(split);
            if !old.is_empty() {
                self.check_existing(pipeline, old).await?;
            }
            if new.is_empty() && (!old.is_empty() || (checkpoint.is_none() && record.is_none())) {
                return Ok(());
            }
            match self
                .try_append(pipeline, &token, tail, new, checkpoint, record)
                .await?
            {
                Appended::Done => return Ok(()),
                Appended::Moved => {}
            }
        }
        Err(Error::Conflict(format!(
            "ledger of {pipeline}: another writer keeps appending; refused"
        )))
    }

    async fn try_append(
        &self,
        pipeline: &PipelineId,
        token: &str,
        (mut last, mut prev): (i64, [u8; 32]),
        events: &[&Event],
        checkpoint: Option<&Checkpoint>,
        record: Option<&PipelineRecord>,
    ) -> Result<Appended> {
        let first = last + 1;
        let mut entries = Vec::with_capacity(events.len());
        for e in events {
            let row = LedgerRow::from_event(e)?;
            if row.seq != last + 1 {
                return Err(Error::Conflict(format!(
                    "ledger of {pipeline}: seq {} would leave a gap after {last}",
                    row.seq
                )));
            }
            let hash = row.hash(&prev);
            entries.push(
                serde_json::to_string(&LedgerEntry {
                    v: 1,
                    seq: row.seq,
                    kind: row.kind,
                    agent_id: row.agent_id,
                    ts: row.ts,
                    data: row.data,
                    prev: hex(&prev),
                    hash: hex(&hash),
                })
                .map_err(|e| Error::Internal(format!("cannot encode a ledger entry: {e}")))?,
            );
            last += 1;
            prev = hash;
        }
        let k = self.shared.keys(pipeline);
        let mut args = vec![
            token.to_owned(),
            first.to_string(),
            entries.len().to_string(),
        ];
        args.extend(entries);
        match checkpoint {
            Some(cp) => {
                args.push(to_json(cp)?);
                args.push(cp.seq.to_string());
            }
            None => args.extend([String::new(), String::new()]),
        }
        args.push(match record {
            Some(r) => to_json(r)?,
            None => String::new(),
        });
        args.push(Self::events_channel(&self.shared.config.key_prefix));
        args.push(match &self.leases {
            Some(l) if !events.is_empty() => relay_payload(l.node(), events)?,
            _ => String::new(),
        });
        let keys = [
            k.fence(),
            k.ledger(),
            k.checkpoint(),
            k.checkpoint_meta(),
            k.record(),
        ];
        let reply: Vec<String> = match self
            .shared
            .run_script(
                &self.shared.scripts.append_state,
                &keys,
                &args,
                "ledger append",
                Effect::Idempotent,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.tails.lock().remove(pipeline);
                return Err(e);
            }
        };
        match reply.first().map(String::as_str) {
            Some("OK") => {
                self.remember(pipeline, (last, prev));
                if let Some(r) = record {
                    self.index(r).await?;
                }
                Ok(Appended::Done)
            }
            Some("FENCED") => {
                self.tails.lock().remove(pipeline);
                if let Some(l) = &self.leases {
                    l.forget(pipeline);
                }
                Err(Error::Fenced {
                    pipeline: pipeline.to_string(),
                })
            }
            Some("SEQ") => {
                // a repeat whose first attempt was applied, or another writer: look again
                self.tails.lock().remove(pipeline);
                Ok(Appended::Moved)
            }
            _ => Err(corrupt("append_state reply", format!("{reply:?}"))),
        }
    }

    /// `Ok` when every event is already stored identically (an idempotent repeat), else a
    /// conflict.
    async fn check_existing(&self, pipeline: &PipelineId, events: &[&Event]) -> Result<()> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let start = seq_i64(first.seq) - 1;
        let stored = self
            .ledger_raw(pipeline, start, start + events.len() as i64 - 1)
            .await?;
        if stored.len() == events.len() {
            let same = stored.iter().zip(events).all(|(json, e)| {
                let Ok(entry) = serde_json::from_str::<LedgerEntry>(json) else {
                    return false;
                };
                LedgerRow::from_event(e).is_ok_and(|row| row == entry.row(pipeline.as_str()))
            });
            if same {
                return Ok(());
            }
        }
        Err(Error::Conflict(format!(
            "ledger of {pipeline}: seq {} is already taken by a different entry, or leaves a gap",
            first.seq
        )))
    }
}

enum Appended {
    Done,
    Moved,
}
