//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand next to the handlers and
//! kept true to them: every bound a handler enforces is in the schema (so a request valid by
//! the schema is never refused with 400, and one invalid by it always is), every status an
//! operation answers is listed with the one error shape, and links lead from a spawned
//! pipeline to the operations on it. A test checks that every route of the router is in it,
//! and `examples/tests/schemathesis.rs` runs schemathesis against a running server.
//!
//! `/ws` is documented as the WebSocket handshake it is (101, or an error before the upgrade);
//! request/response testers cannot follow it past the upgrade, so the schemathesis test leaves
//! it out and `governance-http/tests/live.rs` covers it over a real socket.
//!
//! The per-role settings' schemas are in `roles.rs`.

mod fork;
mod roles;

use governance_core::{MAX_FEEDBACK_LEN, MAX_REVIEWER_LEN, PipelineStatus};
use serde_json::{Map, Value, json};

use crate::live::{DEFAULT_REPLAY_SECS, MAX_REPLAY_SECS};
use crate::state::MAX_PAGE;

/// A pipeline id, as [`governance_core::PipelineId::new`] accepts it.
const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// Contains a character that is not white space (as Rust's `char::is_whitespace` has it): the
/// objective is trimmed and must not be empty.
const NON_BLANK: &str =
    "[^\\t-\\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}]";
pub use roles::MODEL_PATTERN;
use roles::role_schemas;
/// Event types a pipeline's ledger holds.
const EVENT_TYPES: [&str; 19] = [
    "status_changed",
    "orchestration_started",
    "agent_spawned",
    "agent_message",
    "gamma_spawned",
    "proposal_created",
    "vote_cast",
    "consensus_reached",
    "llm_call",
    "agent_revoked",
    "handoff_created",
    "checkpoint_created",
    "error",
    "orchestration_complete",
    "resumed",
    "approval_requested",
    "approval_decided",
    "coordination_rebuilt",
    "forked_from",
];

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(desc: &str, schema: &Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn obj(r: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{r}")})
}

fn id_schema() -> Value {
    json!({"type": "string", "pattern": ID_PATTERN})
}

fn id_param(location: &str) -> Value {
    json!({"name": if location == "path" { "id" } else { "pipeline_id" }, "in": location, "required": true,
           "schema": id_schema()})
}

fn q(name: &str, schema: &Value, desc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": desc})
}

fn uint(max: u64) -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": max})
}

fn limit(default: u64) -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default})
}

fn body(schema: &str, example: &Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": obj(schema), "example": example}}})
}

/// An `/api/*` or `/ws` operation: needs the token (401), and its `errors` in the error shape.
fn secured(mut op: Value, errors: &[(&str, &str)], rest: bool) -> Value {
    op["security"] = json!([{"bearer": []}]);
    let responses = op["responses"].as_object_mut().expect("responses");
    responses.insert(
        "401".into(),
        err("missing or wrong API token (when one is configured)"),
    );
    for (status, desc) in errors {
        responses.insert((*status).into(), err(desc));
    }
    if rest {
        responses.insert(
            "408".into(),
            err("the request took longer than the server's request timeout"),
        );
        responses.insert(
            "503".into(),
            err("a backend is unavailable (answered with Retry-After when it is worth retrying)"),
        );
    }
    op
}

/// Links from a response carrying `pipeline_id` to every operation on that pipeline.
fn pipeline_links() -> Value {
    let id = "$response.body#/pipeline_id";
    json!({
        "getPipeline": {"operationId": "getPipeline", "parameters": {"id": id}},
        "orchestration": {"operationId": "orchestration", "parameters": {"id": id}},
        "stop": {"operationId": "stop", "parameters": {"id": id}},
        "approve": {"operationId": "approve", "parameters": {"id": id}},
        "report": {"operationId": "report", "parameters": {"pipeline_id": id}},
        "logs": {"operationId": "logs", "parameters": {"pipeline_id": id}},
        "events": {"operationId": "events", "parameters": {"pipeline_id": id}},
        "continue": {"operationId": "continue", "requestBody": {"pipeline_id": id}},
    })
}

fn feed_params(query_token: bool) -> Vec<Value> {
    let mut params = vec![
        q(
            "pipeline_id",
            &id_schema(),
            "only this pipeline's events (404 when unknown)",
        ),
        q(
            "since",
            &uint(u64::MAX),
            "replay only events with seq > since: of this pipeline with `pipeline_id` (the \
             resume cursor; `Last-Event-ID` on /api/events), else of each replayed pipeline \
             (default 0)",
        ),
        q(
            "replay_secs",
            &json!({"type": "integer", "minimum": 0, "maximum": MAX_REPLAY_SECS, "default": DEFAULT_REPLAY_SECS}),
            "all-pipelines stream: first replay the events of the pipelines spawned in the last \
             replay_secs seconds (at most 1000 pipelines, oldest first, each in seq order), then \
             live events; 0 for live events only. A stream with `pipeline_id` always replays \
             that pipeline's ledger after `since` and ignores it",
        ),
    ];
    if query_token {
        params.push(q(
            "token",
            &json!({"type": "string"}),
            "the API token, for browsers that cannot send headers (the Authorization header wins)",
        ));
    }
    params
}

fn ws_params() -> Vec<Value> {
    let mut params = feed_params(true);
    for (name, schema, desc) in [
        (
            "Connection",
            json!({"type": "string", "pattern": "[Uu][Pp][Gg][Rr][Aa][Dd][Ee]"}),
            "contains `upgrade`",
        ),
        (
            "Upgrade",
            json!({"type": "string", "enum": ["websocket"]}),
            "`websocket`",
        ),
        (
            "Sec-WebSocket-Version",
            json!({"type": "string", "enum": ["13"]}),
            "`13`",
        ),
        (
            "Sec-WebSocket-Key",
            json!({"type": "string", "pattern": "^[A-Za-z0-9+/]{22}==$"}),
            "16 random bytes, base64",
        ),
    ] {
        params.push(json!({"name": name, "in": "header", "required": true, "schema": schema, "description": desc}));
    }
    params
}

fn paths() -> Value {
    let any = json!({"type": "object"});
    let html =
        json!({"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}});
    let mut spawned = ok("spawned", &obj("Spawned"));
    spawned["links"] = pipeline_links();
    let mut continued = ok("orchestrating", &obj("Status"));
    continued["links"] = pipeline_links();
    let sse = json!({"description": "the event stream: one SSE event per feed message (event = its type, id = its seq, data = its JSON)",
                     "content": {"text/event-stream": {"schema": obj("SseEvent")}}});
    json!({
        "/api/spawn": {"post": secured(json!({
            "summary": "Spawn a pipeline", "operationId": "spawn", "requestBody": body("SpawnRequest", &json!({"objective": "Design a caching strategy", "auto_continue": true})),
            "responses": {"201": spawned}}),
            &[("400", "invalid body, objective, mode, model or timeout"), ("413", "body too large"),
              ("415", "not `Content-Type: application/json`")], true)},
        "/api/checkpoint/report": {"get": secured(json!({
            "summary": "The report and its continuation status", "operationId": "report",
            "parameters": [id_param("query")], "responses": {"200": ok("report", &obj("ReportStatus"))}}),
            &[("400", "missing or invalid id"), ("404", "unknown pipeline")], true)},
        "/api/pipeline/continue": {"post": secured(json!({
            "summary": "Continue a pipeline resting at REPORT into orchestration", "operationId": "continue",
            "requestBody": body("ContinueRequest", &json!({"pipeline_id": "01a2366fea7d72a7a18a81f9198684b1"})), "responses": {"202": continued}}),
            &[("400", "invalid body, id, mode, model or timeout"), ("404", "unknown pipeline"),
              ("409", "not at REPORT"), ("413", "body too large"), ("415", "not `Content-Type: application/json`"),
              ("504", "cluster mode: handed to the owning node, not continued within 60 s")], true)},
        "/api/pipeline/logs": {"get": secured(json!({
            "summary": "The pipeline's audit ledger, paged by seq", "operationId": "logs",
            "parameters": [id_param("query"), q("after", &uint(u64::MAX), "events with seq > after (default 0)"),
                           q("limit", &limit(100), "page size")],
            "responses": {"200": ok("events", &obj("Logs"))}}),
            &[("400", "missing or invalid id, after or limit"), ("404", "unknown pipeline")], true)},
        "/api/pipeline/{id}": {"get": secured(json!({
            "summary": "The pipeline record", "operationId": "getPipeline", "parameters": [id_param("path")],
            "responses": {"200": ok("record", &obj("PipelineRecord"))}}),
            &[("400", "invalid id"), ("404", "unknown pipeline")], true)},
        "/api/pipeline/{id}/orchestration": {"get": secured(json!({
            "summary": "Orchestration status: agents, GAMMA, blackboard, usage, results", "operationId": "orchestration",
            "parameters": [id_param("path")], "responses": {"200": ok("status", &obj("Orchestration"))}}),
            &[("400", "invalid id"), ("404", "unknown pipeline")], true)},
        "/api/pipeline/{id}/stop": {"post": secured(json!({
            "summary": "Emergency stop; answers the final status", "operationId": "stop", "parameters": [id_param("path")],
            "responses": {"200": ok("stopped (or already ended)", &obj("Status"))}}),
            &[("400", "invalid id"), ("404", "unknown pipeline"), ("409", "another process runs it and it cannot be reached"),
              ("504", "cluster mode: handed to the owning node, not stopped within 60 s")], true)},
        "/api/pipeline/{id}/approve": {"post": secured(json!({
            "summary": "Decide on a pipeline waiting at AWAITING_APPROVAL", "operationId": "approve",
            "description": "approve: true ends it COMPLETED; approve: false sends `feedback` to ALPHA and runs a revision round (ORCHESTRATING, then AWAITING_APPROVAL again), or ends it FAILED once GOVERNANCE_MAX_REVISIONS rounds were rejected. The decision is an `approval_decided` event (by, decided_at, feedback). Of decisions racing on one wait exactly one wins; the others get 409.",
            "parameters": [id_param("path")],
            "requestBody": body("ApproveRequest", &json!({"approve": false, "feedback": "Add a rollback plan", "by": "alice", "revision": 0})),
            "responses": {"200": ok("the status the decision led to: COMPLETED, ORCHESTRATING (a revision round) or FAILED", &obj("Status"))}}),
            &[("400", "invalid id or body: the message names the field (approve, by, feedback)"), ("404", "unknown pipeline"),
              ("409", "not awaiting approval (of this revision), or another decision came first"), ("413", "body too large"),
              ("415", "not `Content-Type: application/json`"),
              ("504", "cluster mode: handed to the owning node, not decided within 60 s")], true)},
        "/api/pipelines": {"get": secured(json!({
            "summary": "Pipelines, newest first", "operationId": "list",
            "parameters": [
                {"name": "status", "in": "query", "required": false, "style": "form", "explode": false,
                 "description": "only these statuses, comma-separated (e.g. RUNNING,REPORT); all when absent or empty",
                 "schema": {"type": "array", "items": obj("PipelineStatus")}},
                q("limit", &limit(50), "page size"), q("offset", &uint(u64::MAX), "skip this many (default 0)")],
            "responses": {"200": ok("page", &obj("PipelineList"))}}),
            &[("400", "invalid status, limit or offset")], true)},
        "/api/events": {"get": secured(json!({
            "summary": "Live events as Server-Sent Events", "operationId": "events",
            "description": "Without `pipeline_id`: the events of the pipelines spawned in the last `replay_secs` seconds, then every pipeline's live events (a slow client gets a `resync` message). With `pipeline_id`: that pipeline's ledger after `since` (or `Last-Event-ID`), then its live events, each seq once. The stream ends when the server shuts down.",
            "parameters": feed_params(true), "responses": {"200": sse}}),
            &[("400", "invalid pipeline_id, since or replay_secs"), ("404", "unknown pipeline")], false)},
        "/ws": {"get": secured(json!({
            "summary": "Live events over WebSocket", "operationId": "ws",
            "description": "A WebSocket handshake (RFC 6455). After the upgrade the server sends one text message per feed message: the same JSON as the `data` of /api/events (`SseEvent.data`), with the same replay rules. Browsers pass the token as `?token=`.",
            "parameters": ws_params(), "responses": {"101": {"description": "switching protocols: the event feed follows"}}}),
            &[("400", "not a WebSocket handshake, or an invalid pipeline_id, since or replay_secs"), ("403", "Origin not allowed"),
              ("404", "unknown pipeline"), ("405", "not GET"), ("426", "the connection cannot be upgraded")], false)},
        "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": ok("up", &any)}}},
        "/readyz": {"get": {"summary": "Readiness: blackboard, bus and ledger answer", "operationId": "readyz",
                            "responses": {"200": ok("ready", &any), "503": err("a backend is unreachable or the server is shutting down")}}},
        "/metrics": {"get": secured(json!({"summary": "Prometheus metrics (no token needed when the server sets GOVERNANCE_METRICS_PUBLIC=true)", "operationId": "metrics",
                             "responses": {"200": {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                           "503": err("the ledger could not be read")}}), &[], false)},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "responses": {"200": ok("OpenAPI 3.1", &any)}}},
        "/docs": {"get": {"summary": "API documentation page", "operationId": "docs", "responses": {"200": html}}},
        "/": {"get": {"summary": "Dashboard", "operationId": "dashboard", "responses": {"200": html}}},
    })
}

fn request_schemas(modes: &[String], max_objective_len: usize) -> Map<String, Value> {
    let mode = json!({"type": ["string", "null"], "enum": modes.iter().map(|m| json!(m)).chain([Value::Null]).collect::<Vec<_>>(),
                      "description": "an LLM mode this server has (see /readyz); null or absent: the default"});
    let model = json!({"type": ["string", "null"], "pattern": MODEL_PATTERN,
                       "description": "model name, printable ASCII without spaces, at most 200 characters; null or absent: the default"});
    let timeout = json!({"type": ["integer", "null"], "minimum": 1, "maximum": 86_400,
                         "description": "orchestration timeout in seconds; null or absent: ORCHESTRATION_TIMEOUT"});
    let mut m = Map::new();
    m.insert("SpawnRequest".into(), json!({"type": "object", "required": ["objective"], "additionalProperties": false, "properties": {
        "objective": {"type": "string", "minLength": 1, "maxLength": max_objective_len, "pattern": NON_BLANK,
                      "description": "what the pipeline should achieve: not blank (it is trimmed), at most the server's limit in characters"},
        "auto_continue": {"type": ["boolean", "null"], "description": "continue past REPORT; null or absent: AUTO_ORCHESTRATE"},
        "require_approval": {"type": ["boolean", "null"], "description": "rest at AWAITING_APPROVAL after consensus and solution until POST /api/pipeline/{id}/approve; null or absent: GOVERNANCE_REQUIRE_APPROVAL"},
        "mode": mode, "model": model, "timeout": timeout}}));
    m.insert("ApproveRequest".into(), json!({"type": "object", "required": ["approve", "by"], "additionalProperties": false, "properties": {
        "approve": {"type": "boolean", "description": "true: complete; false: reject (a revision round with the feedback)"},
        "feedback": {"type": ["string", "null"], "maxLength": MAX_FEEDBACK_LEN,
                     "description": "what the reviewer wants changed: ALPHA's reviewer feedback on a rejection"},
        "by": {"type": "string", "minLength": 1, "maxLength": MAX_REVIEWER_LEN, "pattern": NON_BLANK,
               "description": "who decides (recorded in the ledger): not blank"},
        "revision": {"type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX,
                     "description": "the revision decided on (of the approval_requested seen); another one waiting is a 409; null or absent: whatever waits now"}}}));
    m.insert("ContinueRequest".into(), json!({"type": "object", "required": ["pipeline_id"], "additionalProperties": false, "properties": {
        "pipeline_id": id_schema(), "mode": mode, "model": model, "timeout": timeout}}));
    m
}

fn response_schemas() -> Value {
    let statuses: Vec<&str> = PipelineStatus::ALL.iter().map(|s| s.as_str()).collect();
    let mut feed_types = EVENT_TYPES.to_vec();
    feed_types.push("resync");
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string", "examples": ["invalid_input", "not_found", "invalid_transition", "unauthorized", "payload_too_large"]},
                           "message": {"type": "string"}}}}},
        "PipelineStatus": {"type": "string", "enum": statuses},
        "Spawned": {"type": "object", "required": ["pipeline_id", "status", "auto_continue", "mode"], "properties": {
            "pipeline_id": id_schema(), "status": obj("PipelineStatus"), "auto_continue": {"type": "boolean"}, "mode": {"type": "string"},
            "require_approval": {"type": "boolean"}}},
        "Status": {"type": "object", "required": ["pipeline_id", "status"], "properties": {"pipeline_id": id_schema(), "status": obj("PipelineStatus")}},
        "ReportStatus": {"type": "object", "required": ["pipeline_id", "status", "report", "ready", "auto_continue", "can_continue"], "properties": {
            "pipeline_id": id_schema(), "status": obj("PipelineStatus"), "report": {"oneOf": [obj("Report"), {"type": "null"}]},
            "ready": {"type": "boolean"}, "auto_continue": {"type": "boolean"}, "can_continue": {"type": "boolean"}}},
        "Report": {"type": "object", "properties": {"summary": {"type": "string"}, "findings": {"type": "array", "items": {"type": "string"}},
            "complexity": {"type": "number"}, "partial": {"type": "boolean"}}},
        "Event": {"type": "object", "required": ["type", "seq", "ts", "data"], "properties": {
            "type": {"type": "string", "enum": EVENT_TYPES},
            "seq": {"type": "integer", "minimum": 1, "description": "per pipeline, gap-free, from 1"}, "ts": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "required": ["pipeline_id"], "properties": {"pipeline_id": {"type": "string"}}}}},
        "FeedMessage": {"oneOf": [obj("Event"),
            {"type": "object", "required": ["type", "data"], "description": "the client was too slow and missed live events",
             "properties": {"type": {"const": "resync"}, "data": {"type": "object", "required": ["missed", "reason"],
                 "properties": {"missed": {"type": "integer"}, "reason": {"type": "string"}}}}},
            {"type": "object", "required": ["type", "data"], "description": "the feed cannot go on (the stream ends after it)",
             "properties": {"type": {"const": "error"}, "data": {"type": "object", "required": ["kind", "message"],
                 "properties": {"kind": {"const": "feed"}, "message": {"type": "string"}}}}}]},
        "SseEvent": {"type": "object", "required": ["event", "data"], "description": "one Server-Sent Event",
            "properties": {"event": {"type": "string", "enum": feed_types},
                           "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's seq (per pipeline)"},
                           "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": obj("FeedMessage")}}},
    })
}

fn record_schemas() -> Value {
    json!({
        "Logs": {"type": "object", "required": ["pipeline_id", "events", "next_after", "has_more"], "properties": {
            "pipeline_id": id_schema(), "events": {"type": "array", "items": obj("Event")},
            "next_after": {"type": "integer"}, "has_more": {"type": "boolean"}}},
        "Agent": {"type": "object", "properties": {"agent_id": {"type": "string"}, "role": {"type": "string"},
            "state": {"type": "string", "enum": ["RUNNING", "DONE", "FAILED", "REVOKED", "CANCELLED"]},
            "tokens_used": {"type": "integer"},
            "cost_usd": {"type": "number", "description": "USD spent: the provider's reported cost of its calls"},
            "errors": {"type": "integer"}, "reason": {"type": "string"},
            "model": {"type": "string", "description": "the model the agent asks (its role's, else the pipeline's)"}}},
        "Usage": {"type": "object", "properties": {"calls": {"type": "integer"}, "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"}, "cost_usd": {"type": "number"}}},
        "Gamma": {"type": ["object", "null"], "properties": {"reason": {"type": "string", "enum": ["STUCK", "CONFLICT", "COMPLEXITY"]},
            "spawned_at": {"type": "string", "format": "date-time"}}},
        "PipelineRecord": {"type": "object", "required": ["id", "objective", "status"], "properties": {"id": id_schema(),
            "objective": {"type": "string"}, "status": obj("PipelineStatus"),
            "history": {"type": "array", "items": {"type": "array", "prefixItems": [obj("PipelineStatus"), {"type": "string", "format": "date-time"}]}},
            "auto_continue": {"type": "boolean"}, "mode": {"type": "string"}, "model": {"type": "string"}, "timeout_secs": {"type": "integer"},
            "created_at": {"type": "string"}, "updated_at": {"type": "string"}, "orchestration_started_at": {"type": ["string", "null"]},
            "report": {"oneOf": [obj("Report"), {"type": "null"}]}, "agents": {"type": "array", "items": obj("Agent")}, "gamma": obj("Gamma"),
            "usage": obj("Usage"), "results": {}, "failure": {"type": ["string", "null"]}, "last_seq": {"type": "integer"},
            "require_approval": {"type": "boolean", "description": "it rests at AWAITING_APPROVAL for a human decision"},
            "revisions": {"type": "integer", "minimum": 0, "description": "revision rounds run after a reviewer's rejection"}}},
        "Orchestration": {"type": "object", "required": ["pipeline_id", "status"], "properties": {"pipeline_id": id_schema(), "status": obj("PipelineStatus"),
            "mode": {"type": "string"}, "model": {"type": "string"}, "timeout_secs": {"type": "integer"},
            "roles": {"type": "object", "description": "the per-role settings the pipeline runs with (the server's with the spawn request's over them)"},
            "orchestration_started_at": {"type": ["string", "null"]}, "agents": {"type": "array", "items": obj("Agent")}, "gamma": obj("Gamma"),
            "blackboard": {"type": "object", "properties": {"proposals": {"type": "array", "items": {"type": "object"}},
                "summary": {"type": "object"}, "consensus": {"type": ["object", "null"]}}},
            "usage": obj("Usage"), "results": {"description": "results, or partial results with a partial_report"},
            "partial": {"type": "boolean"}, "failure": {"type": ["string", "null"]}}},
        "PipelineList": {"type": "object", "required": ["pipelines", "total", "counts", "limit", "offset"], "properties": {
            "pipelines": {"type": "array", "items": {"type": "object", "properties": {
                "pipeline_id": id_schema(), "objective": {"type": "string"}, "status": obj("PipelineStatus"), "history": {"type": "array"},
                "auto_continue": {"type": "boolean"}, "mode": {"type": "string"}, "model": {"type": "string"}, "created_at": {"type": "string"},
                "updated_at": {"type": "string"}, "agents": {"type": "integer"}, "gamma": {"type": ["string", "null"]},
                "tokens": {"type": "integer"}, "cost_usd": {"type": "number"}, "failure": {"type": ["string", "null"]}}}},
            "total": {"type": "integer"}, "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "limit": {"type": "integer"}, "offset": {"type": "integer"}}},
    })
}

/// What the document depends on: the server's LLM modes, objective limit, the role names its
/// spawn requests' `roles` may address, and its completion-token cap.
#[derive(Debug, Clone)]
pub struct ServerShape {
    /// LLM modes this server has.
    pub modes: Vec<String>,
    /// The longest objective (characters).
    pub max_objective_len: usize,
    /// Role names (`Governance::role_names`).
    pub roles: Vec<String>,
    /// `GOVERNANCE_MAX_COMPLETION_TOKENS`.
    pub max_completion_tokens: u32,
}

/// The document for a server of this shape.
#[must_use]
pub fn document(shape: &ServerShape) -> Value {
    let mut schemas = request_schemas(&shape.modes, shape.max_objective_len);
    schemas.extend(role_schemas(&shape.roles, shape.max_completion_tokens));
    schemas.extend(fork::schemas(
        shape.max_objective_len,
        ID_PATTERN,
        NON_BLANK,
    ));
    if let Some(Value::Object(props)) = schemas
        .get_mut("SpawnRequest")
        .and_then(|s| s.get_mut("properties"))
    {
        props.insert("roles".into(), json!({"oneOf": [obj("Roles"), {"type": "null"}],
            "description": "per-role settings for this pipeline, over the server's (GOVERNANCE_CONFIG, GOVERNANCE_ROLE_*), field by field; null or absent: the server's"}));
    }
    for part in [response_schemas(), record_schemas()] {
        if let Value::Object(rest) = part {
            schemas.extend(rest);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "governance", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Governed multi-agent LLM pipelines: spawn, report, continue, approve, observe, stop. \
                                 Every error is {\"error\": {\"code\", \"message\"}}; optional request fields may be null, meaning the default."},
        "paths": fork::with_paths(paths(), ID_PATTERN),
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_server_modes_and_objective_limit() {
        let doc = document(&ServerShape {
            modes: vec!["local".to_owned()],
            max_objective_len: 123,
            roles: vec![
                "REPORTER".into(),
                "GAMMA".into(),
                "ALPHA".into(),
                "BETA".into(),
                "CRITIC".into(),
            ],
            max_completion_tokens: 1024,
        });
        let spawn = &doc["components"]["schemas"]["SpawnRequest"]["properties"];
        assert_eq!(spawn["mode"]["enum"], json!(["local", null]));
        assert_eq!(spawn["objective"]["maxLength"], 123);
        let sse = &doc["components"]["schemas"]["SseEvent"]["properties"]["event"]["enum"];
        assert!(sse.as_array().unwrap().contains(&json!("resync")));
        assert_eq!(
            spawn["roles"]["oneOf"][0]["$ref"],
            "#/components/schemas/Roles"
        );
        let roles = &doc["components"]["schemas"]["Roles"]["properties"];
        assert_eq!(
            roles["BETA"]["$ref"],
            "#/components/schemas/BuiltinRoleSettings"
        );
        assert_eq!(
            roles["CRITIC"]["$ref"],
            "#/components/schemas/CustomRoleSettings"
        );
        let custom = &doc["components"]["schemas"]["CustomRoleSettings"]["properties"];
        assert_eq!(custom["max_tokens"]["maximum"], 1024);
        assert_eq!(custom["required"]["type"], json!(["boolean", "null"]));
        assert_eq!(
            roles["GAMMA"]["$ref"],
            "#/components/schemas/UnrequiredRoleSettings"
        );
        let gamma = &doc["components"]["schemas"]["UnrequiredRoleSettings"]["properties"];
        assert_eq!(gamma["required"]["enum"], json!([false, null]));
    }
}
