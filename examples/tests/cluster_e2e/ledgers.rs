//! Reading a pipeline's ledger as the cluster test checks it: pauses between entries and the
//! audit trail of every proposal.

use std::collections::BTreeMap;

use serde_json::Value;

use super::support::{all_logs_paged, get, is_terminal};
use super::{LOG_PAGE, SLOW_GAP_SECS};

/// Seconds since midnight of an RFC 3339 UTC time stamp (`2026-01-24T10:00:00.123Z`): enough
/// to measure gaps between ledger entries of one short test.
pub fn secs_of_day(ts: &str) -> f64 {
    let time = ts
        .split('T')
        .nth(1)
        .and_then(|t| t.strip_suffix('Z'))
        .unwrap_or_else(|| panic!("unexpected time stamp {ts:?}"));
    let parts: Vec<f64> = time
        .split(':')
        .map(|p| p.parse().expect("time stamp number"))
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// The longest pause between consecutive ledger entries: `(seconds, entry before, entry after)`.
pub fn longest_gap(events: &[Value]) -> Option<(f64, &Value, &Value)> {
    events
        .windows(2)
        .map(|w| {
            let a = secs_of_day(w[0]["ts"].as_str().expect("ts"));
            let mut b = secs_of_day(w[1]["ts"].as_str().expect("ts"));
            if a - b > 43_200.0 {
                b += 86_400.0; // midnight (entries may also be a little out of time order)
            }
            (b - a, &w[0], &w[1])
        })
        .max_by(|x, y| x.0.total_cmp(&y.0))
}

pub fn brief(e: &Value) -> String {
    let mut data = e["data"].clone();
    if let Some(d) = data.as_object_mut() {
        d.remove("pipeline_id");
        d.remove("results");
        d.remove("content");
        d.remove("rationale");
    }
    format!("#{} {} {} {data}", e["seq"], e["ts"], e["type"])
}

/// Proposals in a ledger whose trail is incomplete: voted on (or decided) without a
/// `proposal_created`, or created without its author's endorsing `vote_cast`.
pub fn proposal_audit_gaps(events: &[Value]) -> Vec<String> {
    let of_type = |t: &'static str| events.iter().filter(move |e| e["type"] == t);
    let created: BTreeMap<&str, &str> = of_type("proposal_created")
        .filter_map(|e| {
            Some((
                e["data"]["proposal_id"].as_str()?,
                e["data"]["author"].as_str()?,
            ))
        })
        .collect();
    let mut gaps = Vec::new();
    for e in of_type("vote_cast").chain(of_type("consensus_reached")) {
        let pid = e["data"]["proposal_id"].as_str().unwrap_or("?");
        if !created.contains_key(pid) {
            gaps.push(format!(
                "{} #{} on proposal {pid}, which has no proposal_created",
                e["type"], e["seq"]
            ));
        }
    }
    for (pid, author) in &created {
        let endorsed = of_type("vote_cast")
            .any(|v| v["data"]["proposal_id"] == *pid && v["data"]["voter"] == *author);
        if !endorsed {
            gaps.push(format!("proposal {pid} has no vote of its author {author}"));
        }
    }
    gaps
}

/// What [`check_ledgers`] found over every pipeline.
pub struct LedgerCheck {
    /// Broken promises (asserted empty at the end).
    pub problems: Vec<String>,
    /// Ledger length of each pipeline.
    pub entries_of: BTreeMap<String, u64>,
    /// Consensus events per pipeline → how many pipelines.
    pub consensus_hist: BTreeMap<usize, usize>,
    /// Pipelines whose ledger paused long (reported).
    pub slow: Vec<String>,
    /// Their ids.
    pub slow_ids: Vec<String>,
    /// Pipelines that had a GAMMA.
    pub gammas: usize,
    /// Proposals with an incomplete trail.
    pub audit_gaps: Vec<String>,
}

/// Per pipeline of `spawned` (`(index, id, node)`): the same gap-free ledger on `n2` and `n3`,
/// one decision, one end matching the record; pauses and audit gaps collected.
pub fn check_ledgers(
    spawned: &[(usize, String, usize)],
    n2: &str,
    n3: &str,
    orphans: &BTreeMap<String, String>,
) -> LedgerCheck {
    let mut problems: Vec<String> = Vec::new();
    let mut entries_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut consensus_hist: BTreeMap<usize, usize> = BTreeMap::new();
    let mut slow: Vec<String> = Vec::new();
    let mut slow_ids: Vec<String> = Vec::new();
    let mut gammas = 0usize;
    let mut audit_gaps: Vec<String> = Vec::new();
    for (i, id, node) in spawned {
        let who = format!("pipeline #{i} {id} (spawned on n{})", node + 1);
        let rec = get(n2, &format!("/api/pipeline/{id}"));
        let status = rec["status"].as_str().unwrap_or("?").to_owned();
        if status != "COMPLETED" {
            problems.push(format!(
                "{who}: status {status}, failure {}",
                rec["failure"]
            ));
        }
        let from_n2 = all_logs_paged(n2, id, LOG_PAGE);
        let from_n3 = all_logs_paged(n3, id, LOG_PAGE);
        if from_n2 != from_n3 {
            problems.push(format!(
                "{who}: ledger differs between n2 ({} entries) and n3 ({} entries)",
                from_n2.len(),
                from_n3.len()
            ));
        }
        let seqs: Vec<u64> = from_n2.iter().filter_map(|e| e["seq"].as_u64()).collect();
        let n = from_n2.len() as u64;
        if seqs != (1..=n).collect::<Vec<_>>() {
            problems.push(format!("{who}: seqs not 1..={n}: {seqs:?}"));
        }
        entries_of.insert(id.clone(), n);
        if let Some((gap, a, b)) = longest_gap(&from_n2)
            && gap > SLOW_GAP_SECS
        {
            slow_ids.push(id.clone());
            eprintln!(
                "ledger of slow {who}:\n  {}",
                from_n2.iter().map(brief).collect::<Vec<_>>().join("\n  ")
            );
            slow.push(format!(
                "{who}{}: paused {gap:.1} s between\n    {}\n    {}",
                if orphans.contains_key(id) {
                    ", orphaned by the kill"
                } else {
                    ""
                },
                brief(a),
                brief(b)
            ));
        }
        if from_n2.iter().any(|e| e["type"] == "gamma_spawned") {
            gammas += 1;
        }
        let gaps = proposal_audit_gaps(&from_n2);
        if !gaps.is_empty() {
            let decisions: Vec<String> = from_n2
                .iter()
                .filter(|e| {
                    [
                        "proposal_created",
                        "vote_cast",
                        "consensus_reached",
                        "gamma_spawned",
                    ]
                    .iter()
                    .any(|t| e["type"] == *t)
                })
                .map(brief)
                .collect();
            audit_gaps.push(format!(
                "{who}: {}\n    its proposals and votes:\n    {}",
                gaps.join("; "),
                decisions.join("\n    ")
            ));
        }
        let consensus = from_n2
            .iter()
            .filter(|e| e["type"] == "consensus_reached")
            .count();
        *consensus_hist.entry(consensus).or_default() += 1;
        if consensus > 1 {
            problems.push(format!(
                "{who}: {consensus} consensus_reached events: {:?}",
                from_n2
                    .iter()
                    .filter(|e| e["type"] == "consensus_reached")
                    .map(|e| (&e["seq"], &e["data"]["proposal_id"]))
                    .collect::<Vec<_>>()
            ));
        }
        let ends: Vec<(&Value, &str)> = from_n2
            .iter()
            .filter(|e| e["type"] == "status_changed")
            .filter_map(|e| e["data"]["status"].as_str().map(|s| (&e["seq"], s)))
            .filter(|(_, s)| is_terminal(s))
            .collect();
        match ends.as_slice() {
            [(_, end)] if *end == status => {}
            _ => problems.push(format!(
                "{who}: terminal status_changed events {ends:?}, record status {status}"
            )),
        }
    }
    LedgerCheck {
        problems,
        entries_of,
        consensus_hist,
        slow,
        slow_ids,
        gammas,
        audit_gaps,
    }
}
