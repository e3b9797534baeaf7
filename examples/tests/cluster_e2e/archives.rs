//! What each node's SQLite archive holds after the run, and what `ledger verify` counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use governance_core::{PipelineFilter, PipelineRegistry as _};

/// `(entries, pipelines)` from `... ledger intact (E entries in P pipelines)`.
pub fn archive_counts(output: &str) -> (u64, u64) {
    let inner = output
        .split("ledger intact (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no 'ledger intact (...)' in {output:?}"));
    let nums: Vec<u64> = inner
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "unexpected verify output {output:?}");
    (nums[0], nums[1])
}

/// What a node's SQLite archive holds: pipeline id → status of every record, and pipeline id →
/// last ledger `seq` of every pipeline in `ids` with ledger entries.
pub struct Archive {
    pub records: BTreeMap<String, String>,
    pub ledgers: BTreeMap<String, u64>,
}

pub fn read_archive(db: &Path, ids: &BTreeSet<String>) -> Archive {
    use governance_core::LedgerStore as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let store = governance_sqlite::SqliteStore::open(db)
            .await
            .unwrap_or_else(|e| panic!("open archive {}: {e}", db.display()));
        let records = store
            .list(&PipelineFilter {
                limit: 10_000,
                ..PipelineFilter::default()
            })
            .await
            .expect("list archived pipelines")
            .into_iter()
            .map(|r| (r.id.as_str().to_owned(), r.status.as_str().to_owned()))
            .collect();
        let mut ledgers = BTreeMap::new();
        for id in ids {
            let pid = governance_core::PipelineId::new(id.as_str()).expect("valid id");
            let last = store.last_seq(&pid).await.expect("archived last seq");
            if last > 0 {
                ledgers.insert(id.clone(), last);
            }
        }
        store.close().await.expect("close archive");
        Archive { records, ledgers }
    })
}

/// Checks one node's archive `db` (`ledger verify` counted `entries` in `pipelines`): only
/// known pipelines with their final status, and (but for the killed `n1`) each archived ledger
/// whole and with its record. Returns the archive.
pub fn check_archive(
    name: &str,
    db: &Path,
    (entries, pipelines): (u64, u64),
    all: &BTreeSet<String>,
    final_status: &BTreeMap<String, String>,
    entries_of: &BTreeMap<String, u64>,
) -> Archive {
    let archive = read_archive(db, all);
    eprintln!(
        "archive of {}: {} records, {pipelines} pipelines with {entries} ledger entries",
        name,
        archive.records.len()
    );
    for (id, st) in &archive.records {
        assert!(all.contains(id), "{}: archived unknown pipeline {id}", name);
        assert_eq!(st, &final_status[id], "{}: archived status of {id}", name);
    }
    let no_record: Vec<&String> = archive
        .ledgers
        .keys()
        .filter(|id| !archive.records.contains_key(*id))
        .collect();
    let short: Vec<(&String, u64, u64)> = archive
        .ledgers
        .iter()
        .filter(|(id, last)| **last != entries_of[*id])
        .map(|(id, last)| (id, *last, entries_of[id]))
        .collect();
    if name == "n1" {
        // killed: what it was archiving at that moment may be half there (not asserted)
        if !no_record.is_empty() || !short.is_empty() {
            eprintln!(
                "n1's archive (killed mid-flight): ledger without record: {no_record:?}; \
                 (pipeline, archived last seq, shared ledger length) differing: {short:?}"
            );
        }
    } else {
        assert!(pipelines > 0, "{}'s archive is empty", name);
        assert!(
            no_record.is_empty() && archive.ledgers.len() == archive.records.len(),
            "{}: archived ledgers without a record: {no_record:?}",
            name
        );
        assert!(
            short.is_empty(),
            "{}: archived ledgers not equal to the shared ledger \
             (pipeline, archived last seq, shared length): {short:?}",
            name
        );
        let expected: u64 = archive.records.keys().map(|id| entries_of[id]).sum();
        assert_eq!(
            entries, expected,
            "{}'s archive holds the whole shared ledger of each pipeline it finished",
            name
        );
    }
    archive
}
