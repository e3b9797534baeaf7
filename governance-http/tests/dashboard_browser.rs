//! The dashboard in headless Chromium (Debian's `chromium`), driven over the DevTools protocol:
//! load the page, spawn from the form, watch the pipeline reach COMPLETED; agent text is never
//! parsed as HTML; a pipeline awaiting approval is decided from its own page
//! (`/#/pipeline/<id>`), whose ledger shows proposals and rationales in full. Fails (never
//! skips) when Chromium is missing.

mod common;

use std::path::PathBuf;

use common::browser::Browser;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_spawns_a_pipeline_and_shows_it_completed() {
    let s = common::start_with(common::Opts {
        latency_ms: 5,
        ..common::Opts::default()
    })
    .await;
    // some history so the list has rows of several statuses, and more than one page
    for i in 0..40 {
        s.spawn(&format!("Backlog objective {i}"), false).await;
    }
    s.spawn("Rests at the report stage", false).await;
    s.spawn(
        "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>",
        true,
    )
    .await;
    let mut b = Browser::open(&s.url("/")).await;
    b.wait_for("!!document.getElementById('spawn-btn') && document.getElementById('conn').classList.contains('on')")
        .await;
    b.eval(
        "document.getElementById('objective').value = 'Design a caching strategy'; \
         document.getElementById('auto').checked = true; \
         document.getElementById('spawn-btn').click(); true",
    )
    .await;
    b.wait_for(
        "[...document.querySelectorAll('#rows tr')].some(tr => \
           tr.firstChild.textContent === 'Design a caching strategy' && \
           tr.querySelector('.status').textContent === 'COMPLETED')",
    )
    .await;
    // the detail panel follows the spawned pipeline to the end, with agents and proposals
    b.wait_for(
        "(() => { const d = document.getElementById('detail-status-holder'); \
           return !!d && d.dataset.status === 'COMPLETED' && d.innerText.includes('ALPHA') && d.innerText.includes('BETA'); })()",
    )
    .await;
    b.wait_for("document.getElementById('feed').innerText.includes('orchestration_complete')")
        .await;
    // 43 pipelines stay readable: one page of 25, newest first, a pager with the total
    assert_eq!(
        b.eval("document.querySelectorAll('#rows tr').length").await,
        json!(25)
    );
    assert_eq!(
        b.eval("document.getElementById('pageinfo').textContent")
            .await,
        json!("1–25 of 43")
    );
    // agent/user text is text, never markup
    let injected = b
        .eval("document.querySelectorAll('#rows img, #rows b, #feed img').length")
        .await;
    assert_eq!(injected, json!(0));
    assert_ne!(b.eval("document.title").await, json!("pwned"));
    b.wait_for("document.getElementById('rows').innerText.includes('<img src=x')")
        .await;
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    b.screenshot(&out).await;
    drop(b);
    s.shutdown().await;
}

/// A JS string literal of `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_awaiting_approval_is_decided_from_its_own_page() {
    let s = common::start_with(common::Opts {
        latency_ms: 5,
        ..common::Opts::default()
    })
    .await;
    let (st, body) = s
        .post(
            "/api/spawn",
            &json!({"objective": "Plan a zero-downtime migration", "require_approval": true}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let id = body["pipeline_id"].as_str().unwrap().to_owned();
    let pid = governance_core::PipelineId::new(&id).unwrap();
    let mut rec = s.gov.wait_until_rest(&pid).await.unwrap();
    while !(rec.status == governance_core::PipelineStatus::AwaitingApproval
        || rec.status.is_terminal())
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        rec = s.gov.wait_until_rest(&pid).await.unwrap();
    }
    assert_eq!(
        rec.status,
        governance_core::PipelineStatus::AwaitingApproval
    );
    let events = s.gov.events(&pid, 0, 10_000).await.unwrap();
    let text_of = |ty: &str, field: &str| {
        events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .find(|e| e["type"] == ty)
            .and_then(|e| e["data"][field].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {ty} with {field}"))
    };
    let (proposal, solution) = (
        text_of("approval_requested", "proposal"),
        text_of("approval_requested", "solution"),
    );
    let rationale = text_of("vote_cast", "rationale");
    let content = text_of("proposal_created", "content");

    // the pipeline's own link opens its page: the approval panel and the ledger, all readable
    let mut b = Browser::open(&s.url(&format!("/#/pipeline/{id}"))).await;
    b.wait_for("!!document.getElementById('approval-panel')")
        .await;
    assert_eq!(
        b.eval("document.getElementById('approval-proposal').innerText")
            .await,
        json!(proposal)
    );
    assert_eq!(
        b.eval("document.getElementById('approval-solution').innerText")
            .await,
        json!(solution)
    );
    for text in [&rationale, &content] {
        let expr = format!(
            "document.getElementById('ledger').innerText.includes({})",
            js(text)
        );
        assert_eq!(b.eval(&expr).await, json!(true), "{text}");
    }
    // loaded from /api/pipeline/logs: the ledger starts at seq 1 though the page opened late
    b.wait_for("document.querySelector('#ledger .ev').innerText.startsWith('#1 ')")
        .await;

    // reject with feedback (markup in it stays text), then approve the revision
    let feedback = "Add a rollback plan <img src=x onerror=\"document.title='pwned'\">";
    b.eval(&format!(
        "document.getElementById('approval-by').value = 'Dana'; \
         document.getElementById('approval-by').dispatchEvent(new Event('input')); \
         document.getElementById('approval-feedback').value = {}; \
         document.getElementById('approval-feedback').dispatchEvent(new Event('input')); \
         document.getElementById('reject-btn').click(); true",
        js(feedback)
    ))
    .await;
    b.wait_for(
        "(() => { const p = document.getElementById('approval-panel'); \
           return !!p && p.textContent.includes('revision 1'); })()",
    )
    .await;
    b.wait_for(&format!(
        "document.getElementById('ledger').innerText.includes({})",
        js(feedback)
    ))
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('#ledger img, #approval-panel img').length")
            .await,
        json!(0)
    );
    let waiting =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-awaiting.png");
    b.screenshot(&waiting).await;
    // the reviewer's name is remembered for the next decision
    assert_eq!(
        b.eval("document.getElementById('approval-by').value").await,
        json!("Dana")
    );
    b.eval("document.getElementById('approve-btn').click(); true")
        .await;
    b.wait_for(
        "(() => { const d = document.getElementById('detail-status-holder'); \
           return !!d && d.dataset.status === 'COMPLETED' && !document.getElementById('approval-panel'); })()",
    )
    .await;
    b.wait_for("document.getElementById('ledger').innerText.includes('approved by Dana')")
        .await;
    assert_ne!(b.eval("document.title").await, json!("pwned"));
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-approval.png");
    b.screenshot(&out).await;
    drop(b);

    let rec = s.gov.get(&pid).await.unwrap();
    assert_eq!(rec.status, governance_core::PipelineStatus::Completed);
    assert_eq!(rec.revisions, 1);
    s.shutdown().await;
}
