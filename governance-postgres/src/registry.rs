//! The registry's listing and counts (the filter becomes one parameterized query).

use governance_core::{PipelineFilter, PipelineRecord, PipelineStatus, Result};

use crate::db::Db;
use crate::errors::{OpError, json_error};
use crate::rows::nanos;

/// Page size of [`PipelineFilter::limit`] `0`.
const DEFAULT_LIMIT: usize = 100;

/// Records matching `filter`, newest first (by `created_at`, then id).
pub(crate) async fn list(db: &Db, filter: &PipelineFilter) -> Result<Vec<PipelineRecord>> {
    let statuses: Vec<String> = filter
        .statuses
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let after = filter.created_after.map(nanos).transpose()?;
    let before = filter.created_before.map(nanos).transpose()?;
    let limit = if filter.limit == 0 {
        DEFAULT_LIMIT
    } else {
        filter.limit
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
    let target = db.target.clone();
    db.read("list pipelines", &move |c| {
        let (statuses, target) = (statuses.clone(), target.clone());
        Box::pin(async move {
            let rows = c
                .query(
                    "SELECT record FROM pipelines \
                         WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
                           AND ($2::int8 IS NULL OR created_at >= $2) \
                           AND ($3::int8 IS NULL OR created_at < $3) \
                         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5",
                    &[&statuses, &after, &before, &limit, &offset],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| {
                        OpError::Rejected(json_error(&target, "a pipeline record", &e))
                    })
                })
                .collect()
        })
    })
    .await
}

/// Pipelines per status (statuses with none left out), in declaration order.
pub(crate) async fn count_by_status(db: &Db) -> Result<Vec<(PipelineStatus, u64)>> {
    let rows: Vec<(String, i64)> = db
        .read("count pipelines", &|c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT status, count(*) FROM pipelines GROUP BY status",
                        &[],
                    )
                    .await?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
        })
        .await?;
    let mut out = rows
        .into_iter()
        .map(|(s, n)| Ok((s.parse::<PipelineStatus>()?, u64::try_from(n).unwrap_or(0))))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|(s, _)| {
        PipelineStatus::ALL
            .iter()
            .position(|x| x == s)
            .unwrap_or(usize::MAX)
    });
    Ok(out)
}
