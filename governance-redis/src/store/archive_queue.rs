//! The archive queue of cluster mode: finished pipelines waiting to be copied into a node's
//! archive (`gov:unarchived`), and who claimed and archived each one.

use governance_core::{PipelineId, Result};

use super::RedisStore;
use crate::conn::Effect;

impl RedisStore {
    /// Queues a finished pipeline for archiving (`gov:unarchived`, scored by time).
    pub(crate) async fn mark_unarchived(&self, id: &PipelineId) -> Result<()> {
        self.index_set("unarchived", id, true).await
    }

    /// Finished pipelines not yet archived by any node, queued longer ago than `age`
    /// (the node that finished one archives it at once; these are the ones it did not get to,
    /// e.g. because it died).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn unarchived(&self, age: std::time::Duration) -> Result<Vec<PipelineId>> {
        let before = chrono::Utc::now().timestamp_millis()
            - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let ids: Vec<String> = self
            .shared
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.global("unarchived"))
                    .arg("-inf")
                    .arg(before)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(500),
                "archive queue",
                Effect::Read,
            )
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|i| PipelineId::new(i).ok())
            .collect())
    }

    /// Claims the archiving of `id` for `node` for `ttl` (`gov:{P}:archiving`, SET NX): `true`
    /// when this node may archive it now.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn claim_archive(
        &self,
        id: &PipelineId,
        node: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let set: Option<String> = self
            .shared
            .query(
                redis::cmd("SET")
                    .arg(self.shared.keys(id).archiving())
                    .arg(node)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)),
                "archive claim",
                Effect::Read,
            )
            .await?;
        Ok(set.is_some())
    }

    /// Marks `id` archived by `node` (`gov:{P}:archived`) and takes it off the archive queue.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn archived(&self, id: &PipelineId, node: &str) -> Result<()> {
        self.shared
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.shared.keys(id).archived())
                    .arg(node),
                "archive mark",
                Effect::Idempotent,
            )
            .await?;
        self.index_set("unarchived", id, false).await
    }

    /// The node that archived `id`, if one did.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn archived_by(&self, id: &PipelineId) -> Result<Option<String>> {
        self.shared
            .query(
                redis::cmd("GET").arg(self.shared.keys(id).archived()),
                "archive mark",
                Effect::Read,
            )
            .await
    }
}
